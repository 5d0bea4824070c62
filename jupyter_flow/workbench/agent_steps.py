"""The steps of an `agent` node, drawn in the Inspect tab as a list that opens row by row.

`agent_rows(record)` reads a node record (the output's ``steps`` once the loop answered,
the record's ``extra["steps"]`` while it runs and after it failed) into `StepRow`s: each
model turn, each tool call with its name and arguments, the call's result or error, and
the final answer; then, when a limit stopped the agent (``max_steps`` or ``timeout_s``), a
row that says which (or, when something else failed the node, a row with its error).
`steps_html` draws the rows as ``<details>`` elements: a closed row is one line (what, the
time, a preview), an open one its whole content up to `PREVIEW_CHARS`; a longer content
says its real size, and `AgentStepsView`'s "Show all" shows it whole (up to `FULL_CHARS`).
At most `MAX_ROWS` rows are drawn.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from jupyter_flow.trace import NodeRecord

__all__ = ["FULL_CHARS", "MAX_ROWS", "PREVIEW_CHARS", "AgentStepsView", "StepRow", "agent_rows", "steps_html", "stopped_text"]

#: rows drawn at most (then a line says how many are left out)
MAX_ROWS = 200
#: characters of a row's content shown when it is opened
PREVIEW_CHARS = 1500
#: characters "Show all" shows at most
FULL_CHARS = 200_000
#: characters of the one-line preview of a closed row
_LINE_CHARS = 110

RowKind = Literal["model", "call", "result", "error", "answer", "limit"]
_KIND_LABEL: dict[str, str] = {"model": "model", "call": "tool call", "result": "result", "error": "error",
                                "answer": "final answer", "limit": "stopped"}
_KIND_COLOUR: dict[str, str] = {"model": "#4e79a7", "call": "#b07aa1", "result": "#59a14f", "error": "#d64541",
                                "answer": "#2e7d32", "limit": "#e07b00"}


@dataclass(frozen=True)
class StepRow:
    """One row of the list: `key` names it ("2", "2.1", "2.1 result", "answer", "limit"),
    `title` says what it is, `content` is the whole text it opens to, `facts` the small
    details shown beside it (finish reason, tokens, the tool that ran)."""

    key: str
    kind: RowKind
    title: str
    content: str
    duration_s: float | None = None
    facts: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def cut(self) -> bool:
        """Whether the opened row shows only part of the content."""
        return self.size > PREVIEW_CHARS


def agent_steps(record: NodeRecord) -> list[Mapping[str, Any]] | None:
    """The steps of an agent's record (None for other nodes, or before the first step)."""
    if record.type != "agent":
        return None
    outputs = record.outputs if isinstance(record.outputs, Mapping) else {}
    steps = outputs.get("steps", record.extra.get("steps"))
    return [s for s in steps if isinstance(s, Mapping)] if isinstance(steps, Sequence) and not isinstance(steps, str) else None


def stopped_text(record: NodeRecord) -> str | None:
    """Which limit stopped the agent, in words (None when none did)."""
    outputs = record.outputs if isinstance(record.outputs, Mapping) else {}
    steps = agent_steps(record) or []
    if outputs.get("stopped") == "max_steps":
        return (f"stopped at max_steps={len(steps)}: the model still called tools at its last step, which were not run; "
                "its last text is the answer (on_limit: answer)")
    stopped = record.extra.get("stopped")
    if not isinstance(stopped, Mapping):
        return None
    value = stopped.get("value")
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    if stopped.get("limit") == "max_steps":
        return (f"stopped at max_steps={shown}: the model still called tools at its last step, which were not run; "
                "the node failed (on_limit: answer would take the model's last text)")
    if stopped.get("limit") == "timeout_s":
        return f"stopped by timeout_s={shown} s after {len(steps)} model call{'s' if len(steps) != 1 else ''}: the node failed"
    return f"stopped by {stopped.get('limit')}={shown}"


