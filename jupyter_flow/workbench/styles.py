"""Colours and the cytoscape stylesheet: one colour per node kind, one per run status."""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = ["KIND_COLOURS", "STATUS_COLOURS", "STATUSES", "kind_colour", "status_class", "stylesheet"]

KIND_COLOURS: dict[str, str] = {
    "http": "#4e79a7",
    "python": "#59a14f",
    "template": "#76b7b2",
    "switch": "#edc948",
    "vote": "#b07aa1",
    "torch": "#f28e2b",
    "transformers": "#ff9da7",
    "pdf": "#9c755f",
    "rules": "#bab0ac",
    "report": "#8cd17d",
}
_SPARE = ("#86bcb6", "#d37295", "#a0cbe8", "#ffbe7d", "#d4a6c8", "#b6992d")

#: Run statuses of a node, in the order a run goes through them, and their colours.
STATUS_COLOURS: dict[str, str] = {
    "pending": "#d0d4da",
    "running": "#f5b82e",
    "ok": "#3aa655",
    "error": "#d64541",
    "skipped": "#eeeeee",
    "cancelled": "#9b72cf",
}
STATUSES = tuple(STATUS_COLOURS)
PROBLEM_COLOUR = "#e00000"
SELECTED_COLOUR = "#1f3b73"


def kind_colour(kind: str) -> str:
    """The colour of a node kind; kinds from plug-ins get a stable colour of their own."""
    if kind in KIND_COLOURS:
        return KIND_COLOURS[kind]
    index = int.from_bytes(hashlib.blake2b(kind.encode(), digest_size=2).digest(), "big")
    return _SPARE[index % len(_SPARE)]


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
