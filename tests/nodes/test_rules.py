"""The `rules` node: YAML rule files, matching over text and classified clauses, bad rules."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from jupyter_flow import Flow
from jupyter_flow.cli import main as cli_main
from jupyter_flow.errors import FlowRunError, FlowValidationError
from jupyter_flow_examples.samples import RISKS, make_contract_pdf

CONTRACT_RULES = Path(__file__).resolve().parents[2] / "notebooks" / "flows" / "rules" / "contract.yaml"


def rules_flow(rules: Any, items: Any, **config: Any) -> Flow:
    return Flow.from_dict({"nodes": [{"id": "risk", "type": "rules", "config": {"rules": rules, "items": items, **config}}]})


def check(rules: Any, items: Any, **config: Any) -> dict[str, Any]:
    return rules_flow(rules, items, **config).run().outputs["risk"]


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


BASIC = [
    {"id": "net_long", "severity": "medium", "message": "Long payment term.", "patterns": [r"\bnet\s+(?:9[1-9]|[1-9]\d{2,})\b"], "labels": ["payment"]},
    {"id": "no_cap", "severity": "high", "message": "No liability cap.", "keywords": ["unlimited liability", "无限责任"]},
    {"id": "forever", "severity": "low", "message": "Forever.", "keywords": ["in perpetuity"]},
]


def test_plain_text_finds_keyword_and_pattern_spans() -> None:
    text = "Invoices are payable net 120. The Supplier accepts Unlimited   Liability for data loss."
    out = check(BASIC, text)
    by_rule = {f["rule"]: f for f in out["findings"]}
    assert set(by_rule) == {"net_long", "no_cap"}
    for f in by_rule.values():
        assert text[f["start"] : f["end"]] == f["match"]
        assert f["clause"] == 0 and f["label"] is None and f["page"] is None
    # Keywords match case-insensitively and across runs of whitespace.
    assert by_rule["no_cap"]["match"] == "Unlimited   Liability"
    assert by_rule["net_long"]["match"] == "net 120"
    assert out["level"] == "high"
    assert out["counts"] == {"high": 1, "medium": 1, "low": 0}


def test_keywords_match_whole_words_only() -> None:
    out = check(BASIC, ["Rights granted in perpetuityish terms.", "Sold in perpetuity."])
    assert [(f["rule"], f["clause"]) for f in out["findings"]] == [("forever", 1)]
    assert out["level"] == "low"


def test_chinese_keywords_match_inside_sentences() -> None:
    out = check(BASIC, "甲方应当承担无限责任。")
    assert [(f["rule"], f["match"], f["start"]) for f in out["findings"]] == [("no_cap", "无限责任", 6)]


def test_nothing_found_gives_level_none() -> None:
    out = check(BASIC, ["Payment is due net 30.", "Liability is capped at the fees paid."])
    assert out["findings"] == [] and out["level"] == "none"
    assert out["counts"] == {"high": 0, "medium": 0, "low": 0}


def test_labels_narrow_rules_on_classified_clauses() -> None:
    items = [
        {"text": "Payment terms: net 120.", "label": "payment", "score": 0.97, "page": 2},
        {"text": "Either party may serve notice net 120 days before expiry.", "label": "termination", "score": 0.91, "page": 3},
    ]
    out = check(BASIC, items)
    assert [(f["rule"], f["clause"], f["label"], f["page"], f["score"]) for f in out["findings"]] == [("net_long", 0, "payment", 2, 0.97)]
    # A label the classifier is unsure of is not trusted: the clause is checked by every rule.
    items[1]["score"] = 0.4
    out = check(BASIC, items, min_score=0.6)
    assert [f["clause"] for f in out["findings"]] == [0, 1]


def test_classifier_outputs_pair_with_texts() -> None:
    # A text-classification node answers {label, score} per text, without the text.
    predictions = [{"label": "payment", "score": 0.9}, {"label": "other", "score": 0.8}]
    paragraphs = [{"text": "Pay net 100.", "page": 1, "bbox": [0, 0, 1, 1]}, {"text": "Net 100 words.", "page": 2, "bbox": [0, 0, 1, 1]}]
    out = check(BASIC, predictions, texts=paragraphs)
    assert [(f["rule"], f["clause"], f["page"], f["label"]) for f in out["findings"]] == [("net_long", 0, 1, "payment")]
    with pytest.raises(FlowRunError, match="config.texts has 1 entries but config.items has 2"):
        check(BASIC, predictions, texts=paragraphs[:1])
    with pytest.raises(FlowRunError, match=r"item 0 has no `text`.*config.texts"):
        check(BASIC, predictions)


def test_unless_patterns_and_absent_rules(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        r"""
        rules:
          - id: auto_renewal
            message: Renews by itself.
            patterns: ['renew(?:s|ed)?\s+automatically']
            unless: ['\bnot\s+renew\s+automatically']
          - id: missing_governing_law
            mode: absent
            severity: high
            message: No governing law.
            keywords: [governed by]
        """,
    )
    out = check(str(path), ["It will not renew automatically.", "It renews automatically each year."])
    assert [(f["rule"], f["clause"]) for f in out["findings"]] == [("auto_renewal", 1), ("missing_governing_law", None)]
    assert out["level"] == "high"
    out = check(str(path), ["This Agreement is governed by the laws of Ireland."])
    assert out["findings"] == [] and out["rules"] == ["auto_renewal", "missing_governing_law"]


def test_rules_from_a_flow_input_template() -> None:
    flow = Flow.from_dict(
        {
            "inputs": {"text": {"type": "text"}},
            "nodes": [{"id": "risk", "type": "rules", "config": {"rules": BASIC, "items": "{{text}}"}}],
        }
    )
    assert flow.run({"text": "in perpetuity"}).outputs["risk"]["level"] == "low"


def test_contract_rules_find_what_the_sample_contracts_plant(tmp_path: Path) -> None:
    for language in ("en", "zh"):
        risky = make_contract_pdf(tmp_path / f"risky_{language}.pdf", language=language)
        out = check(str(CONTRACT_RULES), risky.items())
        assert {f["rule"] for f in out["findings"]} == set(RISKS) == set(risky.risks)
        for f in out["findings"]:
            if f["clause"] is not None:
                assert f["rule"] in risky.clauses[f["clause"]].risks
        assert out["level"] == "high"
        clean = make_contract_pdf(tmp_path / f"clean_{language}.pdf", language=language, risky=False)
        out = check(str(CONTRACT_RULES), clean.items())
        assert out["findings"] == [] and out["level"] == "none"


# -- bad rules ------------------------------------------------------------------------------
def test_bad_regex_in_inline_rules_names_rule_and_field() -> None:
    rules = [*BASIC, {"id": "broken", "message": "x", "patterns": ["ok", "(unclosed"]}]
    problems = rules_flow(rules, "text").problems()
    assert len(problems) == 1
    assert problems[0].node == "risk" and problems[0].field == "config.rules[3].patterns[1]"
    assert "rule 'broken'" in problems[0].message and "invalid regular expression" in problems[0].message


@pytest.mark.parametrize(
    ("rule", "field", "words"),
    [
        ({"id": "a", "message": "m"}, "", "needs `keywords` or `patterns`"),
        ({"id": "a", "message": "m", "keywords": ["x"], "severity": "critical"}, "severity", "'low', 'medium' or 'high'"),
        ({"id": "a", "message": "m", "keywords": ["x"], "colour": "red"}, "colour", "unknown field"),
        ({"id": "a", "keywords": ["x"]}, "message", "Field required"),
        ({"id": "a", "message": "m", "patterns": ["x*"]}, "patterns[0]", "matches the empty string"),
        ({"id": "a", "message": "m", "keywords": ["  "]}, "keywords", "item 0 is empty"),
    ],
)
def test_bad_rule_fields_are_problems(rule: dict[str, Any], field: str, words: str) -> None:
    problems = rules_flow([rule], "text").problems()
    assert len(problems) == 1, problems
    assert problems[0].field == "config.rules[0]" + (f".{field}" if field else "")
    assert words in problems[0].message


def test_duplicate_rule_ids_are_problems() -> None:
    problems = rules_flow([BASIC[1], BASIC[1]], "text").problems()
    assert [(p.field, "duplicate rule id" in p.message) for p in problems] == [("config.rules[1].id", True)]


def test_rule_file_problems_name_the_file_and_rule(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        rules:
          - id: fine
            message: ok
            keywords: [fine]
          - id: bad_regex
            message: broken
            patterns: ['[a-']
        """,
    )
    problems = rules_flow(str(path), "text").problems()
    assert len(problems) == 1 and problems[0].field == "config.rules"
    assert str(path) in problems[0].message and "rule 'bad_regex' (rules[1].patterns[0])" in problems[0].message


