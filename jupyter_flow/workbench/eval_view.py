"""The workbench's Evaluation tab: two versions of the flow over a dataset, as a table.

It draws the evaluation the state shows (`IterationState.evaluation`, from `evaluate` or a
folder `jupyter-flow eval --out DIR` wrote): a summary (items, how many answers changed,
ok and failed per version, each score's mean and how it moved, latency per node), then one
row per item with what differs between the two answers, the rows that changed marked.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jupyter_flow.evaluate import Evaluation
from jupyter_flow.flowdiff import diff_values
from jupyter_flow.workbench.actions import WorkbenchActions
from jupyter_flow.workbench.controls import FeedbackLine, button
from jupyter_flow.workbench.events import Change
from jupyter_flow.workbench.state import WorkbenchState
from jupyter_flow.workbench.styles import BADGES, STATUS_COLOURS

__all__ = ["MAX_TABLE_ROWS", "EvaluationPanel", "evaluation_html", "summary_html", "table_html"]

#: rows the table draws (the rest are in rows.jsonl)
MAX_TABLE_ROWS = 200
_CELL_CHARS = 220
_MAX_DIFFS = 6

_CSS = """<style>
.jf-eval{font-size:12px;line-height:1.35}
.jf-eval table{border-collapse:collapse;margin:4px 0;width:100%}
.jf-eval td,.jf-eval th{border:1px solid #d6d6d6;padding:2px 6px;text-align:left;vertical-align:top}
.jf-eval tr.jf-eval-changed{background:#fff4e0}
.jf-eval tr.jf-eval-changed td:first-child{border-left:4px solid #e65100}
.jf-eval .jf-pill{color:#fff;padding:0 6px;border-radius:8px;font-size:11px}
.jf-eval .jf-up{color:#1b7a33;font-weight:bold}.jf-eval .jf-down{color:#b00000;font-weight:bold}
.jf-eval code{font-size:11px;line-height:1.35;white-space:pre-wrap;word-break:break-word}
</style>"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _short(value: Any, most: int = _CELL_CHARS) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= most else text[: most - 1] + "\u2026"


def _pill(status: Any) -> str:
    colour = STATUS_COLOURS.get(str(status), "#999")
    return f"<span class='jf-pill' style='background:{colour}'>{_esc(status)}</span>"


def _where(folder: Path) -> Path:
    """A folder as the notebook would name it: relative to its folder when inside it."""
    try:
        return folder.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return folder


def _labels(evaluation: Evaluation) -> list[str]:
    return [str(label) for label in evaluation.summary.get("flows", {})]


def _delta(before: float | None, after: float | None) -> str:
    if before is None or after is None:
        return ""
    moved = after - before
    if abs(moved) < 1e-12:
        return "<span>\u00b10</span>"
    css = "jf-up" if moved > 0 else "jf-down"
    return f"<span class='{css}'>{moved:+.3f}</span>"


def summary_html(evaluation: Evaluation) -> str:
    """Items and changed rows; per version ok, failed and score means (with how each score
    moved from a to b); per node the latency p50 / p95 of each version."""
    s = evaluation.summary
    labels = _labels(evaluation)
    flows: Mapping[str, Any] = s.get("flows", {})
    head = (f"<div class='jf-eval-head'><b>{_esc(s.get('items', len(evaluation.rows)))} items, "
            f"<span style='color:{BADGES['edited']}'>{_esc(s.get('changed', 0))} changed</span></b>"
            f" \u2014 <code>{_esc(_where(evaluation.out_dir))}</code></div>")
    score_names: list[str] = []
    for label in labels:
        for name in flows[label].get("scores", {}):
            if name not in score_names:
                score_names.append(name)
    rows = []
    for i, label in enumerate(labels):
        side = flows[label]
        cells = [f"<td><b>{_esc(label)}</b></td><td><code>{_esc(_short(side.get('flow', ''), 80))}</code></td>",
                 f"<td>{_esc(side.get('ok', 0))}</td><td>{_esc(side.get('failed', 0))}</td>"]
        for name in score_names:
            value = side.get("scores", {}).get(name)
            first = flows[labels[0]].get("scores", {}).get(name)
            moved = _delta(first, value) if i > 0 else ""
            cells.append(f"<td>{'' if value is None else f'{value:.3f}'} {moved}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    score_heads = "".join(f"<th>{_esc(n)}</th>" for n in score_names)
    versions = (f"<table class='jf-eval-versions'><thead><tr><th>version</th><th>flow</th><th>ok</th><th>failed</th>{score_heads}"
                f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    nodes: list[str] = []
    for label in labels:
        nodes += [n for n in flows[label].get("latency", {}) if n not in nodes]
    latency_rows = "".join(
        f"<tr><td>{_esc(node)}</td>" + "".join(
            f"<td>{_esc(flows[label].get('latency', {}).get(node, {}).get('p50_ms', '-'))}</td>"
            f"<td>{_esc(flows[label].get('latency', {}).get(node, {}).get('p95_ms', '-'))}</td>" for label in labels) + "</tr>"
        for node in nodes)
    latency_heads = "".join(f"<th>{_esc(label)} p50 ms</th><th>{_esc(label)} p95 ms</th>" for label in labels)
    latency = (f"<details><summary>latency per node</summary><table class='jf-eval-latency'><thead><tr><th>node</th>{latency_heads}"
               f"</tr></thead><tbody>{latency_rows}</tbody></table></details>") if nodes else ""
    return head + versions + latency


def _differences(row: Mapping[str, Any], labels: Sequence[str]) -> str:
    """What differs between the first two versions' answers of a row, field by field."""
    if len(labels) < 2:
        return ""
    a, b = (row["flows"][label] for label in labels[:2])
    parts = []
    if a.get("status") != b.get("status"):
        parts.append(f"status: {_pill(a.get('status'))} \u2192 {_pill(b.get('status'))}")
    changes = diff_values(a.get("answer"), b.get("answer"))
    for change in changes[:_MAX_DIFFS]:
        parts.append(f"<code>{_esc(_short(change.text()))}</code>")
    if len(changes) > _MAX_DIFFS:
        parts.append(f"... {len(changes) - _MAX_DIFFS} more fields")
    return "<br>".join(parts)


def _inputs(inputs: Any) -> str:
    """An item's fields, one a line: the text of a text field, JSON for the rest."""
    if not isinstance(inputs, Mapping):
        return f"<code>{_esc(_short(inputs))}</code>"
    return "<br>".join(f"<i>{_esc(k)}</i> {_esc(_short(v, 160))}" for k, v in list(inputs.items())[:_MAX_DIFFS])


def _scores(side: Mapping[str, Any]) -> str:
    return ", ".join(f"{_esc(k)} {v:g}" for k, v in (side.get("scores") or {}).items())


def table_html(evaluation: Evaluation, *, only_changed: bool = False, limit: int = MAX_TABLE_ROWS) -> str:
    """One row per item (at most `limit`): id, inputs, each version's status and scores, and
    for a changed row what differs between the answers; changed rows are marked."""
    labels = _labels(evaluation)
    rows = [r for r in evaluation.rows if r.get("changed") or not only_changed]
    shown = rows[:limit]
    heads = "".join(f"<th>{_esc(label)}</th>" for label in labels)
    body = []
    for row in shown:
        changed = bool(row.get("changed"))
        sides = "".join(f"<td>{_pill(row['flows'][label].get('status'))} {_scores(row['flows'][label])}</td>" for label in labels)
        mark = f"<span class='jf-pill' style='background:{BADGES['edited']}'>changed</span> " if changed else ""
        what = _differences(row, labels) if changed else "<i>the same answer</i>"
        body.append(f"<tr class='{'jf-eval-changed' if changed else 'jf-eval-same'}'><td>{mark}<code>{_esc(row.get('id'))}</code></td>"
                    f"<td>{_inputs(row.get('inputs', {}))}</td>{sides}<td>{what}</td></tr>")
    more = (f"<div>... {len(rows) - len(shown)} more rows in <code>{_esc(evaluation.out_dir)}/rows.jsonl</code></div>"
            if len(rows) > len(shown) else "")
    return (f"<table class='jf-eval-table'><thead><tr><th>item</th><th>inputs</th>{heads}<th>what differs (a \u2192 b)</th></tr>"
            f"</thead><tbody>{''.join(body)}</tbody></table>{more}")


def evaluation_html(evaluation: Evaluation, *, only_changed: bool = False) -> str:
    return f"{_CSS}<div class='jf-eval'>{summary_html(evaluation)}{table_html(evaluation, only_changed=only_changed)}</div>"


class EvaluationPanel:
    """The Evaluation tab: Evaluate (the items of a .jsonl file through the flow as saved and
    as edited here), Show (a folder `jupyter-flow eval` wrote); the evaluation shown, summary
    first; "Only changed rows" filters the table."""

    def __init__(self, state: WorkbenchState, actions: WorkbenchActions) -> None:
        import ipywidgets as w

        self.state = state
        self.data_text = w.Text(placeholder="items.jsonl", description="Items", layout=w.Layout(width="260px"))
        self.data_text.add_class("jf-eval-data")
        self.evaluate_button = button(actions, "Evaluate", "balance-scale", lambda: actions.evaluate(self.data_text.value),
                                      "jf-evaluate", place="evaluation",
                                      tooltip="Run the flow as saved (a) and as edited here (b) over the items")
        self.folder_text = w.Text(placeholder="eval-folder", description="Folder", layout=w.Layout(width="260px"))
        self.folder_text.add_class("jf-eval-folder")
        self.show_button = button(actions, "Show", "folder-open", lambda: actions.show_evaluation(self.folder_text.value),
                                  "jf-eval-show", place="evaluation", tooltip="Show what jupyter-flow eval --out FOLDER wrote")
        self.only_changed = w.Checkbox(value=False, description="Only changed rows", indent=False,
                                       layout=w.Layout(width="auto"))
        self.only_changed.add_class("jf-eval-only-changed")
        self.only_changed.observe(lambda _c: self.draw(), names="value")
        self.feedback = FeedbackLine(state, "evaluation", grow="1 1 200px")
        self.view = w.HTML()
        self.view.add_class("jf-eval-view")
        row = w.Layout(flex_flow="row wrap", align_items="center")
        self.widget = w.VBox([w.HBox([self.data_text, self.evaluate_button, self.folder_text, self.show_button], layout=row),
                              w.HBox([self.only_changed, self.feedback.widget], layout=row), self.view])
        self.widget.add_class("jf-evaluation")
        state.subscribe(self._changed, ("evaluation",))
        self.draw()

    def _changed(self, _change: Change) -> None:
        self.draw()

    def draw(self) -> None:
        evaluation = self.state.iteration.evaluation
        if evaluation is None:
            self.view.value = ("<i>Evaluate two versions of the flow over a dataset: <code>await wb.evaluate('items.jsonl')</code> "
                               "compares the flow as edited here with its saved file; <code>wb.show_evaluation(DIR)</code> "
                               "shows what <code>jupyter-flow eval --out DIR</code> wrote.</i>")
            return
        self.view.value = evaluation_html(evaluation, only_changed=self.only_changed.value)
