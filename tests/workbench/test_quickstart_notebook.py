"""The quickstart notebook runs top to bottom under papermill on a real kernel, in a
temporary copy of notebooks/: it starts the demo model services, makes (or finds) a BERT,
builds the four-node flow in the workbench, runs it, inspects it, and stops the services."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from jupyter_flow.spec import load_spec, spec_to_dict
from jupyter_flow_examples.services import clean_text

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("papermill")
pytest.importorskip("transformers")

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOK = "01_quickstart.ipynb"
SHIPPED_FLOW = NOTEBOOKS / "flows" / "quickstart.flow.yaml"
# what `make lab` and earlier runs leave in notebooks/, kept out of the copy
GENERATED = ("models", "samples", "build", ".ipynb_checkpoints", "executed-*", "my_quickstart.flow.yaml")


def _execute(workdir: Path) -> list[str]:
    import papermill

    out = workdir / f"executed-{NOTEBOOK}"
    papermill.execute_notebook(str(workdir / NOTEBOOK), str(out), cwd=str(workdir), kernel_name="python3",
                               progress_bar=False, log_output=False, execution_timeout=300)
    nb = nbformat.read(str(out), as_version=4)
    return [_cell_text(c) for c in nb.cells if c.cell_type == "code"]


def _cell_text(cell: Any) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            parts.append(output.data.get("text/plain", ""))
        elif output.output_type == "error":
            parts.append(f"{output.ename}: {output.evalue}")
    return "".join(parts)


def _find(cells: list[str], pattern: str) -> re.Match[str]:
    for text in cells:
        match = re.search(pattern, text, re.M)
        if match:
            return match
    raise AssertionError(f"no cell output matches {pattern!r}:\n" + "\n---\n".join(cells))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    copy = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, copy, ignore=shutil.ignore_patterns(*GENERATED))
    return copy


@pytest.mark.parametrize("trained_model_present", [False, True], ids=["tiny-bert-made-on-the-spot", "clause-bert-present"])
def test_quickstart_builds_runs_inspects_and_saves_the_flow(workdir: Path, trained_model_present: bool) -> None:
    from jupyter_flow_examples.models import CLAUSE_LABELS, classify_texts, make_tiny_bert

    if trained_model_present:
        # stands in for the classifier `make lab` trains: the notebook must pick it up, not make its own
        make_tiny_bert(workdir / "models" / "clause-bert", labels=CLAUSE_LABELS, hidden_size=48, heads=3, seed=7)
    cells = _execute(workdir)
    model = "models/clause-bert" if trained_model_present else "models/quickstart-bert"
    assert (workdir / "models" / "quickstart-bert").exists() is not trained_model_present

    _find(cells, r"^the text cleaner answers at http://127\.0\.0\.1:\d+/clean$")
    _find(cells, rf"^model: {re.escape(model)}$")
    _find(cells, r"^<Flow 'quickstart': 4 nodes, 4 edges>$")
    _find(cells, r"^node 'report', field 'config.template': references unknown node 'statz'")  # the mistake, shown...
    _find(cells, r"^after undo: no problems$")  # ...and undone
    _find(cells, r"the edges form a cycle")
    _find(cells, r"^4 edges, as before$")

    # What each node computes, worked out here without the flow
    raw = load_spec(SHIPPED_FLOW).inputs["text"].default
    cleaned = clean_text(raw)
    words = [w.strip(".,;:!?").lower() for w in cleaned.split()]
    counts = Counter(words)
    (label, score), = classify_texts(workdir / model, [cleaned])
    hidden = 48 if trained_model_present else 32
    _find(cells, rf"^ok\n{re.escape(cleaned)}\n{len(words)} words; clause type: {label}$")
    _find(cells, rf"^classify: {label} {round(score, 3)}$")
    _find(cells, rf"^bert\.pooler: Tensor \(1, {hidden}\) torch\.float32$")  # the captured activation, as a variable
    _find(cells, rf"'word': '{counts.most_common(1)[0][0]}', 'count': {counts.most_common(1)[0][1]}")
    _find(cells, rf"^{len(counts)} distinct words out of {len(words)}; clause type: {label}$")
    _find(cells, r"^\{'clean': 'cached', 'stats': 'cached', 'classify': 'cached', 'report': 'ok'\}$")
    _find(cells, r"4 nodes, 4 edges from my_quickstart\.flow\.yaml> - problems: none$")
    assert cells[-1].strip() == "model services stopped"

    # The flow file shipped beside the notebook is the flow the notebook builds (its model
    # being the clause classifier, read from the flows/ folder), before the last edit.
    saved = spec_to_dict(load_spec(workdir / "my_quickstart.flow.yaml"))
    shipped = spec_to_dict(load_spec(SHIPPED_FLOW))
    assert [n["id"] for n in saved["nodes"]] == [n["id"] for n in shipped["nodes"]]
    assert saved["edges"] == shipped["edges"] and saved["layout"] == shipped["layout"]
    for got, want in zip(saved["nodes"], shipped["nodes"]):
        if got["id"] == "classify":
            assert (got["config"]["model"], want["config"]["model"]) == (model, "../models/clause-bert")
            got["config"]["model"] = want["config"]["model"]
        if got["id"] != "report":  # the notebook edits the report's template before saving
            assert got == want
    assert saved["inputs"]["text"]["default"] == raw
