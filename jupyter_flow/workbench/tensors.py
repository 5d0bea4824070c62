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
`MAX_CELLS` cells in the kernel (`jupyter_flow.tensorview`), the true shape shown.
`TensorPanel` is the part the workbench's Inspect tab holds.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from jupyter_flow.tensorview import (
    MAX_CELLS,
    as_array,
    compare,
    downsample,
    histogram,
    nonfinite,
    plane,
    token_axis,
)

if TYPE_CHECKING:
    from jupyter_flow.trace import RunResult

__all__ = ["AttentionView", "DiffView", "TensorPanel", "TensorView", "is_attention", "make_view"]

STRIP_MAX = 64  # a 1-D tensor this short is also drawn as a strip of its values
NULL_COLOUR = "#ff00ff"  # NaN and Inf cells
_FIG_MARGIN = {"top": 10, "bottom": 60, "left": 90, "right": 10}


def _require_bqplot() -> Any:
    try:
        import bqplot
    except ImportError as exc:
        from jupyter_flow.errors import MissingDependencyError

        raise MissingDependencyError("bqplot", "workbench", "the tensor views") from exc
    return bqplot


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _ticks(labels: Sequence[str], most: int = 24) -> list[str]:
    step = max(1, -(-len(labels) // most))
    return list(labels[::step])


class Heatmap:
    """A 2-D heatmap with a colour scale; `update` redraws it in place (sliders call it)."""

    def __init__(self, values: Any, *, rows: str = "row", cols: str = "column", row_labels: Sequence[str] | None = None,
                 col_labels: Sequence[str] | None = None, diverging: bool = False, height: str = "360px",
                 width: str = "100%", title: str = "", compact: bool = False) -> None:
        import ipywidgets as w

        bq = _require_bqplot()
        self.rows_name, self.cols_name, self.diverging = rows, cols, diverging
        self.shape: tuple[int, int] = (0, 0)
        self.readout = w.HTML("")
        self.readout.add_class("jf-tensor-readout")
        self.color_scale = bq.ColorScale(scheme="RdBu" if diverging else "viridis", reverse=diverging)
        self.row_scale, self.col_scale = bq.OrdinalScale(reverse=True), bq.OrdinalScale()  # row 0 on top
        self.row_axis = bq.Axis(scale=self.row_scale, side="left", label=rows if not compact else "",
                                tick_style={"font-size": "9px"})
        self.col_axis = bq.Axis(scale=self.col_scale, label=cols if not compact else "", tick_rotate=-60 if not compact else 0,
                                tick_style={"font-size": "9px"})
        self.color_axis = bq.ColorAxis(scale=self.color_scale, side="right", tick_format=".3~g", num_ticks=5, visible=not compact)
        rows_, cols_, data = self._prepare(values, row_labels, col_labels)
        self.mark = bq.GridHeatMap(
            row=rows_, column=cols_, color=data, null_color=NULL_COLOUR,
            scales={"row": self.row_scale, "column": self.col_scale, "color": self.color_scale},
            tooltip=bq.Tooltip(fields=["row", "column", "color"], labels=[rows, cols, "value"], formats=["", "", ".4g"]),
            interactions={"hover": "tooltip", "click": "tooltip"},
        )
        self.mark.on_hover(self._pointed)
        self.mark.on_element_click(self._pointed)  # grid cells report clicks; hover where the front end sends it
        axes = [self.row_axis, self.col_axis] if compact else [self.row_axis, self.col_axis, self.color_axis]
        margin = {"top": 18, "bottom": 6, "left": 6, "right": 6} if compact else {**_FIG_MARGIN, "right": 70}
        self.figure = bq.Figure(marks=[self.mark], axes=axes, fig_margin=margin, title=title, padding_x=0, padding_y=0,
                                layout=w.Layout(height=height, width=width), title_style={"font-size": "11px"})
        if compact:
            self.row_axis.visible = self.col_axis.visible = False
        self.figure.add_class("jf-heatmap")
        self.widget = w.VBox([self.figure, self.readout])
        self.row_axis.tick_values, self.col_axis.tick_values = _ticks(rows_), _ticks(cols_)

    def update(self, values: Any, *, row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None) -> None:
        rows, cols, data = self._prepare(values, row_labels, col_labels)
        with self.mark.hold_sync():
            self.mark.row, self.mark.column = rows, cols
            self.mark.color = data
        self.row_axis.tick_values, self.col_axis.tick_values = _ticks(rows), _ticks(cols)

    def _prepare(self, values: Any, row_labels: Sequence[str] | None, col_labels: Sequence[str] | None) -> tuple[list[str], list[str], Any]:
        """Cut `values` down, label its rows and columns, and set the colour range."""
        import numpy as np

        cut = downsample(values)
        self.shape = cut.shape
        rows = list(row_labels) if row_labels is not None and not cut.reduced else _index_labels(cut.rows, cut.step[0], cut.shape[0])
        cols = list(col_labels) if col_labels is not None and not cut.reduced else _index_labels(cut.cols, cut.step[1], cut.shape[1])
        data = np.asarray(cut.values, dtype=float)
        finite = data[np.isfinite(data)]
        if self.diverging:
            top = float(np.abs(finite).max()) if finite.size else 1.0
            top = top or 1.0
            self.color_scale.min, self.color_scale.max, self.color_scale.mid = -top, top, 0.0
        else:
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
            self.color_scale.min, self.color_scale.max = lo, hi if hi > lo else lo + 1e-9
        self._labels = (rows, cols, data)
        return rows, cols, data

    def _pointed(self, _mark: Any, event: Mapping[str, Any]) -> None:
        """Name the cell under the pointer: both axes' labels (token and position) and the value."""
        data = event.get("data")
        where = {**event, **(data if isinstance(data, Mapping) else {})}
        rows, cols, values = self._labels
        r = next((where[k] for k in ("rowNum", "row_num", "row") if k in where), None)
        c = next((where[k] for k in ("columnNum", "column_num", "column") if k in where), None)
        try:
            i = rows.index(r) if isinstance(r, str) else int(r)  # type: ignore[arg-type]
            j = cols.index(c) if isinstance(c, str) else int(c)  # type: ignore[arg-type]
            value = float(values[i][j])
        except (TypeError, ValueError, IndexError):
            return
        self.readout.value = (f"<span class='jf-mono'>{_esc(self.rows_name)} <b>{_esc(rows[i])}</b>, "
                              f"{_esc(self.cols_name)} <b>{_esc(cols[j])}</b>: {value:.4g}</span>")


class Strip:
    """A one-row (or one-column) 2-D array as bars by position: a heatmap needs two axes."""

    def __init__(self, values: Any, *, rows: str = "row", cols: str = "column", row_labels: Sequence[str] | None = None,
                 col_labels: Sequence[str] | None = None, diverging: bool = False, height: str = "200px",
                 width: str = "100%", title: str = "", compact: bool = False) -> None:
        import ipywidgets as w

        bq = _require_bqplot()
        self.shape: tuple[int, int] = (0, 0)
        self.x, self.y = bq.OrdinalScale(), bq.LinearScale()
        self.axis_name = cols
        positions, heights = self._prepare(values, row_labels, col_labels)
        self.mark = bq.Bars(x=positions, y=heights, scales={"x": self.x, "y": self.y}, colors=["#4e79a7"], padding=0.1,
                            tooltip=bq.Tooltip(fields=["x", "y"], labels=["position", "value"], formats=["", ".4g"]))
        self.x_axis = bq.Axis(scale=self.x, label=self.axis_name, tick_rotate=-60, tick_style={"font-size": "9px"},
                              tick_values=_ticks(positions))
        axes = [self.x_axis, bq.Axis(scale=self.y, side="left", tick_format=".3~g")]
        self.figure = bq.Figure(marks=[self.mark], axes=axes, fig_margin=_FIG_MARGIN, title=title,
                                layout=w.Layout(height=height, width=width))
        self.figure.add_class("jf-strip")
        self.readout = w.HTML("")
        self.widget = w.VBox([self.figure])

    def _prepare(self, values: Any, row_labels: Sequence[str] | None, col_labels: Sequence[str] | None) -> tuple[list[str], Any]:
        import numpy as np

        a = as_array(values)
        self.shape = (int(a.shape[0]), int(a.shape[1]))
        along_rows = a.shape[1] == 1 and a.shape[0] > 1
        vector = a[:, 0] if along_rows else a[0]
        labels = row_labels if along_rows else col_labels
        vector = vector[:MAX_CELLS * MAX_CELLS // 256]
        names = list(labels)[: len(vector)] if labels is not None else [str(i) for i in range(len(vector))]
        return names, np.where(np.isfinite(vector), vector, np.nan)

    def update(self, values: Any, *, row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None) -> None:
        positions, heights = self._prepare(values, row_labels, col_labels)
        with self.mark.hold_sync():
            self.mark.x, self.mark.y = positions, heights
        self.x_axis.tick_values = _ticks(positions)


def plot2d(values: Any, **options: Any) -> Heatmap | Strip:
    """A heatmap, or bars for an array with a single row or column."""
    shape = as_array(values).shape
    return Strip(values, **options) if min(shape) == 1 else Heatmap(values, **options)


def _index_labels(starts: Sequence[int], step: int, size: int) -> list[str]:
    if step == 1:
        return [str(i) for i in starts]
    return [f"{s}-{min(s + step, size) - 1}" for s in starts]


def _stats_html(name: str, array: Any, shape: Sequence[int], *, dtype: str = "", note: str = "") -> str:
    import numpy as np

    finite = array[np.isfinite(array)]
    cells = [("shape", "\u00d7".join(str(s) for s in shape) or "scalar")]
    if dtype:
        cells.append(("dtype", dtype))
    if finite.size:
        cells += [("min", f"{finite.min():.4g}"), ("max", f"{finite.max():.4g}"), ("mean", f"{finite.mean():.4g}"),
                  ("std", f"{finite.std():.4g}")]
    stats = " &nbsp; ".join(f"<span class='jf-stat'><i>{_esc(k)}</i> {_esc(v)}</span>" for k, v in cells)
    bad = nonfinite(array)
    warn = ""
    if bad.any:
        where = ", ".join(f"[{', '.join(str(i) for i in p)}]={v}" for p, v in zip(bad.positions, bad.values))
        warn = (f"<div class='jf-warn jf-nonfinite'>{bad.nan} NaN, {bad.inf} Inf; first at {_esc(where)} "
                f"(cells drawn in <span style='color:{NULL_COLOUR}'>magenta</span>)</div>")
    extra = f" <span class='jf-note'>{_esc(note)}</span>" if note else ""
    return f"<div class='jf-tensor-head'><b>{_esc(name)}</b> {stats}{extra}{warn}</div>"


def _dtype(value: Any) -> str:
    dtype = getattr(value, "dtype", None)
    return str(dtype).replace("torch.", "") if dtype is not None else ""


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
        head = w.HTML(_stats_html(name, self.array, self.shape, dtype=_dtype(value), note=note))
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

        bq = _require_bqplot()
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
        head_html = _stats_html(name, self.array, self.array.shape, dtype=_dtype(value),
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


# -- the workbench's panel ------------------------------------------------------------------
class TensorPanel:
    """The tensors of the selected node, one view at a time, under the inspector.

    `show(node, result)` lists the node's tensors (captured ones first); picking one draws
    its view; "compare with previous run" draws the diff against the last run in which
    the node ran before (`remember` keeps it)."""

    def __init__(self) -> None:
        import ipywidgets as w

        self.node: str | None = None
        self.result: RunResult | None = None
        self.tensors: dict[str, Any] = {}
        self.tokens: list[list[str]] = []
        self.previous: dict[str, RunResult] = {}
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

    def remember(self, previous: RunResult | None, current: RunResult) -> None:
        """After a run: for each node that ran again (not reused), the run before is kept."""
        if previous is None or previous is current:
            return
        for node_id, record in current.records.items():
            if not record.cached and node_id in previous.records and previous.records[node_id].status == "ok":
                self.previous[node_id] = previous

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

    def open(self, name: str, *, layer: int = 0, head: int | str = 0, index: Sequence[int] = (), item: int = 0,
             compare: bool = False) -> Any:
        """Draw tensor `name` of the shown node and return its view."""
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
        return self._draw(layer=layer, head=head, index=index, item=item)

    def _items(self, name: str) -> int:
        value = self.tensors.get(name)
        return len(value) if isinstance(value, list) else 0

    def _picked(self) -> None:
        if self._quiet:
            return
        self._draw()

    def _draw(self, *, layer: int = 0, head: int | str = 0, index: Sequence[int] = (), item: int | None = None) -> Any:
        import ipywidgets as w

        name = self.picker.value
        if name is None or self.node is None:
            self.body.children, self.view = [], None
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
            before = self._previous_value(name, i if count else None)
            if before is None:
                self.view = None
                self.body.children = [w.HTML(f"<i>No earlier run of {_esc(self.node)} with {_esc(name)} to compare with: "
                                             "run it again (Run, or Run from here) first.</i>")]
                return None
            self.view = DiffView(current, before, name=name, tokens=tokens, index=index)
        else:
            self.view = make_view(current, name=name, tokens=tokens, layer=layer, head=head, index=index)
        self.body.children = [self.view.widget]
        return self.view

    def _previous_value(self, name: str, item: int | None) -> Any:
        before = self.previous.get(self.node or "")
        if before is None:
            return None
        value = node_tensors(before, self.node or "").get(name)
        if isinstance(value, list):
            return value[item] if item is not None and item < len(value) else None
        return value


def node_tensors(result: RunResult, node_id: str) -> dict[str, Any]:
    """A node's tensors in a run: what it captured (by name, attentions first), then tensors
    in its outputs."""
    from jupyter_flow.workbench.inspector import activations, find_tensors

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
    from jupyter_flow.capture import tokens

    try:
        return tokens(result, node_id)
    except KeyError:
        return []
