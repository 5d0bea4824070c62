"""What a node did in a run, as HTML: inputs, outputs, timing, errors, tensors.

Values are shown as a collapsible `<details>` tree; a list of records (dicts sharing keys)
as a table; text as text. Tensors and arrays appear as their summary with a histogram of
the summary's counts (matplotlib when it is installed, an inline SVG bar chart otherwise).
A node's page shows each tensor once, histogram first, at the top; the trees of its
inputs and outputs name the tensor in one line.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping
from typing import Any

from jupyter_flow.trace import NodeRecord, RunResult
from jupyter_flow.values import SUMMARY, encode, is_tensor, summarize
from jupyter_flow.workbench.styles import STATUS_COLOURS, badge_pills_html

__all__ = ["activations", "find_tensors", "histogram_svg", "record_html", "tensor_html", "tensor_line", "value_html"]

_MAX_CHILDREN = 200
_MAX_ROWS = 50
_TEXT_INLINE = 120


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _is_records(value: Any) -> bool:
    return (
        isinstance(value, list)
        and 0 < len(value)
        and all(isinstance(v, Mapping) for v in value)
        and all(not isinstance(x, (Mapping, list)) or len(str(x)) < 200 for v in value[:_MAX_ROWS] for x in v.values())
    )


def records_table(rows: list[Mapping[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows[:_MAX_ROWS]:
        for key in row:
            if key not in columns:
                columns.append(str(key))
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_esc(_short(row.get(c, '')))}</td>" for c in columns) + "</tr>" for row in rows[:_MAX_ROWS]
    )
    more = f"<div class='jf-more'>... {len(rows) - _MAX_ROWS} more rows</div>" if len(rows) > _MAX_ROWS else ""
    return f"<table class='jf-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(encode(value, SUMMARY).data)
    return text if len(text) <= 300 else text[:300] + "..."


def value_html(value: Any, *, name: str | None = None, open_levels: int = 1, brief_tensors: bool = False, _depth: int = 0) -> str:
    """A value as a collapsible tree; tensors, tables and text get their own views.
    `brief_tensors`: a tensor is named in one line (its full view is shown elsewhere)."""
    label = f"<b>{_esc(name)}</b>: " if name is not None else ""
    summary = summarize(value)
    if summary is None and isinstance(value, Mapping) and isinstance(value.get("__summary__"), Mapping):
        summary = dict(value["__summary__"])
    if summary is not None:
        if brief_tensors:
            return f"<div class='jf-leaf'>{label}{tensor_line(summary)}</div>"
        return f"<div class='jf-leaf'>{label}{tensor_html(summary)}</div>"
    if isinstance(value, str):
        if len(value) <= _TEXT_INLINE and "\n" not in value:
            return f"<div class='jf-leaf'>{label}<span class='jf-str'>{_esc(repr(value))}</span></div>"
        return f"<div class='jf-leaf'>{label}<pre class='jf-text'>{_esc(value[:20000])}</pre></div>"
    if value is None or isinstance(value, (bool, int, float)):
        return f"<div class='jf-leaf'>{label}<code>{_esc(repr(value))}</code></div>"
    if _is_records(value):
        title = f"{label}list of {len(value)} records"
        return _details(title, records_table(value), open_=_depth < open_levels)
    if isinstance(value, Mapping):
        items = list(value.items())
        inner = "".join(value_html(v, name=str(k), open_levels=open_levels, brief_tensors=brief_tensors, _depth=_depth + 1)
                        for k, v in items[:_MAX_CHILDREN])
        if len(items) > _MAX_CHILDREN:
            inner += f"<div class='jf-more'>... {len(items) - _MAX_CHILDREN} more keys</div>"
        return _details(f"{label}{{{len(items)} keys}}", inner, open_=_depth < open_levels)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        inner = "".join(value_html(v, name=f"[{i}]", open_levels=open_levels, brief_tensors=brief_tensors, _depth=_depth + 1)
                        for i, v in enumerate(items[:_MAX_CHILDREN]))
        if len(items) > _MAX_CHILDREN:
            inner += f"<div class='jf-more'>... {len(items) - _MAX_CHILDREN} more items</div>"
        return _details(f"{label}[{len(items)} items]", inner, open_=_depth < open_levels)
    return f"<div class='jf-leaf'>{label}<code>{_esc(_short(value))}</code></div>"


def _details(title: str, inner: str, *, open_: bool) -> str:
    return f"<details class='jf-tree'{' open' if open_ else ''}><summary>{title}</summary><div class='jf-children'>{inner}</div></details>"


def histogram_svg(counts: list[int], lo: float, hi: float, *, width: int = 260, height: int = 90) -> str:
    """A bar chart of histogram counts as inline SVG (no plotting library needed)."""
    if not counts:
        return ""
    top = max(counts) or 1
    bar = width / len(counts)
    bars = []
    for i, count in enumerate(counts):
        h = (height - 16) * count / top
        bars.append(
            f"<rect x='{i * bar:.1f}' y='{height - 14 - h:.1f}' width='{max(bar - 1, 1):.1f}' height='{h:.1f}' fill='#4e79a7'>"
            f"<title>{count}</title></rect>"
        )
    axis = (
        f"<text x='0' y='{height - 2}' font-size='10'>{lo:.3g}</text>"
        f"<text x='{width}' y='{height - 2}' font-size='10' text-anchor='end'>{hi:.3g}</text>"
    )
    return f"<svg class='jf-hist' width='{width}' height='{height}' viewBox='0 0 {width} {height}'>{''.join(bars)}{axis}</svg>"


def _histogram_png(counts: list[int], lo: float, hi: float) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(3.2, 1.3), dpi=80)
    width = (hi - lo) / len(counts) if hi > lo else 1.0
    ax.bar([lo + width * (i + 0.5) for i in range(len(counts))], counts, width=width * 0.95, color="#4e79a7")
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return f"<img class='jf-hist' src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}'/>"


def tensor_line(summary: Mapping[str, Any]) -> str:
    """A tensor in one line: kind, shape and dtype."""
    shape = "\u00d7".join(str(s) for s in summary.get("shape", [])) or "scalar"
    return (f"<span class='jf-tensor-ref'>{_esc(summary.get('kind', 'tensor'))} {_esc(shape)} "
            f"{_esc(summary.get('dtype', ''))}</span>")


def tensor_html(summary: Mapping[str, Any]) -> str:
    """A tensor summary: a histogram first, then shape, dtype, device, statistics and
    NaN/Inf counts."""
    fields = [("shape", "\u00d7".join(str(s) for s in summary.get("shape", [])) or "scalar")]
    for key in ("dtype", "device", "numel", "min", "max", "mean", "std", "nan", "inf"):
        if key in summary:
            value = summary[key]
            fields.append((key, f"{value:.4g}" if isinstance(value, float) else str(value)))
    cells = "".join(f"<span class='jf-stat'><i>{_esc(k)}</i> {_esc(v)}</span>" for k, v in fields)
    warn = ""
    if summary.get("nan") or summary.get("inf"):
        warn = "<span class='jf-warn'>contains NaN/Inf</span>"
    plot = ""
    hist = summary.get("histogram")
    if isinstance(hist, Mapping) and hist.get("counts"):
        lo, hi = hist.get("range", [0.0, 1.0])
        plot = _histogram_png(list(hist["counts"]), float(lo), float(hi)) or histogram_svg(list(hist["counts"]), float(lo), float(hi))
    kind = summary.get("kind", "tensor")
    return f"<div class='jf-tensor'><div>{plot}</div><b>{_esc(kind)}</b> {cells} {warn}</div>"


def find_tensors(value: Any, prefix: str = "", *, limit: int = 20) -> dict[str, Any]:
    """Live tensors and arrays inside a value, by dotted path."""
    found: dict[str, Any] = {}

    def walk(v: Any, path: str) -> None:
        if len(found) >= limit:
            return
        if is_tensor(v):
            found[path or "value"] = v
        elif isinstance(v, Mapping):
            for k, item in list(v.items())[:_MAX_CHILDREN]:
                walk(item, f"{path}.{k}" if path else str(k))
        elif isinstance(v, (list, tuple)):
            for i, item in enumerate(v[:_MAX_CHILDREN]):
                walk(item, f"{path}[{i}]")

    walk(value, prefix)
    return found


def activations(record: NodeRecord, result: RunResult | None = None) -> dict[str, Any]:
    """Captured activations of a node: from `result.tensors(node)` when the run offers it,
    else the tensors kept in the record's `extra`."""
    tensors_of = getattr(result, "tensors", None)
    if callable(tensors_of):
        try:
            got = tensors_of(record.node)
        except (KeyError, LookupError, TypeError):
            got = None
        if isinstance(got, Mapping) and got:
            return dict(got)
    return find_tensors({k: v for k, v in record.extra.items() if k != "attempt_errors"})


