"""The flow as a drawing: cytoscape elements (plain dicts) and where each node goes.

Nothing here draws: `jupyter_flow.workbench.graph_view` hands the elements to
ipycytoscape. A flow without a saved layout is placed in layers (`layered_positions`),
left to right, wrapped into bands so that a long flow is not drawn as one thin line.
Labels are drawn at `NODE_FONT_PX` and the view never zooms out below `MIN_ZOOM`, so no
label is drawn under `MIN_LABEL_PX` on screen.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from jupyter_flow.errors import Problem
from jupyter_flow.spec import START, EdgeSpec, FlowSpec, Position
from jupyter_flow.workbench.styles import MIN_LABEL_PX, NODE_FONT_PX, badge_image, kind_colour, status_class

__all__ = [
    "MIN_ZOOM",
    "default_positions",
    "edge_key",
    "edge_label",
    "free_spot",
    "layered_positions",
    "node_label",
    "node_size",
    "problems_by_element",
    "to_elements",
]

X_STEP, Y_STEP, MARGIN = 200.0, 100.0, 60.0
#: The space between two layers, and between two nodes of a layer (room for edge labels).
LAYER_GAP, ROW_GAP = 80.0, 34.0
#: A band of layers is wrapped when it would reach further right than this (in graph
#: units; at MIN_ZOOM about the width the view is framed for); a flow less than
#: WRAP_AFTER times as wide stays in one band.
BAND_WIDTH = 700.0
WRAP_AFTER = 1.5
BAND_GAP = 60.0
NODE_HEIGHT = 52.0
NODE_MIN_WIDTH, NODE_MAX_WIDTH = 110.0, 230.0
#: The longest node id a label shows whole; longer ones are shortened in the middle.
LABEL_CHARS = 24
START_SIZE = 56.0
#: The room between the start node and the first node.
START_ROOM = 70.0
START_ID = "__start__"
#: The smallest zoom: labels are never drawn smaller than MIN_LABEL_PX on screen.
MIN_ZOOM = MIN_LABEL_PX / NODE_FONT_PX


def edge_key(edge: EdgeSpec) -> str:
    return f"{edge.source}->{edge.target}"


def edge_label(edge: EdgeSpec) -> str:
    """What an edge shows: its label, branch, condition, or that it is an error edge."""
    parts = []
    if edge.label:
        parts.append(edge.label)
    if edge.branch is not None:
        parts.append(f"branch: {edge.branch}")
    if edge.when:
        when = " ".join(edge.when.replace("{{", "").replace("}}", "").split())
        parts.append(f"if {when[:40]}{'...' if len(when) > 40 else ''}")
    if edge.on == "error":
        parts.append("on error")
    return " | ".join(parts)


def shorten(text: str, most: int = LABEL_CHARS) -> str:
    """`text`, or its start and end around an ellipsis when it is longer than `most`."""
    if len(text) <= most:
        return text
    tail = most // 3
    return f"{text[:most - tail - 1]}\u2026{text[-tail:]}"


def node_label(node_id: str, kind: str, *, problem: bool = False) -> str:
    """A node's label: its (shortened) id, a warning sign when it has problems, its kind."""
    badge = " \u26a0" if problem else ""
    return f"{shorten(node_id)}{badge}\n{shorten(kind)}"


def node_size(label: str) -> tuple[float, float]:
    """A node's width and height from its label: wide enough for its longest line."""
    longest = max((len(line) for line in label.split("\n")), default=0)
    width = min(NODE_MAX_WIDTH, max(NODE_MIN_WIDTH, round(longest * NODE_FONT_PX * 0.62 + 28)))
    return float(width), NODE_HEIGHT


def _parents(spec: FlowSpec) -> dict[str, list[str]]:
    parents: dict[str, list[str]] = {n.id: [] for n in spec.nodes}
    for edge in spec.edges:
        if edge.source in parents and edge.target in parents and edge.source not in parents[edge.target]:
            parents[edge.target].append(edge.source)
    return parents


def _depths(parents: Mapping[str, list[str]]) -> dict[str, int]:
    """The longest path from a node without parents to each node (a cycle counts once)."""
    depth: dict[str, int] = {}

    def level(node: str, seen: frozenset[str] = frozenset()) -> int:
        if node in depth:
            return depth[node]
        if node in seen:  # a cycle: no sensible depth
            return 0
        value = 1 + max((level(p, seen | {node}) for p in parents[node]), default=-1)
        depth[node] = value
        return value

    for node in parents:
        level(node)
    return depth


