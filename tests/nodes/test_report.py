"""The `report` node: structured review, Markdown and HTML from rule findings."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from jupyter_flow import Flow
from jupyter_flow.errors import FlowRunError

RULES = [
    {"id": "no_cap", "severity": "high", "message": "No liability cap.", "keywords": ["unlimited liability"]},
    {"id": "net_long", "severity": "medium", "message": "Pay <late> & slow.", "patterns": [r"net\s+1\d\d"]},
    {"id": "forever", "severity": "low", "message": "Forever.", "keywords": ["in perpetuity"]},
    {"id": "no_law", "mode": "absent", "severity": "medium", "message": "No governing law.", "keywords": ["governed by"]},
]
CLAUSES = [
    {"text": "Payment is due net 120 <b>days</b>; the Supplier has unlimited liability.", "label": "payment", "score": 0.9, "page": 1},
    {"text": "Services are provided with care.", "label": "other", "score": 0.8, "page": 1},
    {"text": "Secrets are kept in perpetuity.", "label": "confidentiality", "score": 0.7, "page": 2},
]


def review_flow(**report: Any) -> Flow:
    return Flow.from_dict(
        {
            "inputs": {"clauses": {"type": "json"}, "meta": {"type": "json", "required": False}},
            "nodes": [
                {"id": "risk", "type": "rules", "config": {"rules": RULES, "items": "{{clauses}}"}},
                {"id": "report", "type": "report", "config": {"findings": "{{risk.output}}", **report}},
            ],
            "edges": [{"from": "start", "to": "risk"}, {"from": "risk", "to": "report"}],
        }
    )


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.marks: list[str] = []
        self.tags: list[str] = []
        self._in_mark = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.tags.append(tag)
        self._in_mark = tag == "mark"

    def handle_endtag(self, tag: str) -> None:
        self._in_mark = False if tag == "mark" else self._in_mark

    def handle_data(self, data: str) -> None:
        if self._in_mark:
            self.marks.append(data)


def test_review_groups_findings_by_clause() -> None:
    out = review_flow(metadata="{{meta}}", title="Supplier contract").run(
        {"clauses": CLAUSES, "meta": {"metadata": {"source": "c.pdf", "title": "MSA", "page_count": 2, "ocr_pages": [2]}}}
    ).outputs["report"]
    review = out["review"]
    json.dumps(review)  # JSON-able as it is
    assert review["title"] == "Supplier contract" and review["level"] == out["level"] == "high"
    assert review["summary"] == {
        "findings": 4, "high": 1, "medium": 2, "low": 1, "clauses_checked": 3, "clauses_flagged": 2,
        "rules_fired": ["forever", "net_long", "no_cap", "no_law"], "rules_checked": 4,
    }
    assert review["document"] == {"source": "c.pdf", "title": "MSA", "page_count": 2, "ocr_pages": [2]}
    assert [f["rule"] for f in review["document_findings"]] == ["no_law"]
    first, second = review["clauses"]
    assert (first["clause"], first["page"], first["label"], first["severity"]) == (0, 1, "payment", "high")
    assert [f["rule"] for f in first["findings"]] == ["no_cap", "net_long"]  # most severe first
    assert [s for s, marked in first["segments"] if marked] == ["net 120", "unlimited liability"]
    assert "".join(s for s, _ in first["segments"]) == CLAUSES[0]["text"]
    assert (second["clause"], second["severity"], second["page"]) == (2, "low", 2)


def test_markdown_and_html_summaries_are_readable_and_escaped() -> None:
    out = review_flow().run({"clauses": CLAUSES}).outputs["report"]
    md = out["markdown"]
    assert "**Overall risk: HIGH** (4 findings: 1 high, 2 medium, 1 low; 2 of 3 clauses flagged)" in md
    assert "### Clause 1, page 1 (payment, 0.90): HIGH" in md
    assert "**net 120**" in md and "**unlimited liability**" in md
    assert "\\<b\\>days\\</b\\>" in md  # clause text cannot inject markup
    assert "`no_law`: No governing law." in md
    html = out["html"]
    parser = _Text()
    parser.feed(html)
    assert parser.marks == ["net 120", "unlimited liability", "in perpetuity"]
    assert "b" not in parser.tags  # the clause's <b> arrives as text
    assert "&lt;b&gt;days&lt;/b&gt;" in html and "Pay &lt;late&gt; &amp; slow." in html
    assert 'id="level">HIGH<' in html


def test_clean_review_says_nothing_was_found() -> None:
    out = review_flow().run({"clauses": [{"text": "This Agreement is governed by Irish law.", "label": "other"}]}).outputs["report"]
    assert out["level"] == "none" and out["review"]["clauses"] == []
    assert "No risks found by the 4 rules." in out["markdown"]
    assert "NONE" in out["html"]


def test_save_to_writes_json_markdown_and_html(tmp_path: Path) -> None:
    stem = tmp_path / "out" / "review"
    out = review_flow(save_to=str(stem)).run({"clauses": CLAUSES}).outputs["report"]
    assert out["files"] == {"json": f"{stem}.json", "markdown": f"{stem}.md", "html": f"{stem}.html"}
    assert json.loads(Path(out["files"]["json"]).read_text(encoding="utf-8")) == json.loads(json.dumps(out["review"]))
    assert Path(out["files"]["markdown"]).read_text(encoding="utf-8") == out["markdown"]


def test_custom_templates(tmp_path: Path) -> None:
    md = tmp_path / "short.md.j2"
    md.write_text("{{ review.level }}: {{ review.summary.rules_fired | join(', ') }}", encoding="utf-8")
    out = review_flow(markdown_template=str(md)).run({"clauses": CLAUSES}).outputs["report"]
    assert out["markdown"] == "high: forever, net_long, no_cap, no_law\n"
    broken = tmp_path / "broken.html.j2"
    broken.write_text("{% for x in %}", encoding="utf-8")
    problems = review_flow(html_template=str(broken)).problems()
    assert [p.field for p in problems] == ["config.html_template"]


def test_plain_list_of_findings_uses_excerpts() -> None:
    findings = [{"rule": "r", "severity": "medium", "message": "m", "clause": 4, "page": 3, "match": "x", "excerpt": "…a x b…"}]
    flow = Flow.from_dict({"inputs": {"f": {"type": "json"}}, "nodes": [{"id": "report", "type": "report", "config": {"findings": "{{f}}"}}]})
    review = flow.run({"f": findings}).outputs["report"]["review"]
    assert review["level"] == "medium" and review["clauses"][0]["text"] == "…a x b…"


def test_findings_that_are_not_findings_fail_clearly() -> None:
    flow = Flow.from_dict({"inputs": {"f": {"type": "json"}}, "nodes": [{"id": "report", "type": "report", "config": {"findings": "{{f}}"}}]})
    with pytest.raises(FlowRunError, match=r"node 'report'.*config.findings: finding 0 needs `rule`"):
        flow.run({"f": [{"severity": "urgent"}]})
    with pytest.raises(FlowRunError, match=r"config.findings: expected a `rules` node's output"):
        flow.run({"f": {"level": "high"}})
