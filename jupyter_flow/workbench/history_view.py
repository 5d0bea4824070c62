"""The workbench's History tab: the past runs of the flow (from the run history), and two of
them compared, "Compare with...": what changed node by node, the flows' differences, and the
changed nodes marked on the graph (`jupyter_flow.workbench.iteration`)."""

from __future__ import annotations

import html
import time
from collections.abc import Mapping, Sequence
from typing import Any

from jupyter_flow.errors import StoreError
from jupyter_flow.flowdiff import FieldChange
from jupyter_flow.history import NodeDiff
from jupyter_flow.workbench.actions import WorkbenchActions
from jupyter_flow.workbench.controls import FeedbackLine, button
from jupyter_flow.workbench.events import Change
from jupyter_flow.workbench.iteration import Comparison
from jupyter_flow.workbench.state import WorkbenchState
from jupyter_flow.workbench.styles import STATUS_COLOURS, badge_pills_html

__all__ = ["MAX_NODES", "HistoryPanel", "comparison_html", "runs_table_html"]

#: field changes listed per node before "... more"
_MAX_CHANGES = 12
#: nodes a comparison lists (the changed ones first)
MAX_NODES = 200
_CELL_CHARS = 160

_CSS = """<style>
.jf-history{line-height:1.35}
.jf-history table{border-collapse:collapse;font-size:12px;margin:4px 0;width:100%}
.jf-history td,.jf-history th{border:1px solid #d6d6d6;padding:2px 5px;text-align:left;vertical-align:top;white-space:nowrap}
.jf-history td.jf-what{white-space:normal;min-width:160px}
.jf-history tr.jf-diff-edited td:first-child{border-left:4px solid #e65100}
.jf-history tr.jf-diff-changed td:first-child{border-left:4px dashed #6a1b9a}
.jf-history pre{white-space:pre-wrap;margin:2px 0;max-height:220px;overflow:auto;background:#f7f7f7;padding:3px;font-size:11px}
.jf-history .jf-pill{color:#fff;padding:0 6px;border-radius:8px;font-size:11px}
.jf-history code{font-size:11px}
</style>"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _short(text: str, most: int = _CELL_CHARS) -> str:
    return text if len(text) <= most else text[: most - 1] + "\u2026"


def _when(started: float | None) -> str:
    return time.strftime("%m-%d %H:%M:%S", time.localtime(started)) if started else ""


def _pill(status: str | None) -> str:
    colour = STATUS_COLOURS.get(status or "", "#999")
    return f"<span class='jf-pill' style='background:{colour}'>{_esc(status or '-')}</span>"


def run_label(run: Mapping[str, Any]) -> str:
    """A run in a list to choose from: short id, time, status, how many nodes were cached."""
    return (f"{run['run_id'][:8]}  {_when(run.get('started_at'))}  {run.get('status')}, "
            f"{run.get('cached', 0)}/{run.get('nodes', 0)} cached")


def runs_table_html(runs: Sequence[Mapping[str, Any]]) -> str:
    """The runs listed, newest first: id, when, status, time, nodes cached, flow version, git."""
    if not runs:
        return "<i>No runs of this flow in the history yet: run it.</i>"
    git = any(r.get("git_rev") for r in runs)
    rows = "".join(
        f"<tr><td><code>{_esc(r['run_id'][:8])}</code></td><td>{_esc(_when(r.get('started_at')))}</td>"
        f"<td>{_pill(r.get('status'))}</td>"
        f"<td>{_ms(r.get('duration_s'), digits=0)}</td>"
        f"<td>{r.get('cached', 0)} of {r.get('nodes', 0)}</td><td><code>{_esc((r.get('flow_digest') or '')[:8])}</code></td>"
        + (f"<td><code>{_esc((r.get('git_rev') or '')[:12])}</code></td>" if git else "") + "</tr>"
        for r in runs)
    return ("<table class='jf-runs'><thead><tr><th>run</th><th>started</th><th>status</th><th>time</th><th>cached</th>"
            f"<th>flow</th>{'<th>git</th>' if git else ''}</tr></thead><tbody>{rows}</tbody></table>")


def _changes(title: str, changes: Sequence[FieldChange]) -> str:
    if not changes:
        return ""
    items = "".join(f"<li><code>{_esc(_short(c.text()))}</code></li>" for c in changes[:_MAX_CHANGES])
    more = f"<li>... {len(changes) - _MAX_CHANGES} more</li>" if len(changes) > _MAX_CHANGES else ""
    return f"<div><b>{_esc(title)}</b><ul style='margin:0;padding-left:16px'>{items}{more}</ul></div>"


def _ms(value: float | None, *, digits: int = 1, unit: bool = True) -> str:
    return "-" if value is None else f"{value * 1000:.{digits}f}" + (" ms" if unit else "")


def _node_row(node: NodeDiff, mark: str | None) -> str:
    what = _changes("settings", node.config)
    if node.text_diff:
        what += f"<div><b>output</b><pre>{_esc(node.text_diff)}</pre></div>"
    else:
        what += _changes("output", node.outputs)
    cached = [b for b, on in (("cached", node.cached[1]),) if on]
    badges = badge_pills_html([*cached, *([mark] if mark else [])])
    row_class = f" class='jf-diff-{mark}'" if mark else ""
    return (f"<tr{row_class}><td><b>{_esc(node.node)}</b><br>{badges}</td><td>{_pill(node.status[0])} \u2192 {_pill(node.status[1])}"
            f"<br>{_ms(node.duration_s[0], unit=False)} \u2192 {_ms(node.duration_s[1])}</td>"
            f"<td class='jf-what'>{what or '<i>the same</i>'}</td></tr>")


def comparison_html(comparison: Comparison) -> str:
    """Two runs compared: the inputs that differ, each node (marked as on the graph) with its
    status, time, and the settings and output that changed; then the flows' differences."""
    diff = comparison.diff
    changed = diff.changed_nodes()
    head = (f"<div><b>Run <code>{_esc(diff.before[:12])}</code> \u2192 run <code>{_esc(diff.after[:12])}</code></b>: "
            + (f"{len(changed)} node(s) changed: {_esc(', '.join(changed))}" if changed else "no node changed") + "</div>")
    parts = [head, _changes("inputs", diff.inputs)]
    # the changed nodes first, then the others, MAX_NODES in all
    ordered = [n for n in diff.nodes if n.changed] + [n for n in diff.nodes if not n.changed]
    rows = "".join(_node_row(n, comparison.marks.get(n.node)) for n in ordered[:MAX_NODES])
    if len(ordered) > MAX_NODES:
        rows += f"<tr><td colspan='3'>... {len(ordered) - MAX_NODES} more nodes, the same in both runs</td></tr>"
    parts.append("<table class='jf-diff'><thead><tr><th>node</th><th>status, time</th><th>what changed</th></tr></thead>"
                 f"<tbody>{rows}</tbody></table>")
    legend = badge_pills_html(["edited", "changed"])
    parts.append(f"<div style='font-size:11px'>On the graph: {legend} "
                 "<i>edited</i>: its settings changed (or it is new); <i>changed</i>: only its output did.</div>")
    flow_diff = comparison.flow_diff
    if flow_diff is not None and not flow_diff.same:
        parts.append(f"<div><b>The flows</b><pre>{_esc(flow_diff.text())}</pre></div>")
    elif flow_diff is not None:
        parts.append("<div><b>The flows</b>: the same flow in both runs.</div>")
    return "".join(parts)


