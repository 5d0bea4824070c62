"""Tensor views as widgets (bqplot over ipywidgets), chosen by a tensor's shape.

- 0-D: the value. 1-D: a histogram with axis values, and the values as a strip when
  the vector is short. 2-D: a heatmap with a colour scale. 3-D and up: sliders for the
  leading axes over a heatmap of the last two.
- Attention probabilities ``(layers, heads, tokens, tokens)``: layer and head pickers
  over a token-by-token map, and an "all heads" grid of one layer.
- A run-to-run diff: max and mean absolute difference, cosine similarity, and the
  difference drawn as a heatmap.

Axes as long as the input's tokens are labelled with them (hover shows token, position
and value); padding is marked apart. What is drawn is cut to at most `MAX_CELLS` x
`MAX_CELLS` cells in the kernel (`jupyter_flow.tensorview`), the true shape shown. The
plots are `jupyter_flow.workbench.plots`; `jupyter_flow.workbench.tensor_panel` is the
part of the Inspect tab that lists a node's tensors and draws the one picked.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from jupyter_flow.tensorview import (
    MAX_CELLS,
    as_array,
    compare,
    histogram,
    nonfinite,
    plane,
    token_axis,
)
from jupyter_flow.values import dtype_name, summarize
from jupyter_flow.workbench.plots import NULL_COLOUR, Heatmap, Strip, plot2d, require_bqplot

__all__ = ["NULL_COLOUR", "AttentionView", "DiffView", "Heatmap", "Strip", "TensorView", "is_attention", "make_view"]

STRIP_MAX = 64  # a 1-D tensor this short is also drawn as a strip of its values


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _stats_html(name: str, array: Any, shape: Sequence[int], *, dtype: str = "", note: str = "") -> str:
    stats = summarize(array) or {}  # over the finite values, as a trace summarizes them
    cells = [("shape", "\u00d7".join(str(s) for s in shape) or "scalar")]
    if dtype:
        cells.append(("dtype", dtype))
    cells += [(key, f"{stats[key]:.4g}") for key in ("min", "max", "mean", "std") if key in stats]
    line = " &nbsp; ".join(f"<span class='jf-stat'><i>{_esc(k)}</i> {_esc(v)}</span>" for k, v in cells)
    bad = nonfinite(array)
    warn = ""
    if bad.any:
        where = ", ".join(f"[{', '.join(str(i) for i in p)}]={v}" for p, v in zip(bad.positions, bad.values))
        warn = (f"<div class='jf-warn jf-nonfinite'>{bad.nan} NaN, {bad.inf} Inf; first at {_esc(where)} "
                f"(cells drawn in <span style='color:{NULL_COLOUR}'>magenta</span>)</div>")
    extra = f" <span class='jf-note'>{_esc(note)}</span>" if note else ""
    return f"<div class='jf-tensor-head'><b>{_esc(name)}</b> {line}{extra}{warn}</div>"


class TensorView:
    """One tensor, drawn by its shape (see the module docstring). `tokens` label the axes
    as long as them. `index` sets the leading sliders of a 3-D and up tensor."""

    def __init__(self, value: Any, *, name: str = "tensor", tokens: Sequence[str] | None = None,
                 index: Sequence[int] = (), diverging: bool | None = None, note: str = "") -> None:
        import ipywidgets as w
        import numpy as np

        self.name, self.tokens = name, list(tokens) if tokens is not None else None
        self.array = as_array(value)
        self.shape = tuple(int(s) for s in self.array.shape)
        finite = self.array[np.isfinite(self.array)]
        self.diverging = bool(finite.size and finite.min() < 0 < finite.max()) if diverging is None else diverging
        head = w.HTML(_stats_html(name, self.array, self.shape, dtype=dtype_name(value), note=note))
        self.sliders: list[Any] = []
        self.heatmap: Heatmap | Strip | None = None
        parts: list[Any] = [head]
        if self.array.ndim == 0:
            parts.append(w.HTML(f"<code>{float(self.array):.6g}</code>"))
        elif self.array.ndim == 1:
            parts.append(self._histogram())
            if self.shape[0] <= STRIP_MAX:
                self.heatmap = Strip(self.array.reshape(1, -1), cols="position", col_labels=self._labels(self.shape[0]))
                parts.append(self.heatmap.widget)
        else:
            lead = self.shape[:-2]
            for axis, size in enumerate(lead):
                start = index[axis] if axis < len(index) else 0
                slider = w.IntSlider(value=start, min=0, max=max(size - 1, 0), description=f"axis {axis}",
                                     continuous_update=False, layout=w.Layout(width="320px"))
                slider.add_class("jf-tensor-slider")
                slider.observe(lambda _c: self._redraw(), names="value")
                self.sliders.append(slider)
            rows, cols = self.shape[-2:]
            self.heatmap = plot2d(plane(self.array, self.index), rows=f"axis {len(lead)}", cols=f"axis {len(lead) + 1}",
                                  row_labels=self._labels(rows), col_labels=self._labels(cols), diverging=self.diverging)
            if self.sliders:
                parts.append(w.HBox(self.sliders, layout=w.Layout(flex_flow="row wrap")))
            parts.append(self.heatmap.widget)
            if max(rows, cols) > MAX_CELLS:
                parts.append(w.HTML(f"<i>drawn as block means: at most {MAX_CELLS}\u00d7{MAX_CELLS} cells of {rows}\u00d7{cols}</i>"))
        self.widget = w.VBox(parts)
        self.widget.add_class("jf-tensor-view")

    @property
    def index(self) -> list[int]:
        return [s.value for s in self.sliders]

    def _labels(self, size: int) -> list[str] | None:
        if self.tokens is None or size != len(self.tokens):
            return None
        return token_axis(self.tokens, size).labels

    def _redraw(self) -> None:
        if self.heatmap is not None and self.sliders:
            rows, cols = self.shape[-2:]
            self.heatmap.update(plane(self.array, self.index), row_labels=self._labels(rows), col_labels=self._labels(cols))

    def _histogram(self) -> Any:
        import ipywidgets as w

        bq = require_bqplot()
        counts, edges = histogram(self.array)
        if not counts:
            return w.HTML("<i>no finite values</i>")
        x = bq.LinearScale()
        y = bq.LinearScale(min=0)
        centres = [(a + b) / 2 for a, b in zip(edges, edges[1:])]
        bars = bq.Bars(x=centres, y=counts, scales={"x": x, "y": y}, padding=0.05, colors=["#4e79a7"],
                       tooltip=bq.Tooltip(fields=["x", "y"], labels=["value", "count"], formats=[".4g", "d"]))
        axes = [bq.Axis(scale=x, label="value", tick_format=".3g"), bq.Axis(scale=y, side="left", label="count")]
        fig = bq.Figure(marks=[bars], axes=axes, fig_margin={"top": 10, "bottom": 40, "left": 50, "right": 10},
                        layout=w.Layout(height="200px", width="100%"))
        fig.add_class("jf-histogram")
        return fig

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def is_attention(value: Any, tokens: Sequence[str] | None = None) -> bool:
    """A ``(layers, heads, n, n)`` tensor (n the token count, when tokens are known)."""
    shape = tuple(getattr(value, "shape", ()))
    return len(shape) == 4 and shape[2] == shape[3] and (tokens is None or shape[2] == len(tokens))


class AttentionView:
    """Attention probabilities ``(layers, heads, tokens, tokens)``: pick a layer and a head
    for a token-by-token map (query rows, key columns), or "all" for one map per head."""

    def __init__(self, value: Any, *, name: str = "attentions", tokens: Sequence[str] | None = None,
                 layer: int = 0, head: int | str = 0) -> None:
        import ipywidgets as w

        self.array = as_array(value)
        if self.array.ndim != 4:
            raise ValueError(f"{name}: attention probabilities are (layers, heads, tokens, tokens), not shape {self.array.shape}")
        layers, heads, n, _ = self.array.shape
        self.name = name
        self.axis = token_axis(tokens, n)
        self._check(layer, head)
        self.layer = w.IntSlider(value=layer, min=0, max=layers - 1, description="layer", continuous_update=False)
        self.head = w.Dropdown(options=[*range(heads), "all"], value=head, description="head", layout=w.Layout(width="180px"))
        self.layer.add_class("jf-attention-layer")
        self.head.add_class("jf-attention-head")
        head_html = _stats_html(name, self.array, self.array.shape, dtype=dtype_name(value),
                                note=f"{layers} layers, {heads} heads, {n} tokens")
        self.map = Heatmap(self.array[layer, 0], rows="query token", cols="key token", row_labels=self.axis.labels,
                           col_labels=self.axis.labels, height="420px")
        self.map.figure.add_class("jf-attention-map")
        self.grid = w.GridBox(layout=w.Layout(grid_template_columns="repeat(4, 1fr)", grid_gap="4px"))
        self.grid.add_class("jf-attention-grid")
        self.body = w.VBox([self.map.widget])
        self.layer.observe(lambda _c: self._redraw(), names="value")
        self.head.observe(lambda _c: self._redraw(), names="value")
        self.widget = w.VBox([w.HTML(head_html), w.HBox([self.layer, self.head]), self.body])
        self.widget.add_class("jf-tensor-view")
        self.widget.add_class("jf-attention-view")
        self._redraw()

    def _check(self, layer: int, head: int | str) -> None:
        layers, heads = self.array.shape[:2]
        if not 0 <= layer < layers:
            raise ValueError(f"{self.name}: layer {layer} is out of range: the model has {layers} layers (0 to {layers - 1})")
        if head != "all" and not (isinstance(head, int) and 0 <= head < heads):
            raise ValueError(f"{self.name}: head {head!r} is out of range: each layer has {heads} heads (0 to {heads - 1}, or 'all')")

    def show(self, layer: int | None = None, head: int | str | None = None) -> AttentionView:
        """Switch to a layer and head (``"all"``: every head of the layer)."""
        layer = self.layer.value if layer is None else layer
        head = self.head.value if head is None else head
        self._check(layer, head)
        with self.layer.hold_trait_notifications(), self.head.hold_trait_notifications():
            self.layer.value, self.head.value = layer, head
        self._redraw()
        return self

    def _redraw(self) -> None:
        layer, head = self.layer.value, self.head.value
        if head == "all":
            self.grid.children = [
                Heatmap(self.array[layer, h], rows="query", cols="key", row_labels=self.axis.labels,
                        col_labels=self.axis.labels, height="170px", title=f"head {h}", compact=True).figure
                for h in range(self.array.shape[1])
            ]
            self.body.children = [self.grid]
        else:
            self.map.update(self.array[layer, head], row_labels=self.axis.labels, col_labels=self.axis.labels)
            self.body.children = [self.map.widget]

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


class DiffView:
    """This run's tensor against the previous run's: numbers first, then the difference
    (this run minus the previous one) drawn with the tensor's own view."""

    def __init__(self, current: Any, previous: Any, *, name: str = "tensor", tokens: Sequence[str] | None = None,
                 index: Sequence[int] = ()) -> None:
        import ipywidgets as w

        self.diff = d = compare(current, previous)
        shapes = ("same shape " + "\u00d7".join(map(str, d.shape)) if d.same_shape else
                  f"shapes differ: now {d.shape}, before {d.previous_shape}; the common part is compared")
        summary = (
            f"<div class='jf-diff'><b>{_esc(name)}: this run vs the previous run</b> ({_esc(shapes)})<br>"
            f"<span class='jf-stat'><i>max |diff|</i> {_fmt(d.max_abs)}</span> &nbsp; "
            f"<span class='jf-stat'><i>mean |diff|</i> {_fmt(d.mean_abs)}</span> &nbsp; "
            f"<span class='jf-stat'><i>cosine similarity</i> {'n/a' if d.cosine is None else f'{d.cosine:.6f}'}</span> &nbsp; "
            f"<span class='jf-stat'><i>changed</i> {d.changed} of {d.compared}</span></div>"
        )
        parts: list[Any] = [w.HTML(summary)]
        if d.changed:
            tokens = tokens if d.same_shape else None
            self.view: TensorView | None = TensorView(d.difference, name=f"{name} (now - before)", tokens=tokens,
                                                      index=index, diverging=True)
            parts.append(self.view.widget)
        else:
            self.view = None
            parts.append(w.HTML("<i>identical to the previous run</i>"))
        self.widget = w.VBox(parts)
        self.widget.add_class("jf-diff-view")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def make_view(value: Any, *, name: str, tokens: Sequence[str] | None = None, layer: int = 0, head: int | str = 0,
              index: Sequence[int] = ()) -> TensorView | AttentionView:
    """The view a tensor gets: attention probabilities get `AttentionView`, the rest `TensorView`."""
    if name.split(".")[-1] == "attentions" and is_attention(value, tokens):
        return AttentionView(value, name=name, tokens=tokens, layer=layer, head=head)
    return TensorView(value, name=name, tokens=tokens, index=index)
