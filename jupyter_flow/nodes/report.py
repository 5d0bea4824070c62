"""`report`: turn rule findings into a structured review and a readable summary.

The review is a JSON-able dict (summary counts by severity, overall level, findings
grouped by clause, document-wide findings such as a missing clause, and the document's
metadata); Markdown and HTML versions are rendered from it with Jinja2 templates, which a
flow may replace with its own (`markdown_template`, `html_template`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from jupyter_flow.errors import NodeError, Problem
from jupyter_flow.expressions import is_template
from jupyter_flow.nodes.base import Node, NodeConfig, NodeContext
from jupyter_flow.nodes.rules import LEVELS, overall_level

__all__ = ["ReportNode", "build_review", "render_html", "render_markdown"]

_SEVERITIES = ("high", "medium", "low")
_DOCUMENT_KEYS = ("source", "title", "author", "page_count", "pages_read", "ocr_pages", "ocr_language", "encrypted")

MARKDOWN_TEMPLATE = """\
# {{ review.title }}

{% if review.document -%}
{% if review.document.title %}- **Document:** {{ review.document.title | md }}{% if review.document.source %} (`{{ review.document.source }}`){% endif %}
{% elif review.document.source %}- **Document:** `{{ review.document.source }}`
{% endif -%}
{% if review.document.page_count %}- **Pages:** {{ review.document.page_count }}{% if review.document.ocr_pages %} ({{ review.document.ocr_pages | length }} read by OCR){% endif %}
{% endif %}
{% endif -%}
**Overall risk: {{ review.level | upper }}** ({{ review.summary.findings }} finding{{ "" if review.summary.findings == 1 else "s" }}: \
{{ review.summary.high }} high, {{ review.summary.medium }} medium, {{ review.summary.low }} low; \
{{ review.summary.clauses_flagged }} of {{ review.summary.clauses_checked }} clauses flagged)
{% if not review.summary.findings %}
No risks found by the {{ review.summary.rules_checked }} rules.
{% endif %}
{%- if review.document_findings %}

## Whole document
{% for f in review.document_findings %}
- **{{ f.severity | upper }}** `{{ f.rule }}`: {{ f.message | md }}
{%- endfor %}
{% endif %}
{%- if review.clauses %}

## Flagged clauses
{% for c in review.clauses %}
### Clause {{ c.clause + 1 }}{% if c.page %}, page {{ c.page }}{% endif %}{% if c.label %} ({{ c.label }}{% if c.score is not none %}, {{ "%.2f" | format(c.score) }}{% endif %}){% endif %}: {{ c.severity | upper }}

> {{ c.segments | md_marked }}
{% for f in c.findings %}
- **{{ f.severity | upper }}** `{{ f.rule }}`: {{ f.message | md }}{% if f.match %} (matched "{{ f.match | md }}"){% endif %}
{%- endfor %}
{% endfor %}
{%- endif %}
{%- if review.notes %}

## Notes

