"""Exported notebooks as schedulers meet them: papermill with a real kernel, parameters
overridden, a real loopback model endpoint, and the command line of docs/schedules.md."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import papermill
import pytest
from servers import Reply, Request

import jupyter_flow
from jupyter_flow import Flow, FlowValidationError, register_function, run_exported
from jupyter_flow.cli import main
from jupyter_flow.export import PARAMETERS, export_notebook
from jupyter_flow.exported import ParameterError
from jupyter_flow.nodes.python import default_functions

DOCS = Path(__file__).resolve().parents[1] / "docs" / "schedules.md"
VENV_BIN = Path(sys.executable).parent

FLOWFNS = '''
import os

def read(path):
    with open(path, encoding="utf-8") as fh:
        text = fh.read().strip()
    if text.startswith("BAD"):
        raise ValueError(f"cannot read {os.path.basename(path)}: it says BAD")
    return {"text": text}
'''

FLOW = """
name: contract-review
description: Reads each document and asks the legal-review model about it.
inputs:
  document: {type: file, default: samples/contract.txt, description: the contract to review}
  reviewer: {type: string, default: desk-1}
nodes:
  - id: read
    type: python
    config: {function: "flowfns:read", input_mapping: {path: "{{document}}"}}
  - id: escalate
    type: http
    config: {endpoint: "ENDPOINT", input_mapping: {text: "{{read.output.text}}", reviewer: "{{reviewer}}"}}
edges:
  - {from: start, to: read}
  - {from: read, to: escalate}
"""


def review(req: Request) -> Reply:
    body = req.body or {}
    return Reply(200, {"level": "high" if "risk" in body.get("text", "") else "low", "by": body.get("reviewer")})


@pytest.fixture(scope="session")
def kernel_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `python3` kernelspec whose argv is this venv's interpreter, found first by every
    papermill run here (in this process and in subprocesses)."""
    prefix = tmp_path_factory.mktemp("kernel")
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", "python3"],
                   check=True, capture_output=True)
    spec = json.loads((prefix / "share/jupyter/kernels/python3/kernel.json").read_text())
    assert spec["argv"][0] == sys.executable
    return prefix / "share" / "jupyter"


@pytest.fixture
def workdir(tmp_path: Path, kernel_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "flowfns.py").write_text(FLOWFNS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_path))
    monkeypatch.setenv("PATH", os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "")]))
    sys.modules.pop("flowfns", None)
    yield tmp_path


def write_flow(workdir: Path, endpoint: str) -> Path:
    path = workdir / "contract-review.flow.yaml"
    path.write_text(FLOW.replace("ENDPOINT", endpoint), encoding="utf-8")
    return path


def make_inbox(workdir: Path, texts: dict[str, str]) -> Path:
    inbox = workdir / "inbox"
    inbox.mkdir()
    for name, text in texts.items():
        (inbox / name).write_text(text, encoding="utf-8")
    return inbox


def results(out: Path) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in map(json.loads, (out / "results.jsonl").read_text(encoding="utf-8").splitlines())}


def outputs_text(nb: Any) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.extend(str(v) for v in out.get("data", {}).values())
            parts.extend(out.get("traceback", []))
    return "\n".join(parts)


def parameters_cell(nb: Any) -> Any:
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    return tagged[0]


