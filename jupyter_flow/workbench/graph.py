"""The flow drawn with ipycytoscape: spec to elements, default positions, and the view.

The view uses the `preset` layout: every node sits where the flow's `layout` says, so
changing the element list (which makes ipycytoscape run the layout again) moves nothing.
Drags are not synced back by ipycytoscape; the workbench listens to `mouseup` on nodes and
stores the position it reports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jupyter_flow.errors import Problem
from jupyter_flow.spec import START, EdgeSpec, FlowSpec
from jupyter_flow.workbench.styles import kind_colour, status_class, stylesheet

__all__ = ["GraphView", "default_positions", "edge_key", "edge_label", "problems_by_element", "to_elements"]

X_STEP, Y_STEP, MARGIN = 200.0, 100.0, 60.0
#: How far left of the first column the start node sits (a node is 130 wide).
START_GAP = 150.0
START_ID = "__start__"


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


def default_positions(spec: FlowSpec) -> dict[str, tuple[float, float]]:
    """Positions for nodes the layout does not place: a column per depth, left to right."""
    ids = [n.id for n in spec.nodes]
    parents: dict[str, set[str]] = {i: set() for i in ids}
    for edge in spec.edges:
        if edge.source in parents and edge.target in parents:
            parents[edge.target].add(edge.source)
    depth: dict[str, int] = {}

    def level(node: str, seen: frozenset[str] = frozenset()) -> int:
        if node in depth:
            return depth[node]
        if node in seen:  # a cycle: no sensible depth
            return 0
        value = 1 + max((level(p, seen | {node}) for p in parents[node]), default=-1)
        depth[node] = value
        return value

    taken: dict[tuple[int, int], bool] = {}
    for pos in spec.layout.values():
        taken[(round((pos.x - MARGIN) / X_STEP), round((pos.y - MARGIN) / Y_STEP))] = True
    out: dict[str, tuple[float, float]] = {}
    for node in ids:
        if node in spec.layout:
            continue
        col, row = level(node), 0
        while taken.get((col, row)):
            row += 1
        taken[(col, row)] = True
        out[node] = (MARGIN + col * X_STEP, MARGIN + row * Y_STEP)
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
) -> list[dict[str, Any]]:
    """The cytoscape elements of a flow, as plain dicts (group, data, classes, position)."""
    statuses = statuses or {}
    problems = problems or {}
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
        badge = " \u26a0" if problems.get(node.id) else ""
        pos = spec.layout.get(node.id)
        x, y = (pos.x, pos.y) if pos is not None else guessed[node.id]
        elements.append({
            "group": "nodes",
            "data": {
                "id": node.id,
                "label": f"{node.id}{badge}\n{node.type}",
                "kind": node.type,
                "colour": kind_colour(node.type),
                "status": statuses.get(node.id, ""),
                "problems": [str(p) for p in problems.get(node.id, [])],
            },
            "classes": " ".join(classes),
            "position": {"x": float(x), "y": float(y)},
        })
    if any(edge.source == START for edge in spec.edges):
        # first in the list, so that adding or removing a node never moves it in the
        # front end's list of views; placed a node's width left of the first column
        ys = [e["position"]["y"] for e in elements] or [MARGIN]
        xs = [e["position"]["x"] for e in elements] or [MARGIN]
        elements.insert(0, {
            "group": "nodes",
            "data": {"id": START_ID, "label": "start", "kind": "start", "colour": "#ffffff", "status": "", "problems": []},
            "classes": "start-node",
            "position": {"x": min(xs) - START_GAP, "y": sum(ys) / len(ys)},
        })
    for index, edge in enumerate(spec.edges):
        key = edge_key(edge)
        classes = []
        if edge.when or edge.branch is not None:
            classes.append("conditional")
        if edge.on == "error":
            classes.append("error-edge")
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


class GraphView:
    """A CytoscapeWidget kept in step with a list of elements, changing only what changed."""

    def __init__(
        self,
        *,
        on_node_click: Callable[[str], None],
        on_node_moved: Callable[[str, float, float], None],
        on_edge_click: Callable[[str], None],
        height: str = "440px",
    ) -> None:
        import ipycytoscape
        import ipywidgets as widgets

        self._cyto = ipycytoscape
        self.widget = ipycytoscape.CytoscapeWidget(layout=widgets.Layout(height=height, width="100%", border="1px solid #ddd"))
        self.widget.set_layout(name="preset", fit=True, padding=40, animate=False)
        self.widget.set_style(stylesheet())
        self.widget.min_zoom = 0.3
        self.widget.max_zoom = 2.5
        self.widget.auto_unselectify = True
        self._nodes: dict[str, Any] = {}
        self._edges: dict[str, Any] = {}
        self._fit_handle: Any = None
        self._on_node_click = on_node_click
        self._on_node_moved = on_node_moved
        self._on_edge_click = on_edge_click
        # Register every handler before the view is shown: ipycytoscape binds the events
        # of a widget type once per render.
        self.widget.on("node", "click", self._node_click)
        self.widget.on("node", "mouseup", self._node_mouseup)
        self.widget.on("edge", "click", self._edge_click)

    # -- events from the browser ------------------------------------------------------
    def _node_click(self, element: Mapping[str, Any]) -> None:
        node_id = (element.get("data") or {}).get("id")
        if node_id and node_id != START_ID:
            self._on_node_click(node_id)

    def _node_mouseup(self, element: Mapping[str, Any]) -> None:
        node_id = (element.get("data") or {}).get("id")
        pos = element.get("position") or {}
        if node_id and node_id != START_ID and "x" in pos and "y" in pos:
            known = self._nodes.get(node_id)
            if known is not None:
                known.position = {"x": float(pos["x"]), "y": float(pos["y"])}
            self._on_node_moved(node_id, float(pos["x"]), float(pos["y"]))

    def _edge_click(self, element: Mapping[str, Any]) -> None:
        key = (element.get("data") or {}).get("id")
        if key:
            self._on_edge_click(key)

    # -- keeping the widget in step ------------------------------------------------------
    def sync(self, elements: list[dict[str, Any]]) -> None:
        """Bring the widget's node and edge lists to `elements` with one diff: existing
        elements keep their widgets, and no element is ever added to the drawing twice.

        The front end keeps one view per list entry and, when a list changes at position
        i, drops the views from i on and makes new ones; the drop happens a moment after
        the new views are added, so an element that stays but moves in the list (the start
        node after an added node, the nodes after a deleted one) would be added while it
        is still drawn. The diff therefore goes in two steps: first cut both lists back to
        the part that stays in place, then set the full lists."""
        graph = self.widget.graph
        nodes = [e for e in elements if e["group"] == "nodes"]
        edges = [e for e in elements if e["group"] == "edges"]
        new_nodes: dict[str, Any] = {}
        for element in nodes:
            widget = self._nodes.get(element["data"]["id"]) or self._cyto.Node()
            self._update(widget, element)
            if widget.position != element["position"]:
                widget.position = dict(element["position"])
            new_nodes[element["data"]["id"]] = widget
        new_edges: dict[str, Any] = {}
        for element in edges:
            key = element["data"]["id"]
            old = self._edges.get(key)
            # An edge keeps its ends for life: a rewired edge is a new widget.
            if old is not None and (old.data.get("source"), old.data.get("target")) != (element["data"]["source"], element["data"]["target"]):
                old = None
            widget = old or self._cyto.Edge()
            self._update(widget, element)
            new_edges[key] = widget
        self._nodes, self._edges = new_nodes, new_edges
        want_nodes, want_edges = list(new_nodes.values()), list(new_edges.values())
        have_nodes, have_edges = list(graph.nodes), list(graph.edges)
        if _same(have_nodes, want_nodes) and _same(have_edges, want_edges):
            return
        keep = _common_prefix(have_nodes, want_nodes)
        redrawn = {w.data.get("id") for w in have_nodes[keep:]}
        # an edge drawn between nodes that are redrawn goes with them (the drawing drops a
        # node's edges when it drops the node), so it is cut back too
        keep_edges = _common_prefix(have_edges, want_edges)
        for i, widget in enumerate(have_edges[:keep_edges]):
            if widget.data.get("source") in redrawn or widget.data.get("target") in redrawn:
                keep_edges = i
                break
        if keep_edges < len(have_edges):
            graph.edges = have_edges[:keep_edges]
        if keep < len(have_nodes):
            graph.nodes = have_nodes[:keep]
        # A widget once taken out of the drawing is never put back: the front end marks it
        # removed for good (and would not take it out a second time). What is redrawn gets
        # a fresh widget with the same data.
        for element in nodes[keep:]:
            key = element["data"]["id"]
            if any(self._nodes[key] is w for w in have_nodes[keep:]):
                self._nodes[key] = self._fresh(self._cyto.Node(), element, position=True)
        for element in edges[keep_edges:]:
            key = element["data"]["id"]
            if any(self._edges[key] is w for w in have_edges[keep_edges:]):
                self._edges[key] = self._fresh(self._cyto.Edge(), element)
        graph.nodes = list(self._nodes.values())
        graph.edges = list(self._edges.values())
        self._fit_soon()

    def _fit_soon(self) -> None:
        """The front end lays out (and fits the view) before the views of new nodes exist,
        so the last node added can fall outside. A second layout message a moment later,
        once the kernel is idle again, fits the whole graph."""
        import asyncio

        try:
            loop = asyncio.get_running_loop()  # the kernel's, in a cell or a widget callback
        except RuntimeError:
            return
        if self._fit_handle is not None:
            self._fit_handle.cancel()
        self._fit_handle = loop.call_later(0.4, self.widget.relayout)

    @classmethod
    def _fresh(cls, widget: Any, element: dict[str, Any], *, position: bool = False) -> Any:
        cls._update(widget, element)
        if position:
            widget.position = dict(element["position"])
        return widget

    @staticmethod
    def _update(widget: Any, element: dict[str, Any]) -> None:
        if dict(widget.data) != element["data"]:
            widget.data = dict(element["data"])
        if widget.classes != element["classes"]:
            widget.classes = element["classes"]

    def set_classes(self, node_id: str, classes: str) -> None:
        widget = self._nodes.get(node_id)
        if widget is not None and widget.classes != classes:
            widget.classes = classes

    def node_widget(self, node_id: str) -> Any:
        return self._nodes[node_id]

    def edge_widget(self, key: str) -> Any:
        return self._edges[key]


def _same(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


def _common_prefix(a: list[Any], b: list[Any]) -> int:
    """How many leading entries `a` and `b` share (the same widgets, in the same places)."""
    n = 0
    for x, y in zip(a, b):
        if x is not y:
            break
        n += 1
    return n