def test_missing_and_unparsable_rule_files(tmp_path: Path) -> None:
    missing = tmp_path / "none.yaml"
    (problem,) = rules_flow(str(missing), "text").problems()
    assert str(missing) in problem.message and "does not exist" in problem.message
    broken = write(tmp_path, "rules:\n  - id: a\n    keywords: [unclosed\n", "broken.yaml")
    (problem,) = rules_flow(str(broken), "text").problems()
    assert str(broken) in problem.message and "not valid YAML at line" in problem.message
    empty = write(tmp_path, "rules: []\n", "empty.yaml")
    (problem,) = rules_flow(str(empty), "text").problems()
    assert "non-empty list of rules" in problem.message


def test_bad_items_fail_the_run_with_the_field() -> None:
    with pytest.raises(FlowRunError, match=r"config.items: item 1 is a int"):
        check(BASIC, ["text", 5])
    with pytest.raises(FlowValidationError):
        rules_flow({"not": "rules"}, "text").validate()


def test_rule_file_edits_change_the_cache_key(tmp_path: Path) -> None:
    path = write(tmp_path, "- {id: a, message: m, keywords: [alpha]}\n")
    flow = rules_flow(str(path), "alpha beta")
    first = flow.run()
    assert [f["rule"] for f in first.outputs["risk"]["findings"]] == ["a"]
    assert flow.plan.nodes["risk"].node.cache_token() != ""
    token = flow.plan.nodes["risk"].node.cache_token()
    path.write_text("- {id: b, message: m, keywords: [beta]}\n", encoding="utf-8")
    assert flow.plan.nodes["risk"].node.cache_token() != token


# -- through the command line -------------------------------------------------------------
def bad_flow_file(tmp_path: Path) -> Path:
    rules = write(tmp_path, "- id: payment_days\n  message: m\n  patterns: ['within (\\d+ days']\n", "bad.yaml")
    flow = {
        "spec_version": 1,
        "name": "bad-rules",
        "inputs": {"text": {"type": "text"}},
        "nodes": [{"id": "risk", "type": "rules", "config": {"rules": str(rules), "items": "{{text}}"}}],
        "edges": [{"from": "start", "to": "risk"}],
    }
    path = tmp_path / "bad.flow.yaml"
    path.write_text(yaml.safe_dump(flow), encoding="utf-8")
    return path


def test_cli_validate_exits_2_naming_the_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = bad_flow_file(tmp_path)
    assert cli_main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "node 'risk'" in err and "rule 'payment_days'" in err and "patterns[0]" in err and "invalid regular expression" in err


def test_cli_run_exits_2_in_a_real_process(tmp_path: Path) -> None:
    path = bad_flow_file(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "jupyter_flow.cli", "run", str(path), "--input", "text=pay within 120 days"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "rule 'payment_days'" in proc.stderr and "Traceback" not in proc.stderr