def agent_rows(record: NodeRecord) -> list[StepRow]:
    """The rows of an agent's record, in the order things happened (see the module docstring)."""
    steps = agent_steps(record)
    if steps is None:
        return []
    outputs = record.outputs if isinstance(record.outputs, Mapping) else {}
    answered = record.status == "ok" and isinstance(outputs.get("text"), str)
    rows: list[StepRow] = []
    for i, step in enumerate(steps):
        number = str(step.get("step", i + 1))
        calls = [c for c in step.get("tool_calls") or () if isinstance(c, Mapping)]
        content = str(step.get("content") or "")
        facts = _model_facts(step)
        last = i == len(steps) - 1
        if last and answered and not calls and content.strip() == str(outputs["text"]).strip():
            rows.append(StepRow(number, "answer", f"step {number}: the final answer", content, _seconds(step), facts))
            continue
        rows.append(StepRow(number, "model", f"step {number}: the model", content, _seconds(step), facts))
        for j, call in enumerate(calls, 1):
            rows += _call_rows(f"{number}.{j}", call)
    if answered and (not rows or rows[-1].kind != "answer"):
        stopped = " (its last text: a limit stopped it)" if outputs.get("stopped") else ""
        rows.append(StepRow("answer", "answer", f"the final answer{stopped}", str(outputs["text"])))
    why = stopped_text(record)
    if why is not None:
        rows.append(StepRow("limit", "limit", why, why))
    elif record.status == "error" and record.error is not None:  # the model's server failed, say
        rows.append(StepRow("failed", "error", f"the node failed: {_line(record.error.message, 200)}", record.error.message))
    return rows


def _model_facts(step: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    facts = []
    if step.get("finish_reason"):
        facts.append(("finish", str(step["finish_reason"])))
    usage = step.get("usage")
    if isinstance(usage, Mapping):
        tokens = ", ".join(f"{k.removesuffix('_tokens')} {v}" for k, v in usage.items() if isinstance(v, int))
        if tokens:
            facts.append(("tokens", tokens))
    calls = step.get("tool_calls") or ()
    if calls:
        facts.append(("asked for", f"{len(calls)} tool call{'s' if len(calls) != 1 else ''}"))
    return tuple(facts)


def _call_rows(key: str, call: Mapping[str, Any]) -> list[StepRow]:
    name = str(call.get("name") or "?")
    arguments = call.get("arguments")
    shown = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False, indent=1, default=str)
    facts = [("tool", str(call["tool"]))] if call.get("tool") else [("tool", "none ran")]
    if call.get("id"):
        facts.append(("id", str(call["id"])))
    rows = [StepRow(key, "call", f"{key} {name}({_inline(arguments)})", shown, None, tuple(facts))]
    if "result" in call:
        rows.append(StepRow(f"{key} result", "result", f"{key} {name} answered", str(call["result"]), _seconds(call)))
    elif "error" in call:
        rows.append(StepRow(f"{key} error", "error", f"{key} {name} failed", str(call["error"]), _seconds(call)))
    return rows


def _inline(arguments: Any) -> str:
    """Arguments in one short line: ``url="http://...", n=3``."""
    if isinstance(arguments, Mapping):
        text = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in list(arguments.items())[:20])
    else:
        text = str(arguments)
    return _line(text, 80)


def _seconds(item: Mapping[str, Any]) -> float | None:
    value = item.get("duration_s")
    return float(value) if isinstance(value, (int, float)) else None


def _line(text: str, most: int = _LINE_CHARS) -> str:
    flat = " ".join(text[: most * 4].split())
    return flat if len(flat) <= most else flat[: most - 1] + "\u2026"


