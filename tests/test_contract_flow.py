"""The contract review end to end: a generated contract PDF in, a review whose findings
match what the generator planted out; with and without OCR, and with a trained clause
classifier between the PDF and the rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from jupyter_flow import Flow
from jupyter_flow.cli import main as cli_main
from jupyter_flow.nodes.pdf import find_tessdata
from jupyter_flow.samples import RISKS, PlantedContract, make_contract_pdf

RULES = Path(__file__).resolve().parents[1] / "notebooks" / "flows" / "rules" / "contract.yaml"


def review_spec(*, classifier: Path | None = None, **pdf: Any) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "extract", "type": "pdf", "config": {"source": "{{document}}", **pdf}}]
    edges = [{"from": "start", "to": "extract"}]
    if classifier is None:
        risk_config = {"rules": str(RULES), "items": "{{extract.output.paragraphs}}"}
        edges.append({"from": "extract", "to": "risk"})
    else:
        nodes.append({"id": "clauses", "type": "transformers", "config": {
            "model": str(classifier), "task": "text-classification", "text": "{{ extract.output.paragraphs | map(attribute='text') | list }}"}})
        risk_config = {"rules": str(RULES), "items": "{{clauses.output}}", "texts": "{{extract.output.paragraphs}}"}
        edges += [{"from": "extract", "to": "clauses"}, {"from": "clauses", "to": "risk"}]
    nodes += [
        {"id": "risk", "type": "rules", "config": risk_config},
        {"id": "report", "type": "report", "config": {"findings": "{{risk.output}}", "metadata": "{{extract.output.metadata}}"}},
    ]
    edges.append({"from": "risk", "to": "report"})
    return {"spec_version": 1, "name": "contract-review", "inputs": {"document": {"type": "file"}}, "nodes": nodes, "edges": edges}


def assert_matches_planted(review: dict[str, Any], planted: PlantedContract) -> None:
    fired = set(review["summary"]["rules_fired"])
    assert fired == set(planted.risks)
    pages: dict[str, set[int]] = {}
    for clause in review["clauses"]:
        for finding in clause["findings"]:
            pages.setdefault(finding["rule"], set()).add(clause["page"])
    assert pages == {rule: found for rule, found in planted.expected_pages().items() if found}
    assert [f["rule"] for f in review["document_findings"]] == (["missing_governing_law"] if "missing_governing_law" in planted.risks else [])
    expected_level = max((RISKS[r] for r in planted.risks), key=("none", "low", "medium", "high").index, default="none")
    assert review["level"] == expected_level


@pytest.mark.parametrize("language", ["en", "zh"])
def test_text_contract_review_matches_what_was_planted(tmp_path: Path, language: str) -> None:
    planted = make_contract_pdf(tmp_path / "contract.pdf", language=language)
    flow = Flow.from_dict(review_spec())
    result = flow.run({"document": str(planted.path)})
    review = result.outputs["report"]["review"]
    assert_matches_planted(review, planted)
    assert review["document"]["page_count"] == 3 and review["document"]["ocr_pages"] == []
    # The trace keeps every stage, for the workbench to show.
    assert [result[n].status for n in ("extract", "risk", "report")] == ["ok", "ok", "ok"]


def test_only_some_risks_planted(tmp_path: Path) -> None:
    planted = make_contract_pdf(tmp_path / "contract.pdf", risks=["auto_renewal", "long_payment_term"])
    review = Flow.from_dict(review_spec()).run({"document": str(planted.path)}).outputs["report"]["review"]
    assert_matches_planted(review, planted)
    assert review["level"] == "medium"


def test_clean_contract_review_finds_nothing(tmp_path: Path) -> None:
    planted = make_contract_pdf(tmp_path / "clean.pdf", risky=False)
    out = Flow.from_dict(review_spec()).run({"document": str(planted.path)}).outputs["report"]
    assert out["level"] == "none" and out["review"]["summary"]["findings"] == 0


@pytest.mark.skipif(find_tessdata() is None, reason="Tesseract not installed: apt-get install -y tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim")
def test_scanned_contract_review_matches_what_was_planted(tmp_path: Path) -> None:
    planted = make_contract_pdf(tmp_path / "scan.pdf", scanned=True)
    out = Flow.from_dict(review_spec(ocr_language="eng")).run({"document": str(planted.path)}).outputs["report"]
    assert out["review"]["document"]["ocr_pages"] == [1, 2, 3]
    assert_matches_planted(out["review"], planted)
    assert "page 2" in out["markdown"] and "unlimited liability" in out["html"]


def test_cli_runs_the_review_from_a_flow_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    planted = make_contract_pdf(tmp_path / "contract.pdf")
    flow_file = tmp_path / "contract_review.flow.yaml"
    flow_file.write_text(yaml.safe_dump(review_spec(), sort_keys=False), encoding="utf-8")
    trace = tmp_path / "trace.json"
    code = cli_main(["run", str(flow_file), "--input", f"document={planted.path}", "--trace", str(trace)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    outputs = json.loads(captured.out)
    assert set(outputs["report"]["review"]["summary"]["rules_fired"]) == set(planted.risks)
    assert outputs["risk"]["level"] == "high"
    assert trace.exists()


def test_cli_names_a_missing_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow_file = tmp_path / "contract_review.flow.yaml"
    flow_file.write_text(yaml.safe_dump(review_spec()), encoding="utf-8")
    code = cli_main(["run", str(flow_file), "--input", f"document={tmp_path / 'nope.pdf'}"])
    err = capsys.readouterr().err
    assert code == 1 and "node 'extract'" in err and "nope.pdf" in err and "no such file" in err


@pytest.fixture(scope="module")
def clause_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    from jupyter_flow.demo_models import make_clause_classifier

    return make_clause_classifier(tmp_path_factory.mktemp("models") / "clause-bert", seconds=20)


def expected_with_labels(planted: PlantedContract, clauses: list[dict[str, Any]], min_score: float) -> set[str]:
    """The planted risks a label-scoped rule set can see, given the classifier's labels."""
    scopes = {r["id"]: r.get("labels") or [] for r in yaml.safe_load(RULES.read_text(encoding="utf-8"))["rules"]}
    expected = {"missing_governing_law"} & planted.risks  # a whole-document rule: labels do not apply
    for clause in planted.clauses:
        got = clauses[clause.index]
        for risk in clause.risks:
            trusted = got["score"] >= min_score
            if not scopes[risk] or not trusted or got["label"] in scopes[risk]:
                expected.add(risk)
    return expected


