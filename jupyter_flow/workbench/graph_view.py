"""The flow drawn with ipycytoscape, kept in step with the workbench's state.

The view uses the `preset` layout: every node sits where the flow's `layout` says, so
changing the element list (which makes ipycytoscape run the layout again) moves nothing.
Drags are not synced back by ipycytoscape; the view listens to `mouseup` on nodes and
sends the position it reports as a move. Clicks on nodes and edges go to the actions.

A flow larger than the view is panned (drag the background). ipycytoscape does not tell
the kernel when its pane changes size, so the view is framed again after every change of
the drawing (see `GraphView._frame`), and the workbench's Fit button fits it to the pane
on demand.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from jupyter_flow.workbench.actions import WorkbenchActions
from jupyter_flow.workbench.controls import guarded
from jupyter_flow.workbench.events import Change
from jupyter_flow.workbench.graph import (
    MIN_ZOOM,
    NODE_HEIGHT,
    NODE_MIN_WIDTH,
    START_ID,
    problems_by_element,
    to_elements,
)
from jupyter_flow.workbench.state import WorkbenchState
from jupyter_flow.workbench.styles import stylesheet

__all__ = ["GraphView"]

MAX_ZOOM = 2.0
FIT_PADDING = 20
#: The height range of a view that grows with its drawing (pixels).
MIN_HEIGHT, MAX_HEIGHT = 440, 720
#: The width the view is framed for (pixels): the workbench gives the graph at least about
#: this much (it goes above its panels in a narrower pane).
VIEW_WIDTH = 600
#: A node the flow places less than this far from where the drawing has it stays put (the
#: layout keeps positions to a tenth of a unit; a drop is not moved by the rounding).
SNAP = 0.5


class GraphView:
    """The flow's drawing: a CytoscapeWidget kept in step with the state (flow, statuses,
    selection, wiring), changing only what changed; clicks and drags go to `actions`."""

    def __init__(self, state: WorkbenchState, actions: WorkbenchActions, *, height: str | None = None) -> None:
        import ipycytoscape
        import ipywidgets as widgets

        self._cyto = ipycytoscape
        self.state, self.actions = state, actions
        #: None: the view grows with the drawing, between MIN_HEIGHT and MAX_HEIGHT pixels
        self.fixed_height = height
        self.widget = ipycytoscape.CytoscapeWidget(
            layout=widgets.Layout(height=height or f"{MIN_HEIGHT}px", width="100%", border="1px solid #ddd")
        )
        self.widget.add_class("jf-graph")
        self.widget.cytoscape_layout = {"name": "preset", "fit": False, "zoom": 1.0, "animate": False}
        self.widget.set_style(stylesheet())
        self.widget.min_zoom = MIN_ZOOM
        self.widget.max_zoom = MAX_ZOOM
        self.widget.auto_unselectify = True
        # no click tooltips: the settings panel names the selected node in full
        self.widget.tooltip_source = ""
        self._nodes: dict[str, Any] = {}
        self._edges: dict[str, Any] = {}
        self._fit_handle: Any = None
        self._drawn: list[dict[str, Any]] = []
        # Register every handler before the view is shown: ipycytoscape binds the events
        # of a widget type once per render.
        self.widget.on("node", "click", self._node_click)
        self.widget.on("node", "mouseup", self._node_mouseup)
        self.widget.on("edge", "click", self._edge_click)
        state.subscribe(self._changed, ("flow", "selection", "wiring", "run", "record", "history"))
        self.draw()

    def _changed(self, _change: Change) -> None:
        self.draw()

    def draw(self) -> None:
        """Draw the state as it is now."""
        state = self.state
        chosen = state.selected[1] if state.selected else None
        comparison = state.iteration.comparison
        self.sync(to_elements(state.spec, statuses=state.runs.statuses, cached=state.runs.cached,
                              problems=problems_by_element(state.spec, state.problems()), chosen=chosen,
                              wire_source=state.wire_source, marks=comparison.marks if comparison is not None else None))

    def fit(self) -> None:
        """Show the whole flow in the view as it is now (never below MIN_ZOOM: a flow too
        big for that is centred, and the rest reached by panning)."""
        layout = {"name": "preset", "fit": True, "padding": FIT_PADDING, "animate": False}
        if self.widget.cytoscape_layout != layout:
            self.widget.cytoscape_layout = layout  # the front end runs it at once
        else:
            self.widget.relayout()

    # -- events from the browser ------------------------------------------------------
    def _node_click(self, element: Mapping[str, Any]) -> None:
        node_id = (element.get("data") or {}).get("id")
        if node_id and node_id != START_ID:
            guarded(self.actions, "edit", lambda: self.actions.click_node(node_id))

    def _node_mouseup(self, element: Mapping[str, Any]) -> None:
        node_id = (element.get("data") or {}).get("id")
        pos = element.get("position") or {}
        if node_id and node_id != START_ID and "x" in pos and "y" in pos:
            x, y = float(pos["x"]), float(pos["y"])
            known = self._nodes.get(node_id)
            if known is not None:
                known.position = {"x": x, "y": y}
            guarded(self.actions, "edit", lambda: self.actions.move(node_id, x, y))

    def _edge_click(self, element: Mapping[str, Any]) -> None:
        key = (element.get("data") or {}).get("id")
        if key:
            guarded(self.actions, "edit", lambda: self.actions.select_edge(key))

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
            if not _near(widget.position, element["position"]):
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
        self._drawn = nodes
        want_nodes, want_edges = list(new_nodes.values()), list(new_edges.values())
        have_nodes, have_edges = list(graph.nodes), list(graph.edges)
        if _same(have_nodes, want_nodes) and _same(have_edges, want_edges):
            return  # the view stays where the user panned it
        self._frame(nodes)
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

    def _frame(self, nodes: list[dict[str, Any]]) -> bool:
        """Size the view and choose how the next layout run frames the drawing; True when
        either changed. A view without a fixed height is as tall as the drawing at MIN_ZOOM,
        within MIN_HEIGHT and MAX_HEIGHT, so that a tall flow needs less panning.

        The frame does not depend on the view's width, which the kernel never learns and
        which is not settled when the view is first drawn (a fit then can zoom far in or
        out): the drawing is shown from its top left corner (where the flow starts) at the
        largest zoom up to 1 at which it fits VIEW_WIDTH and the view's height, and never
        below MIN_ZOOM. The Fit button fits it to the view as it is."""
        if not nodes:
            return False
        x1 = min(e["position"]["x"] - e["data"].get("width", NODE_MIN_WIDTH) / 2 for e in nodes)
        x2 = max(e["position"]["x"] + e["data"].get("width", NODE_MIN_WIDTH) / 2 for e in nodes)
        y1 = min(e["position"]["y"] - e["data"].get("height", NODE_HEIGHT) / 2 for e in nodes)
        y2 = max(e["position"]["y"] + e["data"].get("height", NODE_HEIGHT) / 2 for e in nodes)
        changed = False
        if self.fixed_height is None:
            tall = (y2 - y1) * MIN_ZOOM + 2 * FIT_PADDING
            height = f"{int(min(MAX_HEIGHT, max(MIN_HEIGHT, tall)))}px"
            if self.widget.layout.height != height:
                self.widget.layout.height = height
                changed = True
        room_x = VIEW_WIDTH - 2 * FIT_PADDING
        room_y = _pixels(self.widget.layout.height, MIN_HEIGHT) - 2 * FIT_PADDING
        zoom = round(max(MIN_ZOOM, min(1.0, room_x / max(x2 - x1, 1.0), room_y / max(y2 - y1, 1.0))), 4)
        pan = {"x": round(FIT_PADDING - x1 * zoom, 1), "y": round(FIT_PADDING - y1 * zoom, 1)}
        layout = {"name": "preset", "fit": False, "zoom": zoom, "pan": pan, "animate": False}
        if self.widget.cytoscape_layout != layout:
            self.widget.cytoscape_layout = layout
            changed = True
        return changed

    def _fit_soon(self) -> None:
        """The front end lays out (and fits the view) before the views of new nodes exist,
        so the last node added can fall outside. A second layout message a moment later,
        once the kernel is idle again, fits the whole graph."""
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

    def node_widget(self, node_id: str) -> Any:
        return self._nodes[node_id]

    def edge_widget(self, key: str) -> Any:
        return self._edges[key]


def _pixels(length: str | None, default: int) -> int:
    """A CSS length in pixels ("440px"), or `default` for any other unit."""
    text = (length or "").strip()
    if text.endswith("px"):
        try:
            return int(float(text[:-2]))
        except ValueError:
            pass
    return default


def _near(have: Any, want: Mapping[str, float]) -> bool:
    """Whether a drawn position is where the flow places the node (within SNAP)."""
    if not isinstance(have, Mapping) or "x" not in have or "y" not in have:
        return False
    return abs(float(have["x"]) - want["x"]) < SNAP and abs(float(have["y"]) - want["y"]) < SNAP


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
