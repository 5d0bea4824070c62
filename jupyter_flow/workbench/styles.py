"""The cytoscape stylesheet of the workbench graph. The colours (one per node kind, one per
run status) come from `jupyter_flow.palette`, which the JupyterLab extension uses too."""

from __future__ import annotations

from typing import Any

from jupyter_flow.palette import (
    KIND_COLOURS,
    PROBLEM_COLOUR,
    SELECTED_COLOUR,
    STATUS_COLOURS,
    STATUSES,
    kind_colour,
)

__all__ = ["KIND_COLOURS", "MIN_LABEL_PX", "NODE_FONT_PX", "STATUS_COLOURS", "STATUSES", "kind_colour", "status_class", "stylesheet"]

#: The font size of every label in the graph (nodes, edges, the start node); the view never
#: zooms out so far that a label is drawn smaller than MIN_LABEL_PX on screen.
NODE_FONT_PX = 13
MIN_LABEL_PX = 11


def status_class(status: str) -> str:
    return f"status-{status}"


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
