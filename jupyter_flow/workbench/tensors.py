"""Tensor views as widgets (bqplot over ipywidgets), chosen by a tensor's shape.

- 0-D: the value. 1-D: a histogram with axis values, and the values as a strip when
  the vector is short. 2-D: a heatmap with a colour scale. 3-D and up: sliders for the
  leading axes over a heatmap of the last two.

Axes as long as the input's tokens are labelled with them (clicking a cell names token,
position and value); padding is marked apart; `axis_names` and `axis_labels` name the
axes and their positions where the caller knows better. What is drawn is cut to at most
`MAX_CELLS` x `MAX_CELLS` cells in the kernel (`jupyter_flow.tensorview`), the true
shape shown. The plots are `jupyter_flow.workbench.plots`; attention probabilities get their own views
(`jupyter_flow.workbench.attention`), run-to-run diffs theirs
(`jupyter_flow.workbench.tensor_diff`); `jupyter_flow.workbench.tensor_panel` is the
part of the Inspect tab that lists a node's tensors and draws the one picked.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from jupyter_flow.tensorview import MAX_CELLS, as_array, histogram, nonfinite, plane, token_axis
from jupyter_flow.values import dtype_name, summarize
from jupyter_flow.workbench.plots import NULL_COLOUR, Heatmap, Strip, plot2d, require_bqplot

__all__ = ["NULL_COLOUR", "Heatmap", "Strip", "TensorView", "stats_html"]

STRIP_MAX = 64  # a 1-D tensor this short is also drawn as a strip of its values


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def stats_html(name: str, array: Any, shape: Sequence[int], *, dtype: str = "", note: str = "") -> str:
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
    as long as them; `axis_labels` (axis -> labels) the axes given. `index` sets the
    leading sliders of a 3-D and up tensor; `axis_names` names every axis."""

    def __init__(self, value: Any, *, name: str = "tensor", tokens: Sequence[str] | None = None,
                 index: Sequence[int] = (), diverging: bool | None = None, note: str = "",
                 axis_names: Sequence[str] | None = None, axis_labels: Mapping[int, Sequence[str]] | None = None) -> None:
        import ipywidgets as w
        import numpy as np

        self.name, self.tokens = name, list(tokens) if tokens is not None else None
        self.array = as_array(value)
        self.shape = tuple(int(s) for s in self.array.shape)
        ndim = self.array.ndim
        self.axis_names = list(axis_names) if axis_names is not None else [f"axis {k}" for k in range(ndim)]
        self.axis_labels = {k % max(ndim, 1): list(v) for k, v in (axis_labels or {}).items()}
        finite = self.array[np.isfinite(self.array)]
        self.diverging = bool(finite.size and finite.min() < 0 < finite.max()) if diverging is None else diverging
        head = w.HTML(stats_html(name, self.array, self.shape, dtype=dtype_name(value), note=note))
        self.sliders: list[Any] = []
        self.heatmap: Heatmap | Strip | None = None
        parts: list[Any] = [head]
        if self.array.ndim == 0:
            parts.append(w.HTML(f"<code>{float(self.array):.6g}</code>"))
        elif self.array.ndim == 1:
            parts.append(self._histogram())
            if self.shape[0] <= STRIP_MAX:
                self.heatmap = Strip(self.array.reshape(1, -1), cols="position", col_labels=self._labels(0))
                parts.append(self.heatmap.widget)
        else:
            lead = self.shape[:-2]
            for axis, size in enumerate(lead):
                start = index[axis] if axis < len(index) else 0
                slider = w.IntSlider(value=start, min=0, max=max(size - 1, 0), description=self.axis_names[axis],
                                     continuous_update=False, layout=w.Layout(width="320px"))
                slider.add_class("jf-tensor-slider")
                slider.observe(lambda _c: self._redraw(), names="value")
                self.sliders.append(slider)
            rows, cols = self.shape[-2:]
            self.heatmap = plot2d(plane(self.array, self.index), rows=self.axis_names[-2], cols=self.axis_names[-1],
                                  row_labels=self._labels(ndim - 2), col_labels=self._labels(ndim - 1), diverging=self.diverging)
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

    def _labels(self, axis: int) -> list[str] | None:
        size = self.shape[axis]
        if axis in self.axis_labels and len(self.axis_labels[axis]) == size:
            return self.axis_labels[axis]
        if self.tokens is None or size != len(self.tokens):
            return None
        return token_axis(self.tokens, size).labels

    def _redraw(self) -> None:
        if self.heatmap is not None and self.sliders:
            ndim = self.array.ndim
            self.heatmap.update(plane(self.array, self.index), row_labels=self._labels(ndim - 2), col_labels=self._labels(ndim - 1))

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
