"""The example notebooks execute top to bottom under papermill with a real kernel, in a
temporary copy of notebooks/ so that the repository is left as it was; and the notebook the
contract review exports runs a batch of PDFs as a scheduler would run it."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from jupyter_flow.nodes.pdf import find_tessdata
from jupyter_flow_examples.samples import RISKS, SAMPLES, make_contract_pdf

pytest.importorskip("papermill")
nbformat = pytest.importorskip("nbformat")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
GENERATED = ("models", "samples", "build", ".ipynb_checkpoints", "executed-*", ".jupyter-flow")


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The example's models, made once per test session (a second call finds them up to date)."""
    pytest.importorskip("transformers")
    from jupyter_flow_examples.models import make_demo_models

    return make_demo_models(tmp_path_factory.getbasetemp() / "demo-models", log=lambda *_: None)


def snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")
            if p.is_file() and ".ipynb_checkpoints" not in p.parts}


@pytest.fixture
def workdir(tmp_path: Path) -> Any:
    """A working copy of notebooks/ without its generated folders; the repository's
    notebooks/ folder must be the same after the test."""
    before = snapshot(NOTEBOOKS)
    copy = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, copy, ignore=shutil.ignore_patterns(*GENERATED))
    yield copy
    assert snapshot(NOTEBOOKS) == before


def execute(notebook: Path, cwd: Path, **parameters: Any) -> Any:
    import papermill

    out = notebook.with_name(f"executed-{notebook.name}")
    papermill.execute_notebook(str(notebook), str(out), cwd=str(cwd), kernel_name="python3", parameters=parameters or None,
                               progress_bar=False, log_output=False, execution_timeout=600)
    return nbformat.read(str(out), as_version=4)


def cell_text(cell: Any) -> str:
    """Everything a code cell showed: printed text, Markdown, plain-text results."""
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            data = output.data
            parts.append(data.get("text/markdown") or data.get("text/plain", ""))
        elif output.output_type == "error":
            parts.append(f"{output.ename}: {output.evalue}")
    return "".join(parts)


def code_cells(nb: Any) -> list[str]:
    return [cell_text(c) for c in nb.cells if c.cell_type == "code"]


def find(cells: list[str], pattern: str, after: str | None = None) -> re.Match[str]:
    """The first match in a cell's output (only cells whose output contains `after`, if given)."""
    for text in cells:
        if after is not None and after not in text:
            continue
        match = re.search(pattern, text, re.M)
        if match:
            return match
    raise AssertionError(f"no cell output matches {pattern!r}")


# The quickstart notebook is run, and its results checked, by tests/workbench/test_quickstart_notebook.py.