def _timing(record: NodeRecord) -> str:
    parts = []
    if record.duration_s is not None:
        parts.append(f"{record.duration_s * 1000:.1f} ms")
    parts.append(f"{record.attempts} attempt{'s' if record.attempts != 1 else ''}")
    if record.cached:
        parts.append("from the node cache, not run" if record.extra.get("cache_key") else "reused from the last run, not run")
    if record.defaulted:
        parts.append("failed, `default` used")
    if record.variant:
        parts.append(f"variant {record.variant}")
    return ", ".join(parts)


def record_html(record: NodeRecord, result: RunResult | None = None) -> str:
    """The whole inspector page of one node: status, timing, error, inputs, outputs, tensors."""
    colour = STATUS_COLOURS.get(record.status, "#999")
    head = (
        f"<div class='jf-head'><b>{_esc(record.node)}</b> <i>({_esc(record.type)})</i> "
        f"<span class='jf-status' style='background:{colour}'>{_esc(record.status)}</span> "
        f"{badge_pills_html(['cached'] if record.cached else [])} "
        f"<span class='jf-timing'>{_esc(_timing(record))}</span></div>"
    )
    parts = [head]
    if record.error is not None:
        parts.append(
            f"<div class='jf-error'><b>{_esc(record.error.type)}</b>: {_esc(record.error.message)}"
            f"<details><summary>traceback</summary><pre>{_esc(record.error.traceback)}</pre></details></div>"
        )
    retries = record.extra.get("attempt_errors")
    if retries:
        parts.append(_details("earlier attempts failed", "".join(f"<div>{_esc(e)}</div>" for e in retries), open_=False))
    extra = {k: v for k, v in record.extra.items() if k != "attempt_errors" and not is_tensor(v) and not find_tensors(v)}
    if extra:
        parts.append(_details("details", value_html(extra, open_levels=0), open_=False))
    # each tensor once, at the top, histogram first: the captured activations, then the
    # other tensors of the outputs; the trees below name them in a line
    captured = activations(record, result)
    if captured:
        parts.append(_section("Captured activations", "".join(value_html(v, name=k) for k, v in captured.items()), open_=True))
    shown = {id(v) for v in captured.values()}
    tensors = {k: v for k, v in find_tensors(record.outputs).items() if id(v) not in shown}
    if tensors:
        parts.append(_section("Tensors", "".join(value_html(v, name=k) for k, v in tensors.items()), open_=True))
    parts.append(_section("Inputs", value_html(record.inputs, open_levels=1, brief_tensors=True), open_=False))
    parts.append(_section("Outputs", value_html(record.outputs, open_levels=2, brief_tensors=True), open_=True))
    if record.shadow:
        parts.append(_section("Shadow variants", value_html(record.shadow, open_levels=1), open_=False))
    return f"<div class='jf-inspect'>{CSS}{''.join(parts)}</div>"


def _section(title: str, inner: str, *, open_: bool) -> str:
    return f"<details class='jf-section'{' open' if open_ else ''}><summary><b>{_esc(title)}</b></summary>{inner}</details>"


CSS = """<style>
.jf-inspect{font-size:12px;line-height:1.35}
.jf-inspect .jf-head{margin-bottom:6px}
.jf-inspect .jf-status{color:#fff;padding:1px 6px;border-radius:8px}
.jf-inspect .jf-children{margin-left:14px}
.jf-inspect pre{white-space:pre-wrap;max-height:300px;overflow:auto;background:#f7f7f7;padding:4px;margin:2px 0}
.jf-inspect .jf-table{border-collapse:collapse;margin:2px 0}
.jf-inspect .jf-table td,.jf-inspect .jf-table th{border:1px solid #ccc;padding:1px 6px;text-align:left}
.jf-inspect .jf-error{border-left:4px solid #d64541;padding:4px;background:#fff0f0;margin:4px 0}
.jf-inspect .jf-stat{margin-right:8px}
.jf-inspect .jf-warn{color:#d64541;font-weight:bold}
.jf-inspect .jf-section{margin-top:6px}
</style>"""