def test_export_writes_a_self_contained_papermill_ready_notebook(workdir: Path) -> None:
    flow_path = write_flow(workdir, "http://legal-review:5000/predict")
    nb_path = export_notebook(Flow.load(flow_path), workdir / "nb" / "review.ipynb")
    nb = nbformat.read(nb_path, as_version=4)
    nbformat.validate(nb)

    cell = parameters_cell(nb)
    assigned = [n.targets[0].id for n in ast.parse(cell.source).body]
    assert assigned == list(PARAMETERS) == ["inputs", "inputs_path", "output_dir", "device", "endpoints", "concurrency",
                                            "fail_fast", "max_failures", "engine", "flow_dir", "cache", "rerun_changed"]
    values: dict[str, Any] = {}
    exec(cell.source, values)
    assert values["inputs"] == {"document": "samples/contract.txt", "reviewer": "desk-1"}
    assert (values["inputs_path"], values["device"], values["endpoints"], values["fail_fast"], values["engine"]) == \
        (None, None, {}, False, "local")
    assert (values["max_failures"], values["flow_dir"]) == (0, None)
    # papermill reads the same names from the notebook
    assert list(papermill.inspect_notebook(str(nb_path))) == list(PARAMETERS)

    # the flow travels inside the notebook: the spec cell rebuilds the same flow without the file
    flow_path.unlink()
    spec_cell = next(c for c in nb.cells if "FLOW_SPEC = " in c.source)
    namespace: dict[str, Any] = {}
    exec(spec_cell.source, namespace)  # data only: nothing runs
    assert Flow.from_dict(namespace["FLOW_SPEC"]).spec == Flow.from_text(FLOW.replace("ENDPOINT", "http://legal-review:5000/predict")).spec
    assert namespace["FLOW_DIR"] == str(workdir.resolve())

    intro = nb.cells[0].source
    assert intro.startswith("# contract-review")
    assert "| `read` | python | calls `flowfns:read` | the start |" in intro
    assert "| `escalate` | http | POST `http://legal-review:5000/predict` | read |" in intro
    assert "the contract to review" in intro
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= 4
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_export_command_writes_the_notebook_and_names_what_cannot_be_exported(workdir: Path, capsys) -> None:
    flow_path = write_flow(workdir, "http://legal-review:5000/predict")
    target = workdir / "review.ipynb"
    assert main(["export", str(flow_path), "-o", str(target), "--output-dir", "/data/runs"]) == 0
    assert "output_dir = '/data/runs'" in parameters_cell(nbformat.read(target, as_version=4)).source

    broken = workdir / "broken.flow.yaml"
    broken.write_text(FLOW.replace("ENDPOINT", "http://x").replace("{{read.output.text}}", "{{nowhere.output}}"))
    assert main(["export", str(broken), "-o", str(workdir / "b.ipynb")]) == 2
    err = capsys.readouterr().err
    assert "escalate" in err and "nowhere" in err and not (workdir / "b.ipynb").exists()

    local = workdir / "local.flow.yaml"  # names a function only a notebook registers
    local.write_text(FLOW.replace("ENDPOINT", "http://x").replace("flowfns:read", "export_test_unregistered"))
    assert main(["export", str(local), "-o", str(workdir / "c.ipynb")]) == 2
    err = capsys.readouterr().err
    assert "node 'read', field 'config.function'" in err and "'export_test_unregistered' is registered here" in err


def test_papermill_runs_a_batch_with_parameters_overridden(workdir: Path, serve) -> None:
    server = serve({"/review": review})
    # the flow file points at an address where nothing listens; the run overrides it
    nb_path = export_notebook(Flow.load(write_flow(workdir, "http://127.0.0.1:9/predict")), workdir / "review.ipynb")
    inbox = make_inbox(workdir, {"a.txt": "a risk clause", "b.txt": "BAD scan", "c.txt": "plain terms"})
    out = workdir / "runs" / "today"

    papermill.execute_notebook(
        str(nb_path), str(workdir / "executed.ipynb"), kernel_name="python3", progress_bar=False,
        parameters={"inputs_path": str(inbox), "output_dir": str(out), "concurrency": 2, "max_failures": 1,
                    "inputs": {"reviewer": "night-shift"}, "endpoints": {"escalate": f"{server.url}/review"}},
    )

    by_id = results(out)
    assert set(by_id) == {"a.txt", "b.txt", "c.txt"}
    assert by_id["a.txt"]["outputs"]["escalate"] == {"level": "high", "by": "night-shift"}
    assert by_id["c.txt"]["outputs"]["escalate"] == {"level": "low", "by": "night-shift"}
    assert by_id["b.txt"]["status"] == "error" and by_id["b.txt"]["error"]["node"] == "read"
    assert sorted(r.body["text"] for r in server.requests) == ["a risk clause", "plain terms"]
    assert all((out / r["trace"]).is_file() for r in by_id.values())
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["ok"], summary["failed"]) == (2, 1)

    shown = outputs_text(nbformat.read(workdir / "executed.ipynb", as_version=4))
    assert "3 items: 2 ok, 1 failed" in shown
    assert "| b.txt | read | ValueError: cannot read b.txt: it says BAD |" in shown  # the summary table
    assert "3/3" in shown  # the progress bar reached the end
    assert "mean time per node" in shown or "image/png" in shown  # the timing chart


