"""The cytoscape stylesheet of the workbench graph. The colours (one per node kind, one per
run status) come from `jupyter_flow.palette`, which the JupyterLab extension uses too."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from jupyter_flow.palette import (
    KIND_COLOURS,
    PROBLEM_COLOUR,
    SELECTED_COLOUR,
    STATUS_COLOURS,
    STATUSES,
    kind_colour,
)

__all__ = ["BADGES", "KIND_COLOURS", "MARK_COLOURS", "MIN_LABEL_PX", "NODE_FONT_PX", "STATUS_COLOURS", "STATUSES", "badge_image",
           "badge_pills_html", "kind_colour", "status_class", "stylesheet"]

#: The font size of every label in the graph (nodes, edges, the start node); the view never
#: zooms out so far that a label is drawn smaller than MIN_LABEL_PX on screen.
NODE_FONT_PX = 13
MIN_LABEL_PX = 11


#: The badges a node can wear after a run or a comparison, and their colours: its output
#: came from the cache; its settings changed between the runs compared (or it is new);
#: only what it gave changed.
BADGES: dict[str, str] = {"cached": "#1565c0", "edited": "#e65100", "changed": "#6a1b9a"}
#: The border of a node a comparison marks.
MARK_COLOURS: dict[str, str] = {"edited": BADGES["edited"], "changed": BADGES["changed"]}
_BADGE_FONT_PX, _BADGE_HEIGHT, _BADGE_GAP = 10, 16, 3


def status_class(status: str) -> str:
    return f"status-{status}"


def _pill_width(text: str) -> int:
    return round(len(text) * _BADGE_FONT_PX * 0.62 + 12)


def badge_image(names: Sequence[str]) -> str:
    """The badges `names` (keys of BADGES, in that order) as one SVG image, as a data URI
    cytoscape draws at a node's top right corner; "" for none."""
    shown = [n for n in BADGES if n in names]
    if not shown:
        return ""
    widths = [_pill_width(n) for n in shown]
    total = sum(widths) + _BADGE_GAP * (len(shown) - 1)
    parts, x = [], 0
    for name, width in zip(shown, widths):
        parts.append(f"<rect x='{x + 0.5}' y='0.5' width='{width - 1}' height='{_BADGE_HEIGHT - 1}' rx='7.5' fill='{BADGES[name]}' "
                     f"stroke='#ffffff'/><text x='{x + width / 2}' y='{_BADGE_HEIGHT - 4.5}' font-size='{_BADGE_FONT_PX}' "
                     f"font-family='sans-serif' font-weight='bold' fill='#ffffff' text-anchor='middle'>{name}</text>")
        x += width + _BADGE_GAP
    svg = (f"<svg xmlns='http://www.w3.org/2000/svg' width='{total}' height='{_BADGE_HEIGHT}' "
           f"viewBox='0 0 {total} {_BADGE_HEIGHT}'>{''.join(parts)}</svg>")
    return "data:image/svg+xml;utf8," + quote(svg)


def badge_pills_html(names: Sequence[str]) -> str:
    """The same badges as HTML, for the inspector and the panels."""
    return " ".join(f"<span class='jf-badge jf-badge-{n}' style='background:{BADGES[n]};color:#fff;padding:0 6px;"
                    f"border-radius:8px;font-size:11px;font-weight:bold'>{n}</span>" for n in BADGES if n in names)