def _time(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _summary(record: NodeRecord, steps: list[Mapping[str, Any]]) -> str:
    calls = [c for s in steps for c in s.get("tool_calls") or () if isinstance(c, Mapping)]
    failed = sum(1 for c in calls if "error" in c)
    parts = [f"{len(steps)} model call{'s' if len(steps) != 1 else ''}",
             f"{len(calls)} tool call{'s' if len(calls) != 1 else ''}" + (f" ({failed} failed)" if failed else "")]
    model_s = sum(s.get("duration_s") or 0 for s in steps)
    parts.append(f"model {_time(model_s)}")
    if record.duration_s is not None:
        parts.append(f"in all {_time(record.duration_s)}")
    elif record.status == "running":
        parts.append("running")
    tokens = sum(s["usage"].get("total_tokens") or 0 for s in steps if isinstance(s.get("usage"), Mapping))
    if tokens:
        parts.append(f"{tokens} tokens")
    return " \u00b7 ".join(parts)


def steps_html(record: NodeRecord, rows: list[StepRow] | None = None) -> str:
    """The list of an agent record's steps as HTML (empty for other nodes)."""
    steps = agent_steps(record)
    if steps is None:
        return ""
    rows = agent_rows(record) if rows is None else rows
    head = f"<div class='jf-agent-head'><b>Agent steps</b> <span class='jf-agent-sum'>{_esc(_summary(record, steps))}</span></div>"
    drawn = [_row_html(row) for row in rows[:MAX_ROWS]]
    if len(rows) > MAX_ROWS:
        drawn.append(f"<div class='jf-agent-more'>\u2026 {len(rows) - MAX_ROWS} more rows not drawn (To variable gives every step)</div>")
    if not rows:
        drawn.append("<div class='jf-agent-more'><i>The model has not answered yet.</i></div>")
    return f"<div class='jf-agent-steps'>{_CSS}{head}{''.join(drawn)}</div>"


def _row_html(row: StepRow) -> str:
    colour = _KIND_COLOUR[row.kind]
    label = f"<span class='jf-agent-kind' style='background:{colour}'>{_esc(_KIND_LABEL[row.kind])}</span>"
    preview = "" if row.kind in ("call", "limit") else f"<span class='jf-agent-preview'>{_esc(_line(row.content) or '(no text)')}</span>"
    timing = f"<span class='jf-agent-time'>{_esc(_time(row.duration_s))}</span>" if row.duration_s is not None else ""
    facts = "".join(f"<span class='jf-agent-fact'><i>{_esc(k)}</i> {_esc(v)}</span>" for k, v in row.facts)
    size = f"{row.size:,} characters"
    if row.cut:
        note = (f"<div class='jf-agent-cut'>{PREVIEW_CHARS:,} of {size} shown: choose \u201c{_esc(row.key)}\u201d "
                "under Show all to see the whole text</div>")
    else:
        note = f"<div class='jf-agent-size'>{size}</div>" if row.kind != "limit" else ""
    body = f"<pre class='jf-agent-content'>{_esc(row.content[:PREVIEW_CHARS])}</pre>" if row.kind != "limit" else ""
    css = f"jf-agent-row jf-agent-{row.kind}"
    return (f"<details class='{css}' data-key='{_esc(row.key)}'><summary>{label} {timing} <b>{_esc(row.title)}</b> {preview}</summary>"
            f"<div class='jf-agent-body'>{facts}{body}{note}</div></details>")


def full_html(row: StepRow) -> str:
    """A row's whole content (up to `FULL_CHARS`)."""
    shown = row.content[:FULL_CHARS]
    more = (f"<div class='jf-agent-cut'>the first {FULL_CHARS:,} of {row.size:,} characters; To variable gives the whole value</div>"
            if row.size > FULL_CHARS else "")
    return (f"<div class='jf-agent-steps'>{_CSS}<div class='jf-agent-head'><b>{_esc(row.title)}</b> "
            f"<span class='jf-agent-sum'>all {row.size:,} characters</span></div>"
            f"<pre class='jf-agent-content jf-agent-all'>{_esc(shown)}</pre>{more}</div>")


class AgentStepsView:
    """The Inspect tab's list of an agent's steps; hidden for other nodes. `show(record)`
    draws a record; `show_all(key)` shows one row's whole content below the list."""

    def __init__(self) -> None:
        import ipywidgets as w

        self.rows: list[StepRow] = []
        self.list = w.HTML("")
        self.list.add_class("jf-agent-list")
        self.choice = w.Dropdown(options=[], layout=w.Layout(width="auto", max_width="340px"))
        self.show_button = w.Button(description="Show all", icon="expand", layout=w.Layout(width="auto"))
        self.show_button.add_class("jf-agent-show-all")
        self.show_button.on_click(lambda _b: self.show_all(self.choice.value))
        self.hide_button = w.Button(description="Hide", icon="compress", layout=w.Layout(width="auto", display="none"))
        self.hide_button.on_click(lambda _b: self.hide_all())
        self.full = w.HTML("")
        self.full.add_class("jf-agent-full")
        self.full_bar = w.HBox([w.HTML("Show all:"), self.choice, self.show_button, self.hide_button],
                               layout=w.Layout(align_items="center", flex_flow="row wrap", display="none"))
        self.widget = w.VBox([self.list, self.full_bar, self.full], layout=w.Layout(display="none"))
        self.widget.add_class("jf-agent-view")

    def show(self, record: NodeRecord | None) -> None:
        """Draw the steps of `record`, or hide the view when it is not an agent's."""
        steps = agent_steps(record) if record is not None else None
        if record is None or steps is None:
            self.rows = []
            self.list.value = ""
            self.widget.layout.display = "none"
            self.hide_all()
            return
        self.rows = agent_rows(record)
        self.list.value = steps_html(record, self.rows)
        long = [row for row in self.rows[:MAX_ROWS] if row.cut]
        current = self.choice.value
        self.choice.options = [(f"{row.key}: {row.title[:60]} ({row.size:,} characters)", row.key) for row in long]
        if current in {row.key for row in long}:
            self.choice.value = current
        self.full_bar.layout.display = "flex" if long else "none"
        if not long:
            self.hide_all()
        self.widget.layout.display = "flex"

    def row(self, key: str) -> StepRow:
        for row in self.rows:
            if row.key == key:
                return row
        raise KeyError(f"no step row {key!r}; the rows are {', '.join(r.key for r in self.rows) or 'none'}")

    def show_all(self, key: str | None) -> str:
        """Show a row's whole content below the list; returns its HTML."""
        if key is None:
            return ""
        self.full.value = full_html(self.row(key))
        self.hide_button.layout.display = "inline-flex"
        return str(self.full.value)

    def hide_all(self) -> None:
        self.full.value = ""
        self.hide_button.layout.display = "none"


_CSS = """<style>
.jf-agent-list>.widget-html-content,.jf-agent-full>.widget-html-content{min-width:0;overflow:hidden}
.jf-agent-steps{font-size:12px;line-height:1.35;margin:4px 0;white-space:normal;overflow-wrap:anywhere}
.jf-agent-steps .jf-agent-head{margin:2px 0 4px}
.jf-agent-steps .jf-agent-sum{color:var(--jp-ui-font-color2,#666);margin-left:6px}
.jf-agent-steps .jf-agent-row{border-left:3px solid var(--jp-border-color2,#ddd);margin:1px 0;padding-left:4px}
.jf-agent-steps .jf-agent-row>summary{cursor:pointer;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.jf-agent-steps .jf-agent-kind{color:#fff;padding:0 6px;border-radius:8px;font-size:11px}
.jf-agent-steps .jf-agent-preview{color:var(--jp-ui-font-color2,#555)}
.jf-agent-steps .jf-agent-time{color:var(--jp-ui-font-color2,#666);font-style:italic;margin-right:2px}
.jf-agent-steps .jf-agent-fact{margin-right:10px}
.jf-agent-steps .jf-agent-body{margin:2px 0 6px 14px}
.jf-agent-steps pre.jf-agent-content{white-space:pre-wrap;word-break:break-word;max-height:320px;overflow:auto;
  background:var(--jp-layout-color2,#f7f7f7);padding:4px;margin:2px 0}
.jf-agent-steps pre.jf-agent-all{max-height:600px}
.jf-agent-steps .jf-agent-cut{color:#b05a00}
.jf-agent-steps .jf-agent-size,.jf-agent-steps .jf-agent-more{color:var(--jp-ui-font-color2,#777)}
.jf-agent-steps .jf-agent-limit>summary b{color:#b05a00}
</style>"""