@pytest.mark.skipif(find_tessdata() is None, reason="the notebook reads a scanned PDF: apt-get install -y tesseract-ocr tesseract-ocr-eng")
def test_the_contract_review_notebook_runs_top_to_bottom_and_exports_a_working_notebook(
        workdir: Path, demo_models: dict[str, Path], tmp_path: Path) -> None:
    # The session's model stands in for the one the notebook would otherwise train first.
    shutil.copytree(demo_models["clause-bert"], workdir / "models" / "clause-bert")
    nb = execute(workdir / "contract_review.ipynb", workdir)
    cells = code_cells(nb)
    planted = make_contract_pdf(tmp_path / "same-as-the-sample.pdf")  # what samples/contract.pdf holds

    assert "is up to date" in cells[1]
    assert {p.name for p in (workdir / "samples").iterdir()} == set(SAMPLES)
    accuracy = float(find(cells, r"held-out accuracy: ([\d.]+)%").group(1))
    assert accuracy >= 95
    find(cells, r"^\| escalate \| ok \|")
    find(cells, r"\*\*Overall risk: HIGH\*\*")
    # The clause table: one row per paragraph, labelled as planted
    rows = re.findall(r"^\| (\d+) \| (\d) \| .* \| \*\*(\w+)\*\* \| ([\d.]+) \|", find(cells, r"\| # \| page \|").string, re.M)
    assert [(int(i), int(page), label) for i, page, label, _ in rows] == [(c.index, c.page, c.label) for c in planted.clauses]
    fired = set(find(cells, r"^rules fired: (.*)$").group(1).split(", "))
    assert fired == set(planted.risks)
    find(cells, rf"^Tensor \({len(planted.clauses)}, 64\) torch.float32$")
    high = sorted(r for r in planted.risks if RISKS[r] == "high")
    note = find(cells, r"^To: legal review$").string
    assert all(f"- {risk}" in note for risk in high)
    find(cells, r"^level: none \| escalate: skipped$")
    find(cells, r"^pages read with OCR: \[1, 2, 3\]$")
    find(cells, r"^same rules fired as on the text PDF: True$")
    # The Chinese scan: read by OCR in Chinese, the same risks found as planted in it
    planted_zh = make_contract_pdf(tmp_path / "same-as-scanned_zh.pdf", language="zh")
    find(cells, r"^pages read with OCR: \[1, 2, 3\] \| language: .*chi_sim")
    assert set(find(cells, r"^rules fired: (.*)$", after="pages read with OCR: [1, 2, 3] | language").group(1)
               .split(", ")) == set(planted_zh.risks)
    find(cells, r"^same rules fired as on the English contract: True$")
    find(cells, r"^\| 2 \| high \| `unlimited_liability` \| 无限责任 \|$")

    # The exported notebook runs a folder of PDFs the way the notebook's last cell says.
    exported = workdir / "build" / "contract-review.ipynb"
    assert exported.is_file()
    out = tmp_path / "reviews"
    execute(exported, workdir / "flows", inputs_path="../samples", output_dir=str(out))
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert (summary["total"], summary["ok"], summary["failed"]) == (len(SAMPLES), len(SAMPLES), 0)
    results = {}
    for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        results[item["id"]] = item
    for name in ("contract.pdf", "scanned.pdf", "contract_zh.pdf", "scanned_zh.pdf"):
        assert set(results[name]["outputs"]["report"]["review"]["summary"]["rules_fired"]) == set(planted.risks)
        assert "escalate" in results[name]["outputs"]
    assert results["clean.pdf"]["outputs"]["report"]["level"] == "none"


def test_the_customer_service_notebook_starts_the_services_runs_the_flow_and_stops_them(workdir: Path) -> None:
    import os

    before = {var: os.environ.get(var) for var in ("CLEANER_URL", "INTENT_URL", "SLOTS_URL", "ANSWER_URL")}
    nb = execute(workdir / "customer_service.ipynb", workdir)
    cells = code_cells(nb)
    urls = dict(re.findall(r"^(\w+_URL) +(http://127\.0\.0\.1:\d+)  ok$", cells[1], re.M))
    assert set(urls) == set(before) and len(set(urls.values())) == 4
    find(cells, r"^422 field 'intent' must be an intent label")
    find(cells, r"^problems: none$")
    # The table: one row per message with the intent, the order number and an answer that uses it
    table = find(cells, r"^\| message \| intent \| order \|").string
    rows = [row.split(" | ") for row in table.splitlines()[2:]]
    assert [(r[1], r[2]) for r in rows] == [("billing", "A1234-5678"), ("shipping", "884512"), ("support", ""),
                                            ("shipping", "20240315-889"), ("returns", "A77881")]
    assert all(r[2] in r[5] for r in rows)
    assert "order number" in rows[2][5]  # nothing to go on: the answer asks for it
    assert "咖啡机" in rows[4][5] and "li.wei@example.cn" in rows[4][5] and "1299 CNY" in rows[4][3]
    # The workbench and a trace in which every node ran once and got HTTP 200
    widgets = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(widgets) == 1
    find(cells, r"^\*\*customer-service\*\* run `\w+`: ok$")
    for node in ("cleaner", "intent", "slots", "answer"):
        find(cells, rf"^{node} +ok +[\d.]+ ms  HTTP 200  sent ")
    find(cells, r"^answer: I have asked to cancel order 55512\.")
    assert cells[-1].strip() == "services stopped"
    assert {var: os.environ.get(var) for var in before} == before  # the kernel's, not this process's, were set


def test_the_from_dify_notebook_imports_the_app_runs_it_on_a_local_server_and_exports_it_back(workdir: Path) -> None:
    pytest.importorskip("transformers")
    nb = execute(workdir / "from_dify.ipynb", workdir)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    cells = code_cells(nb)
    find(cells, r"OpenAI-compatible server at http://127\.0\.0\.1:\d+/v1")
    find(cells, r"^status: ok$")
    find(cells, r"^time to first token: \d+ ms; usage: \{.*'completion_tokens': 24")
    find(cells, r"'reply': 'Please ask a whole question \(got 1 word\)\.'")
    find(cells, r"^same flow after the round trip: True$")
    assert (workdir / "build" / "from-dify" / "faq_bot_clean_question.py").is_file()  # the code node's module