@pytest.mark.parametrize("min_score", [0.0, 0.9])
def test_review_with_the_clause_classifier(tmp_path: Path, clause_classifier: Path, min_score: float) -> None:
    planted = make_contract_pdf(tmp_path / "contract.pdf")
    spec = review_spec(classifier=clause_classifier)
    spec["nodes"][2]["config"]["min_score"] = min_score
    result = Flow.from_dict(spec).run({"document": str(planted.path)})
    clauses = result.outputs["risk"]["clauses"]
    predictions = result.outputs["clauses"]
    assert [c["text"] for c in clauses] == [c.text for c in planted.clauses]
    assert [(c["label"], c["score"]) for c in clauses] == [(p["label"], p["score"]) for p in predictions]
    review = result.outputs["report"]["review"]
    for clause in review["clauses"]:
        assert (clause["label"], clause["score"]) == (clauses[clause["clause"]]["label"], clauses[clause["clause"]]["score"])
    # Label-scoped rules look only at clauses the classifier put under their labels,
    # unless its score is below min_score; every finding is one that was planted.
    fired = set(review["summary"]["rules_fired"])
    assert fired == expected_with_labels(planted, clauses, min_score)
    assert fired <= set(planted.risks)
    if all(c["score"] < min_score for c in clauses):
        assert_matches_planted(review, planted)