class HistoryPanel:
    """The History tab: the runs of the flow, newest first (listed again after each run),
    and "Compare with...": the run chosen against another, drawn below and on the graph."""

    def __init__(self, state: WorkbenchState, actions: WorkbenchActions) -> None:
        import ipywidgets as w

        self.state = state
        self.where = w.HTML()
        self.refresh_button = button(actions, "Refresh", "refresh", self.draw, "jf-history-refresh", place="history")
        self.runs_view = w.HTML()
        self.runs_view.add_class("jf-history-runs")
        self.run_choice = w.Dropdown(description="Run", layout=w.Layout(width="auto", min_width="300px"))
        self.run_choice.add_class("jf-history-run")
        self.other_choice = w.Dropdown(description="Compare with...", style={"description_width": "initial"},
                                       layout=w.Layout(width="auto", min_width="340px"))
        self.other_choice.add_class("jf-history-other")
        self.compare_button = button(actions, "Compare", "exchange", lambda: self.compare(actions), "jf-compare",
                                     place="history", style="primary")
        self.clear_button = button(actions, "Clear marks", "eraser", actions.clear_marks, "jf-clear-marks", place="history")
        self.feedback = FeedbackLine(state, "history", grow="1 1 200px")
        self.diff_view = w.HTML()
        self.diff_view.add_class("jf-history-diff")
        bar = w.HBox([self.run_choice, self.other_choice, self.compare_button, self.clear_button, self.feedback.widget],
                     layout=w.Layout(flex_flow="row wrap", align_items="center"))
        self.widget = w.VBox([w.HBox([self.where, self.refresh_button], layout=w.Layout(align_items="center")),
                              self.runs_view, bar, self.diff_view])
        self.widget.add_class("jf-history")
        self._runs: list[dict[str, Any]] = []
        state.subscribe(self._changed, ("history", "file"))
        self.draw()

    def _changed(self, _change: Change) -> None:
        self.draw()

    def draw(self) -> None:
        """List the runs again (from the history file) and show the comparison."""
        iteration = self.state.iteration
        if iteration.history is None:
            self.where.value = ("<i>The run history is off: <code>Workbench(..., history=True)</code> keeps every run in "
                                f"<code>{_esc(iteration.stores)}/history.sqlite</code>.</i>")
            self._runs = []
        else:
            self.where.value = f"Runs of <b>{_esc(iteration.flow_name)}</b> in <code>{_esc(iteration.history.path)}</code>"
            try:
                self._runs = iteration.runs()
            except StoreError as exc:
                self.where.value += f"<div style='color:#b00000'>&#9888; {_esc(exc)}</div>"
                self._runs = []
        self.runs_view.value = _CSS + f"<div class='jf-history'>{runs_table_html(self._runs)}</div>"
        options = [(run_label(r), r["run_id"]) for r in self._runs]
        ids = [run_id for _, run_id in options]
        if ids != [run_id for _, run_id in self.run_choice.options]:
            # a new list: the newest run against the one before it (the same list keeps the choice)
            self.run_choice.options = options
            self.other_choice.options = options
            if ids:
                self.run_choice.value = ids[0]
                self.other_choice.value = ids[min(1, len(ids) - 1)]
        comparison = iteration.comparison
        self.diff_view.value = "" if comparison is None else _CSS + f"<div class='jf-history'>{comparison_html(comparison)}</div>"
        self.compare_button.disabled = len(options) < 2

    def compare(self, actions: WorkbenchActions) -> None:
        """Compare the run chosen with the other one chosen, the older one first."""
        chosen, other = self.run_choice.value, self.other_choice.value
        order = [r["run_id"] for r in self._runs]
        if chosen in order and other in order and order.index(other) < order.index(chosen):
            chosen, other = other, chosen  # the list is newest first: `other` is the newer one
        actions.compare(other, chosen)
