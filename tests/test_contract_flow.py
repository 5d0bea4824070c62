"""The contract review end to end: a generated contract PDF in, a review whose findings
match what the generator planted out; with and without OCR, and with a trained clause
classifier between the PDF and the rules. The example flow file shipped in
notebooks/flows runs as a user runs it, with the classifier trained once per session."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from jupyter_flow import Flow
from jupyter_flow.cli import main as cli_main
from jupyter_flow.nodes.pdf import find_tessdata
from jupyter_flow_examples.samples import RISKS, PlantedContract, make_contract_pdf

ROOT = Path(__file__).resolve().parents[1]
FLOWS = ROOT / "notebooks" / "flows"
EXAMPLE = FLOWS / "contract-review.flow.yaml"
RULES = FLOWS / "rules" / "contract.yaml"
NO_TESSERACT = "Tesseract not installed: apt-get install -y tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim"


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


@pytest.mark.skipif(find_tessdata() is None, reason=NO_TESSERACT)
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


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The example's models, made once per test session (a second call finds them up to date)."""
    pytest.importorskip("transformers")
    from jupyter_flow_examples.models import make_demo_models

    return make_demo_models(tmp_path_factory.getbasetemp() / "demo-models", log=lambda *_: None)


@pytest.fixture
def clause_classifier(demo_models: dict[str, Path]) -> Path:
    return demo_models["clause-bert"]


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
    # The classifier labels every clause as planted, so the label-scoped rules miss nothing.
    assert [c["label"] for c in clauses] == [c.label for c in planted.clauses]
    assert_matches_planted(review, planted)


# -- the example as shipped: notebooks/flows/contract-review.flow.yaml ---------------------
@pytest.fixture
def example(tmp_path: Path, demo_models: dict[str, Path]) -> Path:
    """The shipped flow file and rules in a copy of the notebooks folder layout, with the
    session's model where the flow expects it (``../models/clause-bert``)."""
    root = tmp_path / "notebooks"
    shutil.copytree(FLOWS, root / "flows")
    (root / "models").mkdir()
    (root / "models" / "clause-bert").symlink_to(demo_models["clause-bert"], target_is_directory=True)
    return root / "flows" / EXAMPLE.name


def high_risks(planted: PlantedContract) -> set[str]:
    return {risk for risk in planted.risks if RISKS[risk] == "high"}


def tesseract_reads(language: str) -> bool:
    folder, data = find_tessdata(), {"en": "eng", "zh": "chi_sim"}[language]
    return folder is not None and (folder / f"{data}.traineddata").is_file()


@pytest.mark.parametrize(("language", "scanned"), [("en", False), ("zh", False), ("en", True), ("zh", True)],
                         ids=["english-text", "chinese-text", "english-scan", "chinese-scan"])
def test_the_example_flow_finds_exactly_what_was_planted(example: Path, tmp_path: Path, language: str, scanned: bool) -> None:
    if scanned and not tesseract_reads(language):
        pytest.skip(NO_TESSERACT)
    planted = make_contract_pdf(tmp_path / "contract.pdf", language=language, scanned=scanned)  # type: ignore[arg-type]
    result = Flow.load(example).run({"document": str(planted.path)})
    assert [result[n].status for n in ("extract", "clauses", "risk", "report", "escalate")] == ["ok"] * 5
    predictions = result.outputs["clauses"]
    # One prediction per clause, each the planted label, each trusted by the rules (min_score)
    assert [p["label"] for p in predictions] == [c.label for c in planted.clauses]
    assert min(p["score"] for p in predictions) >= 0.6
    review = result.outputs["report"]["review"]
    assert_matches_planted(review, planted)
    assert review["document"]["ocr_pages"] == ([1, 2, 3] if scanned else [])
    note = result.outputs["escalate"]["text"]
    assert all(risk in note for risk in high_risks(planted))
    assert not any(risk in note for risk in set(planted.risks) - high_risks(planted))
    # The pooled activations were captured, one row per clause
    pooled = result.tensors("clauses")["bert.pooler"]
    assert tuple(pooled.shape) == (len(planted.clauses), 64)


def test_the_example_flow_on_a_medium_risk_contract_does_not_escalate(example: Path, tmp_path: Path) -> None:
    planted = make_contract_pdf(tmp_path / "contract.pdf", risks=["long_payment_term", "perpetual_confidentiality"])
    result = Flow.load(example).run({"document": str(planted.path)})
    assert_matches_planted(result.outputs["report"]["review"], planted)
    assert result["escalate"].status == "skipped" and "escalate" not in result.outputs


def test_the_example_flow_on_a_clean_contract_finds_nothing(example: Path, tmp_path: Path) -> None:
    planted = make_contract_pdf(tmp_path / "clean.pdf", risky=False)
    result = Flow.load(example).run({"document": str(planted.path)})
    assert result.outputs["report"]["level"] == "none"
    assert result.outputs["report"]["review"]["summary"]["findings"] == 0
    assert result["escalate"].status == "skipped"


