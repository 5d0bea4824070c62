"""A Gantt chart of a run as inline SVG: one bar per node, so overlaps and slow nodes show."""

from __future__ import annotations

import html
from dataclasses import dataclass

from jupyter_flow.trace import RunResult
from jupyter_flow.workbench.styles import STATUS_COLOURS

__all__ = ["Bar", "bars", "timeline_svg"]

ROW, LABEL_W, CHART_W = 22, 130, 420


@dataclass(frozen=True)
class Bar:
    node: str
    status: str
    start_s: float  # from the start of the run
    duration_s: float
    cached: bool


def bars(result: RunResult) -> list[Bar]:
    """One bar per node that started, in start order, times relative to the run start."""
    origin = result.started_at
    out = []
    for record in result.trace:
        if record.started_at is None:
            continue
        if origin is None:
            origin = record.started_at
        out.append(Bar(record.node, record.status, max(record.started_at - origin, 0.0), record.duration_s or 0.0, record.cached))
    return out


def timeline_svg(result: RunResult) -> str:
    """The run as a Gantt chart; hovering a bar shows its node, status and times."""
    rows = bars(result)
    if not rows:
        return "<div class='jf-timeline'>No node has started yet.</div>"
    end = max(max(b.start_s + b.duration_s for b in rows), result.duration_s or 0.0, 1e-6)
    scale = CHART_W / end
    height = ROW * len(rows) + 24
    parts = []
    for i, bar in enumerate(rows):
        y = i * ROW + 4
        x = LABEL_W + bar.start_s * scale
        w = max(bar.duration_s * scale, 2.0)
        colour = STATUS_COLOURS.get(bar.status, "#999999")
        tip = f"{bar.node}: {bar.status}{' (cached)' if bar.cached else ''}, start {bar.start_s * 1000:.1f} ms, took {bar.duration_s * 1000:.1f} ms"
        parts.append(
            f"<text x='{LABEL_W - 6}' y='{y + 13}' font-size='11' text-anchor='end'>{html.escape(bar.node)}</text>"
            f"<rect class='jf-bar' data-node='{html.escape(bar.node)}' x='{x:.1f}' y='{y}' width='{w:.1f}' height='{ROW - 6}' "
            f"fill='{colour}' stroke='#333' stroke-width='0.5'><title>{html.escape(tip)}</title></rect>"
            f"<text x='{x + w + 4:.1f}' y='{y + 13}' font-size='10' fill='#444'>{bar.duration_s * 1000:.1f} ms</text>"
        )
    axis_y = ROW * len(rows) + 8
    ticks = []
    for k in range(5):
        t = end * k / 4
        tx = LABEL_W + t * scale
        ticks.append(
            f"<line x1='{tx:.1f}' y1='0' x2='{tx:.1f}' y2='{axis_y}' stroke='#e3e3e3'/>"
            f"<text x='{tx:.1f}' y='{axis_y + 12}' font-size='9' text-anchor='middle'>{t * 1000:.0f} ms</text>"
        )
    width = LABEL_W + CHART_W + 70
    title = f"run {html.escape(result.run_id)}: {html.escape(result.status)}, {(result.duration_s or end) * 1000:.1f} ms"
    return (
        f"<div class='jf-timeline'><div style='font-size:12px'>{title}</div>"
        f"<svg width='{width}' height='{height}' viewBox='0 0 {width} {height}'>{''.join(ticks)}{''.join(parts)}</svg></div>"
    )
