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

__all__ = ["KIND_COLOURS", "STATUS_COLOURS", "STATUSES", "kind_colour", "status_class", "stylesheet"]


def status_class(status: str) -> str:
    return f"status-{status}"


def stylesheet() -> list[dict[str, Any]]:
    """The cytoscape style: kind colour at rest, status colour once a run touched the node,
    a red dashed border and a badge for nodes with problems."""
    style: list[dict[str, Any]] = [
        {
            "selector": "node",
            "css": {
                "shape": "round-rectangle",
                "label": "data(label)",
                "background-color": "data(colour)",
                "border-color": "data(colour)",
                "border-width": 3,
                "text-valign": "center",
                "text-halign": "center",
                "text-wrap": "wrap",
                "font-size": 12,
                "width": 130,
                "height": 46,
                "color": "#111111",
            },
        },
        {
            "selector": "node.start-node",
            "css": {"shape": "ellipse", "width": 44, "height": 44, "background-color": "#ffffff",
                    "border-color": "#555555", "border-width": 2, "font-size": 10},
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
                "font-size": 10,
                "text-background-color": "#ffffff",
                "text-background-opacity": 0.85,
                "text-background-padding": 2,
            },
        },
        {"selector": "edge.conditional", "css": {"line-style": "dashed"}},
        {"selector": "edge.error-edge", "css": {"line-color": "#d64541", "target-arrow-color": "#d64541", "line-style": "dotted"}},
    ]
    for status, colour in STATUS_COLOURS.items():
        style.append({"selector": f"node.{status_class(status)}", "css": {"background-color": colour}})
    style.append({"selector": f"node.{status_class('skipped')}", "css": {"color": "#888888"}})
    style += [
        {"selector": "node.cached", "css": {"border-style": "double", "border-width": 5}},
        {
            "selector": "node.problem",
            "css": {"border-color": PROBLEM_COLOUR, "border-width": 4, "border-style": "dashed"},
        },
        {"selector": "edge.problem", "css": {"line-color": PROBLEM_COLOUR, "target-arrow-color": PROBLEM_COLOUR}},
        {"selector": "node.wire-source", "css": {"border-color": "#1f77b4", "border-width": 6}},
        {"selector": "node.chosen", "css": {"border-color": SELECTED_COLOUR, "border-width": 5}},
        {"selector": "edge.chosen", "css": {"line-color": SELECTED_COLOUR, "target-arrow-color": SELECTED_COLOUR, "width": 4}},
    ]
    return style