def package_names(nb: Any) -> tuple[set[str], set[str]]:
    """What the notebook's code takes from jupyter_flow: the modules it imports, and the names."""
    modules: set[str] = set()
    names: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Import):
                modules |= {a.name for a in node.names if a.name.startswith("jupyter_flow")}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jupyter_flow"):
                modules.add(str(node.module))
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "jupyter_flow":
                names.add(node.attr)
    return modules, names


def test_the_notebook_runs_through_the_public_entry_point_only(workdir: Path, serve) -> None:
    server = serve({"/review": review})
    nb_path = export_notebook(Flow.load(write_flow(workdir, "http://127.0.0.1:9/predict")), workdir / "review.ipynb")
    nb = nbformat.read(nb_path, as_version=4)
    modules, names = package_names(nb)
    # Only public names: a notebook on a schedule must survive changes to the package's insides.
    assert modules == {"jupyter_flow"} and names == {"run_exported"}
    assert names <= set(jupyter_flow.__all__)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "BatchItem" not in code and "apply_endpoints" not in code and "jupyter_flow.batch" not in code
    run = next(c for c in nb.cells if "run_exported(" in c.source)
    call = next(n for n in ast.walk(ast.parse(run.source)) if isinstance(n, ast.Call))
    assert [kw.arg for kw in call.keywords] == [*PARAMETERS, "exported_from", "flow_files"]  # every parameter, as it is

    inbox = make_inbox(workdir, {"a.txt": "a risk clause", "b.txt": "plain terms"})
    out = workdir / "out"
    papermill.execute_notebook(
        str(nb_path), str(workdir / "executed.ipynb"), kernel_name="python3", progress_bar=False,
        parameters={"inputs_path": str(inbox), "output_dir": str(out), "endpoints": {"escalate": f"{server.url}/review"}},
    )
    assert {k: r["outputs"]["escalate"]["level"] for k, r in results(out).items()} == {"a.txt": "high", "b.txt": "low"}

    with pytest.raises(papermill.PapermillExecutionError) as info:
        papermill.execute_notebook(str(nb_path), str(workdir / "bad.ipynb"), kernel_name="python3", progress_bar=False,
                                   parameters={"inputs_path": str(inbox), "output_dir": str(out), "engine": "spark"})
    assert "parameter `engine` is 'spark' (str); expected 'local' or 'ray'" in str(info.value)


REPORT_FLOW = {
    "name": "report",
    "inputs": {"title": {"type": "string", "default": "Quarterly"}},
    "nodes": [{"id": "rep", "type": "report",
               "config": {"findings": [], "title": "{{title}}", "markdown_template": "templates/report.md.j2"}}],
}