def test_the_agent_tools_notebook_answers_with_a_page_and_a_classifier_flow_then_over_mcp(workdir: Path) -> None:
    pytest.importorskip("mcp")
    nb = execute(workdir / "agent_tools.ipynb", workdir)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    cells = code_cells(nb)
    find(cells, r"^page at http://127\.0\.0\.1:\d+/kettle$")
    # the classifier flow runs a BERT trained in the notebook, through a transformers node
    find(cells, r"^trained on 600 sentences in [\d.]+ s; training accuracy \d+%$")
    classifier = yaml.safe_load((workdir / "build" / "agent-tools" / "sentiment.flow.yaml").read_text(encoding="utf-8"))
    (node,) = classifier["nodes"]
    assert node["type"] == "transformers" and node["config"]["task"] == "text-classification"
    bert = json.loads((workdir / "build" / "agent-tools" / node["config"]["model"] / "config.json").read_text(encoding="utf-8"))
    assert bert["model_type"] == "bert" and set(bert["id2label"].values()) == {"positive", "mixed", "negative"}
    find(cells, r"^OpenAI-compatible stand-in at http://127\.0\.0\.1:\d+/v1$")
    find(cells, r"^status: ok$")
    # the answer: the page read, each review classified by the flow
    find(cells, r"^Of 5 reviews: 3 positive, 1 mixed, 1 negative\.$")
    find(cells, r"^- negative: It leaks from the lid")
    # the steps: the page, then five classifications asked for in one message
    table = find(cells, r"^\| step \| the model said \|").string
    assert len(re.findall(r"^\| 2 \| .*\| flow/sentiment \|", table, re.M)) == 5
    find(cells, r"^\| 1 \| I will read the page first\. \| web/page_text \|")
    find(cells, r"tool calls: 6 \| failed: 0$")
    find(cells, r"^workbench run: ok \| 3 model calls, 6 tool calls$")  # its steps: tests/ui/test_browser_agent_tools.py
    # the classifier served over MCP: one tool, its inputs as the schema; the agent using it
    find(cells, r"^tool: sentiment \| The sentiment of one product review")
    find(cells, r'^arguments: .*"required": \["review"\]')
    find(cells, r"^result: \{'label': 'positive', 'score': (0\.9\d*|1\.0)\}$")
    find(cells, r"^tools used: mcp/reviews/sentiment, web/page_text$")
    find(cells, r"^same answer as with the flow file: True$")
    assert cells[-1].strip() == "servers stopped"


def test_the_compare_versions_notebook_changes_a_node_and_compares_the_two_versions(workdir: Path) -> None:
    nb = execute(workdir / "compare_versions.ipynb", workdir)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    cells = code_cells(nb)
    find(cells, r"^first run:  \{'cleaner': 'ok', 'intent': 'ok', 'slots': 'ok', 'answer': 'ok'\}$")
    # the second run after the change: only the changed node ran
    find(cells, r"^second run: \{'cleaner': 'ok \(cached\)', 'intent': 'ok \(cached\)', 'slots': 'ok \(cached\)', 'answer': 'ok'\}$")
    find(cells, r"^marked on the graph: \{'answer': 'edited'\}$")
    find(cells, r'^    config config\.input_mapping\.language: \(absent\) -> "en"$')
    find(cells, r"^50 messages, 10 answers changed$")
    find(cells, r"^a \(flows/customer-service\.flow\.json\): 50 ok, 0 failed, same_language 1\.00$")
    find(cells, r"^b \(customer-service \(as edited here\)\): 50 ok, 0 failed, same_language 0\.80$")
    find(cells, r"^changed rows in Chinese: True$")
    # the History tab and the evaluation table, shown as HTML
    html = "".join(o.data.get("text/html", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                   if o.output_type == "display_data")
    assert "jf-runs" in html and "jf-diff-edited" in html and "input_mapping.language" in html
    assert html.count("jf-eval-changed'") == 10 and html.count("jf-eval-same'") == 40
    rows = [json.loads(line) for line in (workdir / "build" / "evaluation" / "rows.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 50 and sum(r["changed"] for r in rows) == 10
    assert cells[-1].strip() == "services stopped"