{{ review.notes | md }}
{% endif %}
"""

HTML_TEMPLATE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ review.title }}</title>
<style>
 body { font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; line-height: 1.45; color: #222; }
 .level { display: inline-block; padding: .1rem .6rem; border-radius: .3rem; font-weight: 600; color: #fff; }
 .high { background: #c62828; } .medium { background: #ef6c00; } .low { background: #2e7d32; } .none { background: #607d8b; }
 .clause { border-left: 4px solid #ccc; padding: .2rem 1rem; margin: 1rem 0; }
 .clause.sev-high { border-color: #c62828; } .clause.sev-medium { border-color: #ef6c00; } .clause.sev-low { border-color: #2e7d32; }
 mark { background: #fff59d; } .meta { color: #666; font-size: .9rem; } code { font-size: .9em; }
 table { border-collapse: collapse; } td, th { padding: .2rem .8rem; border-bottom: 1px solid #ddd; text-align: left; }
</style>
</head>
<body>
<h1>{{ review.title }}</h1>
{% if review.document %}<p class="meta">
{%- if review.document.title %}{{ review.document.title }}{% endif %}
{%- if review.document.source %} <code>{{ review.document.source }}</code>{% endif %}
{%- if review.document.page_count %} · {{ review.document.page_count }} pages{% if review.document.ocr_pages %} ({{ review.document.ocr_pages | length }} read by OCR){% endif %}{% endif %}
</p>{% endif %}
<p>Overall risk: <span class="level {{ review.level }}" id="level">{{ review.level | upper }}</span></p>
<table id="summary">
<tr><th>High</th><th>Medium</th><th>Low</th><th>Clauses flagged</th></tr>
<tr><td>{{ review.summary.high }}</td><td>{{ review.summary.medium }}</td><td>{{ review.summary.low }}</td>
<td>{{ review.summary.clauses_flagged }} of {{ review.summary.clauses_checked }}</td></tr>
</table>
{% if not review.summary.findings %}<p>No risks found by the {{ review.summary.rules_checked }} rules.</p>{% endif %}
{% if review.document_findings %}
<h2>Whole document</h2>
<ul>
{% for f in review.document_findings %}<li><span class="level {{ f.severity }}">{{ f.severity | upper }}</span> <code>{{ f.rule }}</code>: {{ f.message }}</li>
{% endfor %}</ul>
{% endif %}
{% if review.clauses %}
<h2>Flagged clauses</h2>
{% for c in review.clauses %}
<div class="clause sev-{{ c.severity }}" data-clause="{{ c.clause }}">
<p class="meta">Clause {{ c.clause + 1 }}{% if c.page %}, page {{ c.page }}{% endif %}{% if c.label %} · {{ c.label }}{% if c.score is not none %} ({{ "%.2f" | format(c.score) }}){% endif %}{% endif %}</p>
<p>{% for text, marked in c.segments %}{% if marked %}<mark>{{ text }}</mark>{% else %}{{ text }}{% endif %}{% endfor %}</p>
<ul>
{% for f in c.findings %}<li><span class="level {{ f.severity }}">{{ f.severity | upper }}</span> <code>{{ f.rule }}</code>: {{ f.message }}</li>
{% endfor %}</ul>
</div>
{% endfor %}
{% endif %}
{% if review.notes %}<h2>Notes</h2><pre>{{ review.notes }}</pre>{% endif %}
</body>
</html>
"""

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def _md(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\n", " ")


def _md_marked(segments: Sequence[Sequence[Any]]) -> str:
    return "".join(f"**{_md(text)}**" if marked else _md(text) for text, marked in segments)


def _environment(html: bool) -> SandboxedEnvironment:
    env = SandboxedEnvironment(autoescape=html, undefined=StrictUndefined, trim_blocks=False, lstrip_blocks=False)
    env.filters["md"] = _md
    env.filters["md_marked"] = _md_marked
    return env


# -- the review ------------------------------------------------------------------------
def _segments(text: str, spans: list[tuple[int, int]]) -> list[list[Any]]:
    """The clause text cut into plain and matched pieces (overlapping spans merged)."""
    out: list[list[Any]] = []
    pos = 0
    for start, end in sorted(spans):
        start = max(start, pos)
        if end <= start:
            continue
        if start > pos:
            out.append([text[pos:start], False])
        out.append([text[start:end], True])
        pos = end
    if pos < len(text):
        out.append([text[pos:], False])
    return out


def _findings_of(value: Any) -> tuple[list[dict[str, Any]], Mapping[str, Any]]:
    if isinstance(value, Mapping):
        if not isinstance(value.get("findings"), list):
            raise ValueError(f"expected a `rules` node's output (with `findings`) or a list of findings; got keys {sorted(value)[:8]}")
        return list(value["findings"]), value
    if isinstance(value, list):
        return value, {}
    raise ValueError(f"expected a `rules` node's output or a list of findings, got {type(value).__name__}")


def build_review(
    findings: Any,
    *,
    clauses: Sequence[Mapping[str, Any]] | None = None,
    metadata: Mapping[str, Any] | None = None,
    title: str = "Contract review",
    notes: Any = None,
) -> dict[str, Any]:
    """The structured review (JSON-able) from a `rules` output or a list of findings."""
    found, rules_output = _findings_of(findings)
    for i, f in enumerate(found):
        if not isinstance(f, Mapping) or "rule" not in f or f.get("severity") not in _SEVERITIES:
            raise ValueError(f"finding {i} needs `rule` and a `severity` of high, medium or low: {f!r:.120}")
    if clauses is None:
        clauses = rules_output.get("clauses") or []
    by_index = {int(c.get("index", i)): c for i, c in enumerate(clauses)}
    level = rules_output.get("level") if rules_output.get("level") in LEVELS else overall_level(found)

    grouped: dict[int, list[Mapping[str, Any]]] = {}
    document_findings = []
    for f in found:
        if f.get("clause") is None:
            document_findings.append(_brief(f))
        else:
            grouped.setdefault(int(f["clause"]), []).append(f)
    flagged = []
    for index in sorted(grouped):
        items = sorted(grouped[index], key=lambda f: -LEVELS.index(f["severity"]))
        clause = by_index.get(index, {})
        text = clause.get("text")
        spans = [(f["start"], f["end"]) for f in items if isinstance(f.get("start"), int) and isinstance(f.get("end"), int)]
        if text is None:  # no clause text given: show the excerpts instead
            text = " / ".join(dict.fromkeys(f.get("excerpt") or f.get("match") or "" for f in items))
            spans = []
        flagged.append(
            {
                "clause": index,
                "page": clause.get("page", items[0].get("page")),
                "label": clause.get("label", items[0].get("label")),
                "score": clause.get("score", items[0].get("score")),
                "severity": items[0]["severity"],
                "text": text,
                "segments": _segments(text, spans),
                "findings": [_brief(f) for f in items],
            }
        )
    counts = {s: sum(1 for f in found if f["severity"] == s) for s in _SEVERITIES}
    rules_checked = rules_output.get("rules")
    document = None
    if metadata:
        inner = metadata.get("metadata")
        meta: Mapping[str, Any] = inner if isinstance(inner, Mapping) else metadata
        document = {k: meta.get(k) for k in _DOCUMENT_KEYS if k in meta}
    return {
        "title": title,
        "level": level,
        "summary": {
            "findings": len(found),
            **counts,
            "clauses_checked": len(clauses) if clauses else len(grouped),
            "clauses_flagged": len(grouped),
            "rules_fired": sorted({f["rule"] for f in found}),
            "rules_checked": len(rules_checked) if isinstance(rules_checked, list) else None,
        },
        "document": document,
        "document_findings": document_findings,
        "clauses": flagged,
        "notes": notes,
    }


def _brief(f: Mapping[str, Any]) -> dict[str, Any]:
    return {k: f.get(k) for k in ("rule", "severity", "message", "match", "start", "end", "page")}


def render_markdown(review: Mapping[str, Any], template: str | None = None) -> str:
    text = _environment(html=False).from_string(template or MARKDOWN_TEMPLATE).render(review=review)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def render_html(review: Mapping[str, Any], template: str | None = None) -> str:
    return _environment(html=True).from_string(template or HTML_TEMPLATE).render(review=review)


# -- the node ------------------------------------------------------------------------------
class ReportConfig(NodeConfig):
    findings: Any
    clauses: Any = None
    metadata: Any = None
    title: str = "Contract review"
    notes: Any = None
    markdown_template: str | None = None
    html_template: str | None = None
    save_to: str | None = None


class ReportNode(Node):
    """Output: ``review`` (the structured review), ``level``, ``markdown``, ``html``, and
    ``files`` (the paths written when `save_to` gives a path without suffix: it writes
    ``<save_to>.json``, ``.md`` and ``.html``).

    `findings` takes a `rules` node's output (its checked clauses give the clause texts)
    or a list of findings; `metadata` takes a `pdf` node's output or its metadata.
    """

    kind = "report"
    Config = ReportConfig
    config: ReportConfig

    def problems(self) -> list[Problem]:
        out = []
        for field in ("markdown_template", "html_template"):
            value = getattr(self.config, field)
            if value and not is_template(value):
                try:
                    _environment(html=field == "html_template").from_string(self._read(value, field))
                except (NodeError, TemplateError) as exc:
                    out.append(Problem(str(getattr(exc, "message", exc)), node=self.id, field=f"config.{field}"))
        return out

    def _read(self, path: str, field: str) -> str:
        base = self.base_dir
        candidate = Path(path).expanduser()
        if not candidate.is_absolute() and not candidate.exists() and base is not None:
            candidate = Path(base) / candidate
        try:
            return candidate.read_text(encoding="utf-8")
        except OSError as exc:
            raise NodeError(f"template file {path} cannot be read: {exc.strerror or exc}", node=self.id, retryable=False) from None

    async def run(self, inputs: dict[str, Any], ctx: NodeContext) -> Any:
        try:
            review = build_review(
                inputs.get("findings"),
                clauses=inputs.get("clauses"),
                metadata=inputs.get("metadata") if isinstance(inputs.get("metadata"), Mapping) else None,
                title=str(inputs.get("title") or "Contract review"),
                notes=inputs.get("notes"),
            )
        except ValueError as exc:
            raise NodeError(f"config.findings: {exc}", node=self.id, retryable=False) from None
        md_template = self._read(inputs["markdown_template"], "markdown_template") if inputs.get("markdown_template") else None
        html_template = self._read(inputs["html_template"], "html_template") if inputs.get("html_template") else None
        try:
            markdown = render_markdown(review, md_template)
            html = render_html(review, html_template)
        except TemplateError as exc:
            raise NodeError(f"report template failed: {exc}", node=self.id, retryable=False) from None
        files: dict[str, str] = {}
        if inputs.get("save_to"):
            files = await ctx.run_blocking(_save, Path(str(inputs["save_to"])), review, markdown, html)
        return {"review": review, "level": review["level"], "markdown": markdown, "html": html, "files": files}


def _save(stem: Path, review: Mapping[str, Any], markdown: str, html: str) -> dict[str, str]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    files = {"json": stem.with_name(stem.name + ".json"), "markdown": stem.with_name(stem.name + ".md"), "html": stem.with_name(stem.name + ".html")}
    files["json"].write_text(json.dumps(review, indent=2, ensure_ascii=False), encoding="utf-8")
    files["markdown"].write_text(markdown, encoding="utf-8")
    files["html"].write_text(html, encoding="utf-8")
    return {k: str(v) for k, v in files.items()}