def test_run_exported_reads_relative_paths_from_the_flows_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flow_dir = tmp_path / "flows"
    (flow_dir / "templates").mkdir(parents=True)
    (flow_dir / "templates" / "report.md.j2").write_text("FROM THE FLOW'S FOLDER", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    summary = run_exported(REPORT_FLOW, inputs={"title": "Q3"}, output_dir="out", flow_dir=flow_dir)
    assert (summary.total, summary.ok) == (1, 1)
    run = results(elsewhere / "out")["run"]
    assert "FROM THE FLOW'S FOLDER" in run["outputs"]["rep"]["markdown"]
    # by default the flow's files are read from the working folder, else from the folder it was exported from
    summary = run_exported(REPORT_FLOW, inputs={"title": "Q3"}, output_dir="out2", exported_from=str(flow_dir),
                           flow_files=["templates/report.md.j2"])
    assert "FROM THE FLOW'S FOLDER" in results(elsewhere / "out2")["run"]["outputs"]["rep"]["markdown"]
    # that folder is gone on this machine: relative paths are read from the working folder
    with pytest.raises(FlowValidationError, match="templates/report.md.j2"):
        run_exported(REPORT_FLOW, output_dir="out", exported_from=str(tmp_path / "gone"),
                     flow_files=["templates/report.md.j2"])
    with pytest.raises(ParameterError, match="parameter `flow_dir`"):
        run_exported(REPORT_FLOW, output_dir="out", flow_dir=tmp_path / "gone")
    with pytest.raises(ParameterError, match="parameter `concurrency` is 0"):
        run_exported(REPORT_FLOW, inputs_path=str(flow_dir), concurrency=0, flow_dir=flow_dir)


BUILDER = """
from collections import Counter

from jupyter_flow import Flow, FlowValidationError, register_function
from jupyter_flow.export import export_notebook

TOP = 2

@register_function
def word_stats(text: str, top: int = TOP) -> dict:
    counts = Counter(text.lower().split())
    return {"words": sum(counts.values()), "top": [w for w, _ in counts.most_common(top)]}

flow = Flow.from_dict({
    "name": "words",
    "inputs": {"text": {"type": "text", "default": "Risk and more risk and fees"}},
    "nodes": [
        {"id": "stats", "type": "python", "config": {"function": "word_stats", "input_mapping": {"text": "{{text}}"}}},
        {"id": "escalate", "type": "http", "config": {"endpoint": "ENDPOINT", "input_mapping": {"text": "{{stats.output.top[0]}}"}}},
    ],
    "edges": [{"from": "stats", "to": "escalate"}],
})
export_notebook(flow, "EXPORTED")
"""


def test_a_flow_built_in_a_notebook_exports_with_its_functions_and_runs_once_with_no_parameters(workdir: Path, serve) -> None:
    server = serve({"/review": review})
    exported = workdir / "exported" / "words.ipynb"
    builder = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        BUILDER.replace("ENDPOINT", f"{server.url}/review").replace("EXPORTED", str(exported)))])
    builder.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(builder, workdir / "builder.ipynb")
    # the notebook a person built the flow in registers word_stats and exports the flow ...
    papermill.execute_notebook(str(workdir / "builder.ipynb"), str(workdir / "builder-run.ipynb"),
                               kernel_name="python3", progress_bar=False, cwd=str(workdir))
    # ... and a fresh kernel runs the export with no parameters at all: once, on the defaults
    papermill.execute_notebook(str(exported), str(workdir / "executed.ipynb"), kernel_name="python3",
                               progress_bar=False, cwd=str(workdir))

    run = results(workdir / "words-output")["run"]
    assert run["status"] == "ok", run
    assert run["outputs"]["stats"] == {"words": 6, "top": ["risk", "and"]}
    assert run["outputs"]["escalate"] == {"level": "high", "by": None}
    assert [r.body["text"] for r in server.requests] == ["risk"]
    carried = nbformat.read(exported, as_version=4)
    code = "\n".join(c.source for c in carried.cells if c.cell_type == "code")
    assert "from collections import Counter" in code and "TOP = 2" in code
    assert "register_function(word_stats, name='word_stats')" in code