def default_positions(spec: FlowSpec) -> dict[str, tuple[float, float]]:
    """Positions for nodes the layout does not place: the layered placement when the flow
    has no layout at all, else a free spot in the column of each node's depth."""
    if not spec.layout:
        return layered_positions(spec)
    depth = _depths(_parents(spec))
    taken: dict[tuple[int, int], bool] = {}
    for pos in spec.layout.values():
        taken[(round((pos.x - MARGIN) / X_STEP), round((pos.y - MARGIN) / Y_STEP))] = True
    out: dict[str, tuple[float, float]] = {}
    for node in spec.nodes:
        if node.id in spec.layout:
            continue
        col, row = depth[node.id], 0
        while taken.get((col, row)):
            row += 1
        taken[(col, row)] = True
        out[node.id] = (MARGIN + col * X_STEP, MARGIN + row * Y_STEP)
    return out


def free_spot(layout: Mapping[str, Position], near: str | None) -> tuple[float, float]:
    """Where a new node goes: right of node `near`, or as near that place above or below it
    as is free; with no `near` node, under the drawing at its left, so that the drawing
    grows down (as the layered placement does) rather than sideways."""
    if not layout:
        return (MARGIN, MARGIN)
    if near is not None and near in layout:
        x, y = layout[near].x + X_STEP, layout[near].y
    else:
        x, y = min(p.x for p in layout.values()), max(p.y for p in layout.values()) + Y_STEP

    def free(cy: float) -> bool:
        return not any(abs(p.x - x) < X_STEP * 0.75 and abs(p.y - cy) < NODE_HEIGHT + 16 for p in layout.values())

    for step in range(0, 120):
        for cy in (y + step * 10, y - step * 10):
            if cy >= 0 and free(cy):
                return (x, cy)
    return (x, max(p.y for p in layout.values()) + Y_STEP)


def layered_positions(spec: FlowSpec) -> dict[str, tuple[float, float]]:
    """A layered placement (in the manner of dagre): one column per depth, left to right;
    in each column a node sits level with the mean row of its parents when it can, and
    below the node before it when not. Columns that would make the drawing wider than
    BAND_WIDTH wrap into a new band below, as a line of text wraps, so a long flow comes
    out roughly as wide as a pane instead of a long thin line."""
    if not spec.nodes:
        return {}
    parents = _parents(spec)
    depth = _depths(parents)
    widths = {n.id: node_size(node_label(n.id, n.type, problem=True))[0] for n in spec.nodes}
    columns: list[list[str]] = [[] for _ in range(max(depth.values()) + 1)]
    for spec_node in spec.nodes:
        columns[depth[spec_node.id]].append(spec_node.id)
    row: dict[str, float] = {}
    for column in columns:
        wanted = {n: (sum(row[p] for p in parents[n] if p in row) / len([p for p in parents[n] if p in row])
                      if any(p in row for p in parents[n]) else math.inf) for n in column}
        order = sorted(column, key=lambda n: (wanted[n], column.index(n)))
        next_free = 0.0
        for node in order:
            place = wanted[node] if wanted[node] != math.inf else next_free
            row[node] = max(place, next_free)
            next_free = row[node] + 1
    # columns into bands no wider than BAND_WIDTH
    column_width = [max(widths[n] for n in column) if column else NODE_MIN_WIDTH for column in columns]
    left = MARGIN + START_SIZE + START_ROOM if any(e.source == START for e in spec.edges) else MARGIN
    bands: list[list[int]] = [[]]
    used = left
    whole = left + sum(column_width) + LAYER_GAP * (len(column_width) - 1)
    for index, width in enumerate(column_width):
        if bands[-1] and whole > BAND_WIDTH * WRAP_AFTER and used + LAYER_GAP + width > BAND_WIDTH:
            bands.append([])
            used = left
        used += (LAYER_GAP if bands[-1] else 0.0) + width
        bands[-1].append(index)
    out: dict[str, tuple[float, float]] = {}
    pitch = NODE_HEIGHT + ROW_GAP
    top = MARGIN
    for band in bands:
        members = [n for index in band for n in columns[index]]
        first = min(row[n] for n in members)
        x = left
        for index in band:
            centre = x + column_width[index] / 2
            for node in columns[index]:
                out[node] = (round(centre, 1), round(top + (row[node] - first) * pitch + NODE_HEIGHT / 2, 1))
            x += column_width[index] + LAYER_GAP
        top += (max(row[n] for n in members) - first + 1) * pitch + BAND_GAP
    return out