def stylesheet() -> list[dict[str, Any]]:
    """The cytoscape style: kind colour at rest, status colour once a run touched the node,
    a red dashed border and a badge for nodes with problems. The selection is a halo
    around the node (an underlay), so it never hides the problem border."""
    style: list[dict[str, Any]] = [
        {
            "selector": "node",
            "css": {
                "shape": "round-rectangle",
                "label": "data(label)",
                "background-color": "data(colour)",
                "border-color": "#4a4a4a",
                "border-width": 2,
                "text-valign": "center",
                "text-halign": "center",
                "text-wrap": "wrap",
                "text-max-width": "data(width)",
                "font-size": NODE_FONT_PX,
                "width": "data(width)",
                "height": "data(height)",
                "color": "#111111",
                "z-index-compare": "manual",
                "z-index": 5,
            },
        },
        {
            "selector": "node.start-node",
            "css": {"shape": "ellipse", "background-color": "#ffffff", "border-color": "#555555",
                    "border-width": 4, "border-style": "double"},
        },
        {
            "selector": "edge",
            "css": {
                "curve-style": "bezier",
                "target-arrow-shape": "triangle",
                "width": 2,
                "line-color": "#7a7a7a",
                "target-arrow-color": "#7a7a7a",
                "label": "data(label)",
                "font-size": NODE_FONT_PX,
                "color": "#1a1a1a",
                "text-wrap": "wrap",
                "text-max-width": "180px",
                # level text beside the edge, not over it, on a background that keeps it readable
                "text-margin-y": -13,
                "text-background-color": "#ffffff",
                "text-background-opacity": 0.95,
                "text-background-padding": "3px",
                "text-background-shape": "roundrectangle",
                "text-border-width": 1,
                "text-border-color": "#d0d0d0",
                "text-border-opacity": 1,
            },
        },
        {"selector": "edge.skip",
         "css": {"curve-style": "unbundled-bezier", "control-point-distances": 160, "control-point-weights": 0.5}},
        # an edge with a label is drawn over the nodes, so that no node hides its label
        {"selector": "edge.labelled", "css": {"z-index-compare": "manual", "z-index": 10}},
        {"selector": "edge.conditional", "css": {"line-style": "dashed", "line-color": "#b58900", "target-arrow-color": "#b58900"}},
        {"selector": "edge.error-edge", "css": {"line-color": "#d64541", "target-arrow-color": "#d64541", "line-style": "dotted"}},
    ]
    for status, colour in STATUS_COLOURS.items():
        style.append({"selector": f"node.{status_class(status)}", "css": {"background-color": colour}})
    style.append({"selector": f"node.{status_class('skipped')}", "css": {"color": "#666666"}})
    style += [
        {"selector": "node.cached", "css": {"border-style": "double", "border-width": 5}},
        # the badges (cached, edited, changed) drawn over the top right corner, outside the node
        {"selector": "node[?badge]",
         "css": {"background-image": "data(badge)", "background-fit": "none", "background-clip": "none",
                 "background-image-containment": "over", "background-position-x": "100%", "background-position-y": "0%",
                 "background-offset-x": 8, "background-offset-y": -10, "background-image-opacity": 1,
                 "bounds-expansion": 14}},
        # a node a comparison marks: a thick border in the mark's colour (a problem's border wins)
        *({"selector": f"node.diff-{mark}",
           "css": {"border-color": colour, "border-width": 5, "border-style": "solid" if mark == "edited" else "dashed"}}
          for mark, colour in MARK_COLOURS.items()),
        {
            "selector": "node.problem",
            "css": {"border-color": PROBLEM_COLOUR, "border-width": 4, "border-style": "dashed"},
        },
        {"selector": "edge.problem", "css": {"line-color": PROBLEM_COLOUR, "target-arrow-color": PROBLEM_COLOUR, "width": 3}},
        # the wiring source and the selection are halos outside the node
        {"selector": "node.wire-source",
         "css": {"underlay-color": "#2ca02c", "underlay-opacity": 0.45, "underlay-padding": 8, "underlay-shape": "round-rectangle"}},
        {"selector": "node.chosen",
         "css": {"underlay-color": SELECTED_COLOUR, "underlay-opacity": 0.35, "underlay-padding": 8, "underlay-shape": "round-rectangle"}},
        {"selector": "edge.chosen", "css": {"width": 4, "underlay-color": SELECTED_COLOUR, "underlay-opacity": 0.3, "underlay-padding": 5}},
    ]
    return style