def test_functions_that_cannot_be_written_out_are_named(workdir: Path) -> None:
    spec = {"name": "f", "nodes": [{"id": "clean", "type": "python", "config": {"function": "export_test_lambda"}}]}
    register_function(lambda: {"x": 1}, name="export_test_lambda")
    try:
        with pytest.raises(FlowValidationError) as info:
            export_notebook(Flow.from_dict(spec), workdir / "f.ipynb")
    finally:
        default_functions().pop("export_test_lambda", None)
    assert "node 'clean', field 'config.function'" in str(info.value)
    assert "not a function written with def" in str(info.value)
    assert not (workdir / "f.ipynb").exists()


def doc_block(marker: str) -> str:
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(rf"<!-- {marker}[^>]*-->\s*```\w*\n(.*?)```", text, re.S)
    assert match, f"docs/schedules.md has no block after <!-- {marker} -->"
    return match.group(1)


def test_the_scheduled_command_of_the_docs_runs_as_written(workdir: Path, serve) -> None:
    server = serve({"/review": review})
    nb_path = export_notebook(Flow.load(write_flow(workdir, "http://127.0.0.1:9/predict")), workdir / "review.ipynb")
    inbox = make_inbox(workdir, {"a.txt": "risk of loss", "b.txt": "nothing much"})
    script = workdir / "run-contract-review.sh"
    script.write_text(doc_block("schedule-script"), encoding="utf-8")
    out = workdir / "runs" / "2025-01-01"
    env = {**os.environ, "NOTEBOOK": str(nb_path), "INBOX": str(inbox), "OUT": str(out),
           "LEGAL_REVIEW_URL": f"{server.url}/review"}

    done = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    by_id = results(out)
    assert {k: v["outputs"]["escalate"]["level"] for k, v in by_id.items()} == {"a.txt": "high", "b.txt": "low"}
    assert "2 items: 2 ok, 0 failed" in outputs_text(nbformat.read(out / "notebook.ipynb", as_version=4))

    # the same command again resumes: nothing is run twice
    again = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len((out / "results.jsonl").read_text().splitlines()) == 2
    assert len(server.requests) == 2


def test_papermill_exits_non_zero_with_fail_fast_naming_item_and_node(workdir: Path, serve) -> None:
    server = serve({"/review": review})
    nb_path = export_notebook(Flow.load(write_flow(workdir, f"{server.url}/review")), workdir / "review.ipynb")
    inbox = make_inbox(workdir, {"a.txt": "fine", "b.txt": "BAD scan", "c.txt": "later", "d.txt": "later too"})
    out = workdir / "out"
    done = subprocess.run(
        ["papermill", str(nb_path), str(workdir / "executed.ipynb"), "-k", "python3", "-p", "inputs_path", str(inbox),
         "-p", "output_dir", str(out), "-p", "concurrency", "1", "-p", "fail_fast", "True"],
        capture_output=True, text=True, timeout=180,
    )
    assert done.returncode != 0
    assert "item 'b.txt' failed at node 'read'" in done.stderr and "it says BAD" in done.stderr
    assert list(results(out)) == ["a.txt", "b.txt"]


def test_the_airflow_task_of_the_docs_passes_only_notebook_parameters() -> None:
    source = doc_block("airflow-dag")
    tree = ast.parse(source)
    calls = {n.func.id: n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    operator = {kw.arg: kw.value for kw in calls["PapermillOperator"].keywords}
    assert ast.literal_eval(operator["kernel_name"]) == "python3"
    assert ast.literal_eval(operator["input_nb"]).endswith(".ipynb")
    parameters = ast.literal_eval(operator["parameters"])
    assert set(parameters) <= set(PARAMETERS)
    assert "inputs_path" in parameters and "output_dir" in parameters
    bash = {kw.arg: kw.value for kw in calls["BashOperator"].keywords}
    script = doc_block("schedule-script")
    assert ast.literal_eval(bash["bash_command"]).strip().endswith("run-contract-review.sh")
    assert "run-contract-review.sh" in script.splitlines()[1]
    assert set(ast.literal_eval(bash["env"])) <= {"NOTEBOOK", "INBOX", "OUT", "LEGAL_REVIEW_URL"}
