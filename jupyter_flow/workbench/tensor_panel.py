"""The tensors of the selected node, under the inspector: a picker, the view of the tensor
picked (attention probabilities: `jupyter_flow.workbench.attention`; the rest:
`jupyter_flow.workbench.tensors`), and its difference from an earlier run
(`jupyter_flow.workbench.tensor_diff`, tokens lined up by text)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from typing import Any, Union

from jupyter_flow.capture import tokens
from jupyter_flow.tensorview import is_attention
from jupyter_flow.trace import RunResult
from jupyter_flow.workbench.attention import AttentionView
from jupyter_flow.workbench.inspector import activations, find_tensors
from jupyter_flow.workbench.tensor_diff import DiffView
from jupyter_flow.workbench.tensors import TensorView

__all__ = ["Heads", "TensorPanel", "make_view", "node_tensors"]

Heads = Union[int, str, Sequence[int]]  # a head, "all", or a list of heads


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


class TensorPanel:
    """The tensors of the selected node, one view at a time, under the inspector.

    `show(node, result)` lists the node's tensors (captured ones first); picking one draws
    its view; "compare with previous run" draws the diff against the run `before(node)`
    names (the workbench's run history: the one before the last in which the node ran).

    A view goes into the page only while the panel is shown (`set_shown`; the workbench
    calls it as its Inspect tab comes and goes): a bqplot figure laid out in a hidden tab
    has no size and would draw its plot area with negative sizes. A view drawn meanwhile
    waits, built, and is put in place when the panel is shown."""

    def __init__(self, before: Callable[[str], RunResult | None], *, shown: bool = True) -> None:
        import ipywidgets as w

        self.shown = shown
        self._content: list[Any] = []  # what the body shows while the panel is shown
        self.node: str | None = None
        self.result: RunResult | None = None
        self.tensors: dict[str, Any] = {}
        self.tokens: list[list[str]] = []
        self._before = before
        self.view: Any = None
        self.picker = w.Dropdown(options=[], description="Tensor", layout=w.Layout(width="300px"))
        self.picker.add_class("jf-tensor-picker")
        self.item = w.IntSlider(value=0, min=0, max=0, description="input", continuous_update=False,
                                layout=w.Layout(width="260px", display="none"))
        self.item.add_class("jf-tensor-item")
        self.compare = w.Checkbox(value=False, description="compare with previous run", indent=False,
                                  layout=w.Layout(width="auto"))
        self.compare.add_class("jf-tensor-compare")
        self.body = w.VBox([])
        self._quiet = False
        for control in (self.picker, self.item, self.compare):
            control.observe(lambda _c: self._picked(), names="value")
        self.widget = w.VBox([w.HBox([self.picker, self.item, self.compare], layout=w.Layout(flex_flow="row wrap")), self.body])
        self.widget.add_class("jf-tensor-panel")
        self.widget.layout.display = "none"

    def show(self, node_id: str, result: RunResult | None) -> None:
        """List the node's tensors of `result` (hidden when it has none)."""
        tensors = node_tensors(result, node_id) if result is not None else {}
        if node_id == self.node and result is self.result and all(tensors.get(k) is v for k, v in self.tensors.items()) \
                and list(tensors) == list(self.tensors):
            return  # the same tensors: keep the view (and its sliders) as the user left it
        self.node, self.result, self.tensors = node_id, result, tensors
        self.tokens = _tokens(result, node_id) if result is not None else []
        self._quiet = True
        try:
            names = list(self.tensors)
            self.picker.options = names
            self.picker.value = names[0] if names else None
        finally:
            self._quiet = False
        self.widget.layout.display = "" if self.tensors else "none"
        self._picked()

    def open(self, name: str, *, layer: int = 0, head: Heads = 0, index: Sequence[int] = (), item: int = 0,
             compare: bool = False, mode: str = "heads", focus: int | None = None) -> Any:
        """Draw tensor `name` of the shown node and return its view. Attention takes `layer`,
        `head` (a head, a list of heads, or "all"), `mode` ("heads", "model" or "map") and
        `focus` (a token's position); other tensors `index` (their leading axes)."""
        if name not in self.tensors:
            known = ", ".join(self.tensors) or "none"
            raise KeyError(f"node {self.node!r} has no tensor {name!r} in the last run (its tensors: {known})")
        self._quiet = True
        try:
            self.picker.value = name
            self.compare.value = compare
            self.item.value = min(item, self.item.max) if self._items(name) else 0
        finally:
            self._quiet = False
        return self._draw(layer=layer, head=head, index=index, item=item, mode=mode, focus=focus)

    def set_shown(self, shown: bool) -> None:
        """Say whether the panel can be seen; a view drawn while it could not goes in now."""
        self.shown = shown
        self._mount()

    def _put(self, content: list[Any]) -> None:
        self._content = content
        self._mount()

    def _mount(self) -> None:
        if self.shown and list(self.body.children) != self._content:
            self.body.children = self._content
        elif not self.shown and self.body.children and list(self.body.children) != self._content:
            self.body.children = []  # an earlier view, replaced meanwhile

    def _items(self, name: str) -> int:
        value = self.tensors.get(name)
        return len(value) if isinstance(value, list) else 0

    def _picked(self) -> None:
        if self._quiet:
            return
        self._draw()

    def _draw(self, *, layer: int = 0, head: Heads = 0, index: Sequence[int] = (), item: int | None = None,
              mode: str = "heads", focus: int | None = None) -> Any:
        import ipywidgets as w

        name = self.picker.value
        if name is None or self.node is None:
            self.view = None
            self._put([])
            return None
        value, count = self.tensors[name], self._items(name)
        self._quiet = True
        try:
            self.item.max = max(count - 1, 0)
            self.item.layout.display = "" if count > 1 else "none"
            if item is not None:
                self.item.value = min(item, self.item.max)
        finally:
            self._quiet = False
        i = self.item.value if count else 0
        if count and not 0 <= (item if item is not None else i) < count:
            raise IndexError(f"{name}: input {item} is out of range: the node had {count} inputs")
        current = value[i] if count else value
        tokens = self.tokens[i] if i < len(self.tokens) and (count or len(self.tokens) == 1) else None
        if self.compare.value:
            before, before_tokens = self._previous_value(name, i if count else None)
            if before is None:
                self.view = None
                self._put([w.HTML(f"<i>No earlier run of {_esc(self.node)} with {_esc(name)} to compare with: "
                                  "run it again (Run, or Run from here) first.</i>")])
                return None
            self.view = DiffView(current, before, name=name, tokens=tokens, previous_tokens=before_tokens, index=index)
        else:
            self.view = make_view(current, name=name, tokens=tokens, layer=layer, head=head, index=index, mode=mode, focus=focus)
        self._put([self.view.widget])
        return self.view

    def _previous_value(self, name: str, item: int | None) -> tuple[Any, list[str] | None]:
        """The tensor `name` of the earlier run, and the tokens of its input (None when unknown)."""
        before = self._before(self.node) if self.node is not None else None
        if before is None or self.node is None:
            return None, None
        value = node_tensors(before, self.node).get(name)
        earlier = _tokens(before, self.node)
        at = item or 0
        toks = earlier[at] if at < len(earlier) and (item is not None or len(earlier) == 1) else None
        if isinstance(value, list):
            return (value[item], toks) if item is not None and item < len(value) else (None, None)
        return value, toks


def make_view(value: Any, *, name: str, tokens: Sequence[str] | None = None, layer: int = 0, head: Heads = 0,
              index: Sequence[int] = (), mode: str = "heads", focus: int | None = None) -> TensorView | AttentionView:
    """The view a tensor gets: attention probabilities get `AttentionView`, the rest `TensorView`."""
    if name.split(".")[-1] == "attentions" and is_attention(value, tokens):
        return AttentionView(value, name=name, tokens=tokens, layer=layer, head=head, mode=mode, focus=focus)
    return TensorView(value, name=name, tokens=tokens, index=index)


def node_tensors(result: RunResult, node_id: str) -> dict[str, Any]:
    """A node's tensors in a run: what it captured (by name, attentions first), then tensors
    in its outputs."""
    record = result.records.get(node_id)
    if record is None or record.outputs is None:
        return {}
    captured = activations(record, result)
    found: dict[str, Any] = dict(sorted(captured.items(), key=lambda kv: kv[0] != "attentions"))  # attention first
    for path, value in find_tensors(record.outputs, limit=50).items():
        if "captured" not in re.split(r"[.\[\]]", path):  # captured ones are listed above, by name
            found.setdefault(path, value)
    return found


def _tokens(result: RunResult, node_id: str) -> list[list[str]]:
    try:
        return tokens(result, node_id)
    except KeyError:
        return []