def test_the_example_runs_from_the_command_line_in_any_folder(example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    planted = make_contract_pdf(tmp_path / "contract.pdf")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the model and rule paths are relative to the flow file, not to here
    code = cli_main(["run", str(example), "--input", f"document={planted.path}"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    outputs = json.loads(captured.out)
    assert set(outputs["report"]["review"]["summary"]["rules_fired"]) == set(planted.risks)
    assert [c["label"] for c in outputs["clauses"]] == [c.label for c in planted.clauses]
    assert "unlimited_liability" in outputs["escalate"]["text"]


def test_the_shipped_flow_file_is_valid_and_names_the_example_inputs() -> None:
    spec = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert spec["inputs"]["document"] == {**spec["inputs"]["document"], "type": "file", "default": "samples/contract.pdf"}
    nodes = {n["id"]: n for n in spec["nodes"]}
    assert [nodes[n]["type"] for n in ("extract", "clauses", "risk", "report")] == ["pdf", "transformers", "rules", "report"]
    assert nodes["clauses"]["config"]["model"] == "../models/clause-bert"
    assert nodes["clauses"]["config"]["capture"] == ["bert.pooler"]
    assert {"from": "risk", "to": "escalate", "when": "{{ risk.output.level == 'high' }}"} in spec["edges"]
    # Without the model the flow is still well-formed apart from the missing model directory.
    problems = [p for p in Flow.load(EXAMPLE).problems() if p.field != "config.model"]
    assert problems == []


# -- the clause classifier and the commands that make the example's files -----------------
def test_the_classifier_generalises_to_the_sample_contracts(clause_classifier: Path) -> None:
    from jupyter_flow_examples.models import evaluate_classifier
    from jupyter_flow_examples.samples import sample_clauses

    facts = json.loads((clause_classifier / "config.json").read_text(encoding="utf-8"))["demo_training"]
    assert facts["train_accuracy"] >= 0.99 and not facts["stopped_by_time_limit"]
    pairs = sample_clauses()
    assert {label for _, label in pairs} == {"payment", "termination", "liability", "confidentiality", "force_majeure", "other"}
    check = evaluate_classifier(clause_classifier, pairs)
    assert check["total"] == len(pairs) == 44
    assert check["accuracy"] >= 0.95, check["wrong"]


def test_generated_training_clauses_are_seeded_and_leave_out_what_they_are_told() -> None:
    from jupyter_flow_examples.models import CLAUSE_LABELS, clause_sentences

    first = clause_sentences(per_label=20, seed=3)
    assert first == clause_sentences(per_label=20, seed=3) and first != clause_sentences(per_label=20, seed=4)
    assert {label for _, label in first} == set(CLAUSE_LABELS)
    assert any("第" in text for text, _ in first) and any(text.startswith(tuple("0123456789")) for text, _ in first)
    banned = [text for text, _ in first[:10]]
    again = clause_sentences(per_label=20, seed=3, exclude=banned)
    assert not set(banned) & {text for text, _ in again}
    assert len(again) == len(first)  # others take their places


def test_the_demo_models_command_skips_an_up_to_date_model_and_writes_a_service_config(
        clause_classifier: Path, tmp_path: Path) -> None:
    from jupyter_flow.serve.app import model_flow
    from jupyter_flow_examples.models import clause_classifier_is_current
    from jupyter_flow_examples.samples import sample_clauses

    out = tmp_path / "models"
    shutil.copytree(clause_classifier, out / "clause-bert")
    weights = out / "clause-bert" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    proc = subprocess.run([sys.executable, "-m", "jupyter_flow_examples.models", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "up to date" in proc.stdout and weights.stat().st_mtime_ns == before
    service = yaml.safe_load((out / "clause-bert.serve.yaml").read_text(encoding="utf-8"))
    assert service["type"] == "transformers" and service["config"]["model"] == str(out.resolve() / "clause-bert")
    payment = next(text for text, label in sample_clauses("zh") if label == "payment")
    answer = model_flow(out / "clause-bert.serve.yaml").run({"text": payment}).outputs["model"]
    assert answer["label"] == "payment"
    # A model made by another recipe (or another seed) is not up to date.
    config = json.loads((out / "clause-bert" / "config.json").read_text(encoding="utf-8"))
    config["demo_training"]["fingerprint"] = "something-else"
    (out / "clause-bert" / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert not clause_classifier_is_current(out / "clause-bert")
    assert not clause_classifier_is_current(tmp_path / "nothing-here")


def test_the_samples_command_writes_text_scanned_and_clean_contracts_in_english_and_chinese(tmp_path: Path) -> None:
    import pymupdf

    proc = subprocess.run([sys.executable, "-m", "jupyter_flow_examples.samples", "--out", str(tmp_path / "samples")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    files = {p.name: p for p in (tmp_path / "samples").iterdir()}
    assert set(files) == {"contract.pdf", "scanned.pdf", "clean.pdf", "contract_zh.pdf", "scanned_zh.pdf"}

    def text(name: str) -> str:
        with pymupdf.open(files[name]) as doc:
            return " ".join(page.get_text() for page in doc)

    assert "within 120 days" in text("contract.pdf") and "unlimited liability" in text("contract.pdf")
    assert text("scanned.pdf").strip() == ""
    assert "within 30 days" in text("clean.pdf") and "unlimited liability" not in text("clean.pdf")
    assert "无限责任" in text("contract_zh.pdf") and text("scanned_zh.pdf").strip() == ""
    before = {name: p.stat().st_mtime_ns for name, p in files.items()}
    assert subprocess.run([sys.executable, "-m", "jupyter_flow_examples.samples", "--out", str(tmp_path / "samples")],
                          capture_output=True, timeout=120).returncode == 0
    assert {name: p.stat().st_mtime_ns for name, p in files.items()} == before  # kept, not written again