def problems_by_element(spec: FlowSpec, problems: list[Problem]) -> dict[str, list[Problem]]:
    """Problems keyed by node id or edge key, so each shows where it belongs."""
    out: dict[str, list[Problem]] = {}
    for problem in problems:
        key = problem.node if problem.node in {n.id for n in spec.nodes} else None
        if problem.edge is not None and 0 <= problem.edge < len(spec.edges):
            key = edge_key(spec.edges[problem.edge])
        out.setdefault(key or "", []).append(problem)
    return out


def to_elements(
    spec: FlowSpec,
    *,
    statuses: Mapping[str, str] | None = None,
    cached: set[str] | frozenset[str] = frozenset(),
    problems: Mapping[str, list[Problem]] | None = None,
    chosen: str | None = None,
    wire_source: str | None = None,
    marks: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The cytoscape elements of a flow, as plain dicts (group, data, classes, position).
    `cached` nodes, and nodes a comparison `marks` ("edited" or "changed"), wear a badge
    (`data.badge`, an image) and a class (``cached``, ``diff-edited``, ``diff-changed``)."""
    statuses = statuses or {}
    problems = problems or {}
    marks = marks or {}
    guessed = default_positions(spec)
    elements: list[dict[str, Any]] = []
    for node in spec.nodes:
        classes = [f"kind-{node.type}"]
        if node.id in statuses:
            classes.append(status_class(statuses[node.id]))
        if node.id in cached:
            classes.append("cached")
        if problems.get(node.id):
            classes.append("problem")
        if chosen == node.id:
            classes.append("chosen")
        if wire_source == node.id:
            classes.append("wire-source")
        badges = [b for b in ("cached", marks.get(node.id)) if b and (b != "cached" or node.id in cached)]
        if node.id in marks:
            classes.append(f"diff-{marks[node.id]}")
        label = node_label(node.id, node.type, problem=bool(problems.get(node.id)))
        width, height = node_size(label)
        pos = spec.layout.get(node.id)
        x, y = (pos.x, pos.y) if pos is not None else guessed[node.id]
        elements.append({
            "group": "nodes",
            "data": {
                "id": node.id,
                "label": label,
                "kind": node.type,
                "colour": kind_colour(node.type),
                "status": statuses.get(node.id, ""),
                "problems": [str(p) for p in problems.get(node.id, [])],
                "width": width,
                "height": height,
                # always there ("" for none): the front end merges new data into the old
                "badge": badge_image(badges),
            },
            "classes": " ".join(classes),
            "position": {"x": float(x), "y": float(y)},
        })
    starts = [e.target for e in spec.edges if e.source == START]
    if starts:
        # first in the list, so that adding or removing a node never moves it in the
        # front end's list of views; placed left of the nodes it starts, with room
        lefts = [e["position"]["x"] - e["data"]["width"] / 2 for e in elements] or [MARGIN]
        ys = [e["position"]["y"] for e in elements if e["data"]["id"] in starts] or [e["position"]["y"] for e in elements] or [MARGIN]
        elements.insert(0, {
            "group": "nodes",
            "data": {"id": START_ID, "label": "start", "kind": "start", "colour": "#ffffff", "status": "", "problems": [],
                     "width": START_SIZE, "height": START_SIZE},
            "classes": "start-node",
            "position": {"x": min(lefts) - START_ROOM - START_SIZE / 2, "y": sum(ys) / len(ys)},
        })
    depth = _depths(_parents(spec))
    for index, edge in enumerate(spec.edges):
        key = edge_key(edge)
        classes = []
        if edge.source in depth and edge.target in depth and abs(depth[edge.target] - depth[edge.source]) > 1:
            classes.append("skip")  # spans layers: drawn as a curve, so it passes beside the nodes between
        if edge.when or edge.branch is not None:
            classes.append("conditional")
        if edge.on == "error":
            classes.append("error-edge")
        if edge_label(edge):
            classes.append("labelled")
        if problems.get(key):
            classes.append("problem")
        if chosen == key:
            classes.append("chosen")
        elements.append({
            "group": "edges",
            "data": {
                "id": key,
                "source": START_ID if edge.source == START else edge.source,
                "target": edge.target,
                "label": edge_label(edge),
                "index": index,
            },
            "classes": " ".join(classes),
        })
    return elements
