"""The plots of the tensor views (bqplot over ipywidgets): a heatmap with a colour scale,
and bars for an array of a single row or column.

What is drawn is cut to at most `MAX_CELLS` x `MAX_CELLS` cells in the kernel
(`jupyter_flow.tensorview`); axes are labelled with the given labels (tokens, say) when
nothing was cut, with index ranges otherwise; hovering or clicking a cell names it.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from jupyter_flow.errors import MissingDependencyError
from jupyter_flow.tensorview import MAX_CELLS, as_array, downsample

__all__ = ["NULL_COLOUR", "Heatmap", "Strip", "plot2d", "require_bqplot"]

NULL_COLOUR = "#ff00ff"  # NaN and Inf cells
_FIG_MARGIN = {"top": 10, "bottom": 60, "left": 90, "right": 10}


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


class Heatmap:
    """A 2-D heatmap with a colour scale; `update` redraws it in place (sliders call it)."""

    def __init__(self, values: Any, *, rows: str = "row", cols: str = "column", row_labels: Sequence[str] | None = None,
                 col_labels: Sequence[str] | None = None, diverging: bool = False, height: str = "360px",
                 width: str = "100%", title: str = "", compact: bool = False) -> None:
        import ipywidgets as w

        bq = require_bqplot()
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
