"""The plots of the tensor views (bqplot over ipywidgets): a heatmap with a colour scale,
and bars for an array of a single row or column.

What is drawn is cut to at most `MAX_CELLS` x `MAX_CELLS` cells in the kernel
(`jupyter_flow.tensorview`). A heatmap takes at least the width of its panel, and more
when its columns would be thinner than `MIN_CELL_PX`; its axes carry the given labels
(tokens, say) on every k-th position, as many as fit without overlapping
(`jupyter_flow.tensorview.thin_labels`), index ranges when the array was cut. Scroll over
it to zoom and drag to pan (bqplot's PanZoom): the labels are thinned again for the part
in view; "reset zoom" shows the whole map. With "zoom and pan" off, clicking a cell
names it (both labels and the value).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from jupyter_flow.errors import MissingDependencyError
from jupyter_flow.tensorview import MAX_CELLS, as_array, downsample, thin_labels

__all__ = ["MIN_CELL_PX", "NULL_COLOUR", "Heatmap", "Strip", "plot2d", "require_bqplot"]

NULL_COLOUR = "#ff00ff"  # NaN and Inf cells
MIN_CELL_PX = 5  # a heatmap grows wider than its panel rather than draw thinner cells
_ROW_LABEL_PX = 12  # room one row label needs (9 px text)
_COL_LABEL_PX = 13  # room one column label needs, turned by 60 degrees
_FIG_MARGIN = {"top": 10, "bottom": 60, "left": 90, "right": 10}
_CHAR_PX = 5.6  # the width of one character of a 9 px tick label


def require_bqplot() -> Any:
    """bqplot, or an error that names the extra that brings it."""
    try:
        import bqplot
    except ImportError as exc:
        raise MissingDependencyError("bqplot", "workbench", "the tensor views") from exc
    return bqplot


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _ticks(labels: Sequence[str], most: int = 24) -> list[str]:
    step = max(1, -(-len(labels) // most))
    return list(labels[::step])


def _label_px(labels: Sequence[str]) -> int:
    """How wide the longest of `labels` is drawn (9 px text)."""
    return int(max((len(s) for s in labels), default=1) * _CHAR_PX) + 8


class Heatmap:
    """A 2-D heatmap with a colour scale, zoom and pan; `update` redraws it in place
    (sliders call it). `height` is the plot's CSS height; by default it grows with the rows."""

    def __init__(self, values: Any, *, rows: str = "row", cols: str = "column", row_labels: Sequence[str] | None = None,
                 col_labels: Sequence[str] | None = None, diverging: bool = False, height: str | None = None,
                 width: str = "100%", title: str = "") -> None:
        import ipywidgets as w

        bq = require_bqplot()
        self.rows_name, self.cols_name, self.diverging = rows, cols, diverging
        self.shape: tuple[int, int] = (0, 0)
        self._given_height = height
        self.readout = w.HTML("")
        self.readout.add_class("jf-tensor-readout")
        self.color_scale = bq.ColorScale(scheme="RdBu" if diverging else "viridis", reverse=diverging)
        self.row_scale, self.col_scale = bq.LinearScale(reverse=True), bq.LinearScale()  # row 0 on top
        self.row_axis = bq.Axis(scale=self.row_scale, side="left", label=rows, tick_style={"font-size": "9px"}, grid_lines="none")
        self.col_axis = bq.Axis(scale=self.col_scale, label=cols, tick_rotate=-60, tick_style={"font-size": "9px"},
                                grid_lines="none")
        self.color_axis = bq.ColorAxis(scale=self.color_scale, side="right", tick_format=".3~g", num_ticks=5)
        self.mark = bq.GridHeatMap(
            row=None, column=None, color=None, null_color=NULL_COLOUR, stroke=None,
            scales={"row": self.row_scale, "column": self.col_scale, "color": self.color_scale},
            tooltip=bq.Tooltip(fields=["color"], labels=["value"], formats=[".4g"]),
            interactions={"hover": "tooltip", "click": "tooltip"},
        )
        self.mark.on_element_click(self._pointed)  # grid cells report clicks
        self.zoom = bq.interacts.PanZoom(scales={"x": [self.col_scale], "y": [self.row_scale]})
        self.figure = bq.Figure(marks=[self.mark], axes=[self.row_axis, self.col_axis, self.color_axis],
                                fig_margin=dict(_FIG_MARGIN), title=title, padding_x=0, padding_y=0, interaction=self.zoom,
                                layout=w.Layout(width=width), title_style={"font-size": "11px"})
        self.figure.add_class("jf-heatmap")
        self.reset_button = w.Button(description="reset zoom", icon="expand", tooltip="show the whole map again",
                                     layout=w.Layout(width="auto"))
        self.reset_button.add_class("jf-heatmap-reset")
        self.reset_button.on_click(lambda _b: self.reset_zoom())
        # zooming takes the pointer: switched off, a click on a cell names it
        self.zoom_toggle = w.ToggleButton(value=True, description="zoom and pan", icon="search", layout=w.Layout(width="auto"),
                                          tooltip="on: scroll to zoom, drag to pan; off: click a cell to name it")
        self.zoom_toggle.add_class("jf-heatmap-zoom")
        self.zoom_toggle.observe(lambda c: self._zooming(bool(c["new"])), names="value")
        self.hint = w.HTML("")
        # cells edge to edge: no light seams where anti-aliasing meets the background
        crisp = w.HTML("<style>.jf-heatmap rect.heatmapcell{shape-rendering:crispEdges}</style>", layout=w.Layout(display="none"))
        self.widget = w.VBox([crisp, self.figure, w.HBox([self.zoom_toggle, self.reset_button, self.hint, self.readout],
                                                  layout=w.Layout(align_items="center", flex_flow="row wrap"))])
        self._zooming(True)
        self._labels: tuple[list[str], list[str], Any] = ([], [], None)
        self._set(values, row_labels, col_labels)
        for scale in (self.row_scale, self.col_scale):
            scale.observe(lambda _c: self._retick(), names=["min", "max"])

    def update(self, values: Any, *, row_labels: Sequence[str] | None = None, col_labels: Sequence[str] | None = None) -> None:
        self._set(values, row_labels, col_labels)

    def _zooming(self, on: bool) -> None:
        self.figure.interaction = self.zoom if on else None
        self.hint.value = ("<span class='jf-note'>scroll to zoom, drag to pan</span>" if on else
                           "<span class='jf-note'>click a cell to name it</span>")

    def reset_zoom(self) -> None:
        """Show the whole map (after zooming or panning)."""
        rows, cols = self.shape_drawn
        with self.row_scale.hold_sync(), self.col_scale.hold_sync():
            self.row_scale.min, self.row_scale.max = -0.5, rows - 0.5
            self.col_scale.min, self.col_scale.max = -0.5, cols - 0.5
        self._retick()

    @property
    def shape_drawn(self) -> tuple[int, int]:
        """Rows and columns of cells drawn (the array's, or the blocks it was cut into)."""
        rows, cols, _ = self._labels
        return len(rows), len(cols)

    @property
    def plot_px(self) -> tuple[float, float]:
        """The height and (at least) the width, in pixels, that the cells are drawn over."""
        rows, cols = self.shape_drawn
        height = self._plot_height(rows)
        return height, max(cols * MIN_CELL_PX, 400.0)

    def _plot_height(self, rows: int) -> float:
        if self._given_height is not None and self._given_height.endswith("px"):
            return float(self._given_height[:-2]) - _FIG_MARGIN["top"] - self.figure.fig_margin["bottom"]
        return float(min(max(rows * MIN_CELL_PX, 300), 720))

    def _set(self, values: Any, row_labels: Sequence[str] | None, col_labels: Sequence[str] | None) -> None:
        """Cut `values` down, label its rows and columns, size the figure, draw, and show it whole."""
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
            lo = 0.0 if 0.0 < lo < (hi - lo) * 1e-3 else lo  # 0 rather than 2e-31 for weights
            self.color_scale.min, self.color_scale.max = lo, hi if hi > lo else lo + 1e-9
        self._labels = (rows, cols, data)
        left, bottom = _label_px(rows), int(_label_px(cols) * 0.87) + 8
        margin = {"top": _FIG_MARGIN["top"], "bottom": bottom + 22, "left": left + 22, "right": 90}
        height = self._given_height or f"{int(self._plot_height(len(rows))) + margin['top'] + margin['bottom']}px"
        with self.figure.hold_sync():
            self.figure.fig_margin = margin
            self.figure.layout.height = height
            self.figure.layout.min_width = f"{len(cols) * MIN_CELL_PX + margin['left'] + margin['right']}px"
        self.row_axis.label_offset, self.col_axis.label_offset = f"{left + 6}px", f"{bottom + 4}px"
        with self.mark.hold_sync():  # bqplot checks row and column against the colours it has
            self.mark.row, self.mark.column = None, None
            self.mark.color = data
            self.mark.row = np.arange(len(rows) + 1, dtype=float) - 0.5  # cell i spans i - 0.5 .. i + 0.5
            self.mark.column = np.arange(len(cols) + 1, dtype=float) - 0.5
        self.reset_zoom()

    def _retick(self) -> None:
        """Label as many positions of the part in view as fit without overlapping."""
        rows, cols, _ = self._labels
        height, width = self.plot_px
        for axis, scale, labels, px, room in ((self.row_axis, self.row_scale, rows, height, _ROW_LABEL_PX),
                                              (self.col_axis, self.col_scale, cols, width, _COL_LABEL_PX)):
            shown = thin_labels(len(labels), px, min_px=room, start=scale.min, stop=scale.max)
            with axis.hold_sync():
                axis.tick_labels = {str(i): labels[i] for i in shown}
                axis.tick_values = [float(i) for i in shown]

    def _pointed(self, _mark: Any, event: Mapping[str, Any]) -> None:
        """Name the cell under the pointer: both axes' labels (token and position) and the value."""
        data = event.get("data")
        where = {**event, **(data if isinstance(data, Mapping) else {})}
        rows, cols, values = self._labels
        r = next((where[k] for k in ("rowNum", "row_num") if k in where), None)
        c = next((where[k] for k in ("columnNum", "column_num") if k in where), None)
        try:
            i, j = int(r), int(c)  # type: ignore[arg-type]
            value = float(values[i][j])
        except (TypeError, ValueError, IndexError):
            return
        self.readout.value = (f"<span class='jf-mono'>{_esc(self.rows_name)} <b>{_esc(rows[i])}</b>, "
                              f"{_esc(self.cols_name)} <b>{_esc(cols[j])}</b>: {value:.4g}</span>")


class Strip:
    """A one-row (or one-column) 2-D array as bars by position: a heatmap needs two axes."""

    def __init__(self, values: Any, *, rows: str = "row", cols: str = "column", row_labels: Sequence[str] | None = None,
                 col_labels: Sequence[str] | None = None, diverging: bool = False, height: str | None = None,
                 width: str = "100%", title: str = "") -> None:
        import ipywidgets as w

        bq = require_bqplot()
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
                                layout=w.Layout(height=height or "200px", width=width))
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
