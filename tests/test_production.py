"""Production runs as a scheduler and a hostile user meet them: the real CLI in
subprocesses, a served flow under uvicorn, exported notebooks under papermill.

Results come back whole; exit codes say whether every item succeeded; one batch per
output folder; text no encoder accepts never ends a run; links never loop a batch; an
exported notebook runs wherever it is copied with its files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest
from servers import AsgiServer

from jupyter_flow import Flow, FlowValidationError, run_exported
from jupyter_flow.batch import LOCK_FILE, collect_items
from jupyter_flow.export import export_notebook
from jupyter_flow.exported import ParameterError, check_parameters
from jupyter_flow.serve.app import flow_app

VENV_BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "jupyter_flow.cli"]

PRODFNS = '''
import os
import time


def make(n, text):
    if text.startswith("FAIL"):
        raise ValueError(f"refusing {text}")
    if text.startswith("WAIT "):  # hold the item until the test lets it go
        while not os.path.exists(text[5:]):
            time.sleep(0.02)
    return {"long": "y" * n, "items": list(range(5000)), "echo": text}


def read(path, since, limit):
    with open(path, encoding="utf-8") as fh:
        text = fh.read().strip()
    if text.startswith("BAD"):
        raise ValueError(f"cannot read {path}: it says BAD")
    return {"text": text, "since": since, "limit": limit}
'''

BIG_FLOW = """
spec_version: 1
name: big-outputs
inputs:
  n: {type: integer, default: 20000}
  text: {type: string, default: x}
nodes:
  - id: make
    type: python
    config: {function: "prodfns:make", input_mapping: {n: "{{n}}", text: "{{text}}"}}
"""

READ_FLOW = """
spec_version: 1
name: portable
inputs:
  document: {type: file, default: samples/doc.txt}
  since: {type: string, default: 2024-01-01}
  limit: {type: number, default: .inf}
nodes:
  - id: read
    type: python
    config: {function: "prodfns:read", input_mapping: {path: "{{document}}", since: "{{since}}", limit: "{{limit}}"}}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def flows(tmp_path: Path) -> Path:
    """A folder with the flows and, beside them, the module their python nodes name."""
    folder = tmp_path / "flows"
    write(folder / "prodfns.py", PRODFNS)
    write(folder / "big.flow.yaml", BIG_FLOW)
    write(folder / "read.flow.yaml", READ_FLOW)
    sys.modules.pop("prodfns", None)
    return folder


def cli(*args: str, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, **kwargs)


def jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    # ensure_ascii keeps "\ud800" as JSON's escape: valid JSON any reader takes
    return write(path, "".join(json.dumps(row) + "\n" for row in rows))


def results(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]


def wait_for_lines(path: Path, count: int, proc: subprocess.Popen[str], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_bytes().splitlines()) >= count:
            return
        if proc.poll() is not None:
            raise AssertionError(f"the batch ended early: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError(f"no {count} results in {path} after {timeout_s} s")


# -- whole outputs ----------------------------------------------------------------------
def assert_whole(outputs: dict[str, Any]) -> None:
    assert len(outputs["make"]["long"]) == 20_000 and set(outputs["make"]["long"]) == {"y"}
    assert outputs["make"]["items"] == list(range(5000))


def test_run_prints_and_writes_long_outputs_whole(flows: Path, tmp_path: Path) -> None:
    printed = cli("run", str(flows / "big.flow.yaml"))
    assert printed.returncode == 0, printed.stderr
    assert_whole(json.loads(printed.stdout))

    target = tmp_path / "outputs.json"
    written = cli("run", str(flows / "big.flow.yaml"), "--output", str(target))
    assert written.returncode == 0 and written.stdout == "", written.stderr
    assert_whole(json.loads(target.read_text(encoding="utf-8")))


def test_run_with_a_lone_surrogate_input_prints_it_escaped_and_says_so(flows: Path, tmp_path: Path) -> None:
    inputs = write(tmp_path / "inputs.json", '{"text": "a\\ud800b", "n": 3}')
    done = cli("run", str(flows / "big.flow.yaml"), "--inputs", str(inputs))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert json.loads(done.stdout)["make"]["echo"] == "a\\ud800b"
    assert "note: output make.echo: text with lone surrogates" in done.stderr


def test_a_served_flow_answers_long_outputs_whole_and_surrogates_escaped(flows: Path) -> None:
    with AsgiServer(flow_app(flows / "big.flow.yaml")) as srv, httpx.Client(base_url=srv.url, timeout=60) as client:
        answer = client.post("/run", json={"n": 20000, "text": "x"})
        assert answer.status_code == 200, answer.text
        assert_whole(answer.json()["outputs"])
        assert "converted" not in answer.json()

        odd = client.post("/run", content=b'{"n": 1, "text": "\\ud800"}', headers={"content-type": "application/json"})
        assert odd.status_code == 200, odd.text
        body = odd.json()
        assert body["outputs"]["make"]["echo"] == "\\ud800"
        assert body["converted"] == [{"path": "outputs.make.echo", "kind": "text with lone surrogates",
                                      "written_as": "\\uXXXX text in their place"}]


# -- exit codes -------------------------------------------------------------------------
def test_batch_exit_codes_follow_every_item_and_max_failures(flows: Path, tmp_path: Path) -> None:
    items = jsonl(tmp_path / "items.jsonl", [{"id": "a", "text": "fine"}, {"id": "b", "text": "FAIL now"},
                                             {"id": "c", "text": "fine too"}])
    flow = str(flows / "big.flow.yaml")

    failed = cli("batch", flow, "--inputs", str(items), "--out", str(tmp_path / "out1"), "-q")
    assert failed.returncode == 1, failed.stderr
    last = failed.stdout.splitlines()[-3:]
    assert last == [last[0], "batch FAILED: 1 of 3 items failed (0 allowed)", "failed items: b"]
    assert last[0].startswith("3 items: 2 ok, 1 failed")
    by_id = {r["id"]: r for r in results(tmp_path / "out1")}
    assert set(by_id) == {"a", "b", "c"}  # written before the exit
    assert_whole(by_id["a"]["outputs"])  # results.jsonl holds outputs whole
    assert by_id["b"]["error"]["message"] == "ValueError: refusing FAIL now"

    accepted = cli("batch", flow, "--inputs", str(items), "--out", str(tmp_path / "out2"), "-q", "--max-failures", "1")
    assert accepted.returncode == 0, accepted.stdout
    assert accepted.stdout.splitlines()[-2] == "batch succeeded: 2 of 3 items ok (1 failed, 1 allowed)"

    share = cli("batch", flow, "--inputs", str(items), "--out", str(tmp_path / "out3"), "-q", "--max-failures", "34%")
    assert share.returncode == 0, share.stdout
    too_small = cli("batch", flow, "--inputs", str(items), "--out", str(tmp_path / "out4"), "-q", "--max-failures", "30%")
    assert too_small.returncode == 1

    bad = cli("batch", flow, "--inputs", str(items), "--out", str(tmp_path / "out5"), "--max-failures", "some")
    assert bad.returncode == 2 and "max_failures" in bad.stderr and "'some'" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "out5").exists()


# -- one batch per folder ---------------------------------------------------------------
def test_a_second_batch_on_a_busy_folder_exits_2_naming_it_and_changes_nothing(flows: Path, tmp_path: Path) -> None:
    ids = [f"item{i:02d}" for i in range(16)]
    release = tmp_path / "release"
    texts = ["quick", "quick"] + [f"WAIT {release}"] * 14  # the first batch stays busy until the test says
    items = jsonl(tmp_path / "items.jsonl", [{"id": i, "text": t, "n": 5} for i, t in zip(ids, texts)])
    out = tmp_path / "out"
    args = ["batch", str(flows / "big.flow.yaml"), "--inputs", str(items), "--out", str(out), "-q", "-c", "2"]
    first = subprocess.Popen([*CLI, *args, "--resume"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_lines(out / "results.jsonl", 2, first)
        for extra in (["--resume"], []):  # resuming would run items twice; starting over would move results away
            before = (out / "results.jsonl").read_bytes()
            second = cli(*args, *extra)
            assert second.returncode == 2, second.stdout + second.stderr
            assert str(out) in second.stderr and f"process {first.pid}" in second.stderr
            assert "Traceback" not in second.stderr
            assert (out / "results.jsonl").read_bytes().startswith(before)  # nothing deleted or moved
            assert not list(out.glob("earlier-*"))
        release.touch()
        assert first.wait(timeout=120) == 0, first.communicate()
    finally:
        if first.poll() is None:
            first.kill()
    assert sorted(r["id"] for r in results(out)) == ids  # every id exactly once
    assert (out / LOCK_FILE).read_text() == ""  # released on exit

    again = cli(*args, "--resume")
    assert again.returncode == 0 and "(0 run now, 16 already done" in again.stdout


def test_the_lock_of_a_killed_batch_is_taken_over_with_a_message(flows: Path, tmp_path: Path) -> None:
    ids = [f"item{i:02d}" for i in range(12)]
    release = tmp_path / "release"
    texts = ["quick", "quick"] + [f"WAIT {release}"] * 10  # killed while it waits
    items = jsonl(tmp_path / "items.jsonl", [{"id": i, "text": t, "n": 5} for i, t in zip(ids, texts)])
    out = tmp_path / "out"
    args = ["batch", str(flows / "big.flow.yaml"), "--inputs", str(items), "--out", str(out), "-q", "-c", "1", "--resume"]
    killed = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_lines(out / "results.jsonl", 2, killed)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)
    assert json.loads((out / LOCK_FILE).read_text())["pid"] == killed.pid  # left behind by the kill

    release.touch()
    resumed = cli(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert f"took over the lock of {out} from process {killed.pid}" in resumed.stdout
    assert sorted(r["id"] for r in results(out)) == ids


def test_starting_over_moves_earlier_results_aside(flows: Path, tmp_path: Path) -> None:
    items = jsonl(tmp_path / "items.jsonl", [{"id": "a", "text": "one", "n": 1}])
    out = tmp_path / "out"
    args = ["batch", str(flows / "big.flow.yaml"), "--inputs", str(items), "--out", str(out), "-q"]
    assert cli(*args).returncode == 0
    first = (out / "results.jsonl").read_text(encoding="utf-8")
    again = cli(*args)
    assert again.returncode == 0
    (earlier,) = out.glob("earlier-*")
    assert f"earlier results in {out} were moved to {earlier}" in again.stdout
    assert (earlier / "results.jsonl").read_text(encoding="utf-8") == first
    assert (earlier / "traces" / "a.json").exists() and (earlier / "summary.json").exists()
    assert [r["id"] for r in results(out)] == ["a"]


# -- text no encoder accepts ------------------------------------------------------------
def test_a_lone_surrogate_line_is_recorded_and_the_items_after_it_run(flows: Path, tmp_path: Path) -> None:
    items = jsonl(tmp_path / "items.jsonl", [
        {"id": "before", "text": "fine", "n": 1},
        {"id": "odd\ud800", "text": "x\ud800y", "n": 1},
        {"id": "after", "text": "fine too", "n": 1},
    ])
    out = tmp_path / "out"
    args = ["batch", str(flows / "big.flow.yaml"), "--inputs", str(items), "--out", str(out), "-q", "-c", "1"]
    done = cli(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    by_id = {r["id"]: r for r in results(out)}
    # strict JSON holds no lone surrogate: the id is kept as the `\ud800` text results.jsonl
    # holds, the same on every resume
    assert set(by_id) == {"before", "odd\\ud800", "after"}
    odd = by_id["odd\\ud800"]
    assert odd["status"] == "ok" and odd["outputs"]["make"]["echo"] == "x\\ud800y"
    assert {"path": "outputs.make.echo", "kind": "text with lone surrogates",
            "written_as": "\\uXXXX text in their place"} in odd["converted"]
    assert (out / odd["trace"]).exists()

    resumed = cli(*args, "--resume")  # the odd item is done: resuming does not meet it again
    assert resumed.returncode == 0 and "(0 run now, 3 already done" in resumed.stdout


# -- links -------------------------------------------------------------------------------
def test_glob_and_folder_inputs_never_follow_a_link_into_a_folder_already_visited(flows: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    write(inbox / "a.txt", "one")
    write(inbox / "sub" / "b.txt", "two")
    (inbox / "sub" / "up").symlink_to("..", target_is_directory=True)  # a loop
    (inbox / "sub" / "again").symlink_to("../sub", target_is_directory=True)  # a second loop
    (inbox / "twin").symlink_to("sub", target_is_directory=True)  # the same folder under another name
    flow = Flow.load(flows / "read.flow.yaml")
    assert [i.id for i in collect_items(flow, f"{inbox}/**/*.txt")] == ["a.txt", "sub/b.txt"]
    assert [i.id for i in collect_items(flow, str(inbox))] == ["a.txt"]

    done = cli("batch", str(flows / "read.flow.yaml"), "--inputs", f"{inbox}/**/*.txt", "--out", str(tmp_path / "out"),
               "-q", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(r["id"] for r in results(tmp_path / "out")) == ["a.txt", "sub/b.txt"]


# -- exported notebooks ------------------------------------------------------------------
@pytest.fixture(scope="session")
def kernel_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `python3` kernelspec running this venv's interpreter, for every papermill run here."""
    prefix = tmp_path_factory.mktemp("kernel")
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", "python3"],
                   check=True, capture_output=True)
    return prefix / "share" / "jupyter"


@pytest.fixture
def papermill_env(kernel_path: Path) -> Iterator[dict[str, str]]:
    yield {**os.environ, "JUPYTER_PATH": str(kernel_path),
           "PATH": os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "")])}


def papermill(nb: Path, cwd: Path, env: dict[str, str], *params: str) -> subprocess.CompletedProcess[str]:
    pairs = [x for i in range(0, len(params), 2) for x in ("-p", params[i], params[i + 1])]
    return subprocess.run(["papermill", str(nb), str(cwd / "executed.ipynb"), "-k", "python3", "--cwd", str(cwd), *pairs],
                          capture_output=True, text=True, timeout=300, env=env, cwd=cwd)


def test_an_exported_notebook_copied_elsewhere_with_its_files_runs_there(flows: Path, tmp_path: Path,
                                                                         papermill_env: dict[str, str]) -> None:
    nb = export_notebook(Flow.load(flows / "read.flow.yaml"), tmp_path / "exported" / "read.ipynb")
    cells = [c.source for c in nbformat.read(nb, as_version=4).cells if c.cell_type == "code"]
    namespace: dict[str, Any] = {}
    exec(cells[0], namespace)  # the parameters: plain literals, no NameError
    assert namespace["inputs"] == {"document": "samples/doc.txt", "since": "2024-01-01", "limit": float("inf")}
    assert namespace["max_failures"] == 0 and namespace["flow_dir"] is None
    assert "FLOW_FILES = ['prodfns.py']" in cells[1]

    # another machine: the notebook with the files it lists, the original folder gone
    there = tmp_path / "scheduler" / "job"
    there.mkdir(parents=True)
    shutil.copy(nb, there / "read.ipynb")
    shutil.copy(flows / "prodfns.py", there / "prodfns.py")
    write(there / "samples" / "doc.txt", "the contract text")
    shutil.rmtree(flows)
    sys.modules.pop("prodfns", None)

    done = papermill(there / "read.ipynb", there, papermill_env)
    assert done.returncode == 0, done.stderr[-3000:]
    (record,) = results(there / "portable-output")
    assert record["status"] == "ok"
    assert record["outputs"]["read"] == {"text": "the contract text", "since": "2024-01-01", "limit": "Infinity"}
    assert {"path": "outputs.read.limit", "kind": "float inf", "written_as": "the string 'Infinity'"} in record["converted"]

    # its only item fails: the notebook, and papermill, fail naming the item
    write(there / "bad.txt", "BAD scan")
    failed = papermill(there / "read.ipynb", there, papermill_env, "inputs", '{"document": "bad.txt"}',
                       "output_dir", "out-bad")
    assert failed.returncode != 0
    assert "batch FAILED: 1 of 1 items failed (0 allowed); failed items: run" in failed.stderr
    assert results(there / "out-bad")[0]["error"]["message"].endswith("it says BAD")


def test_wrong_notebook_parameters_fail_before_anything_runs_naming_each(flows: Path, tmp_path: Path,
                                                                         papermill_env: dict[str, str]) -> None:
    nb = export_notebook(Flow.load(flows / "read.flow.yaml"), tmp_path / "read.ipynb")
    done = papermill(nb, tmp_path, papermill_env, "concurrency", "abc", "fail_fast", "maybe", "endpoints", "x",
                     "inputs", '{"document": ')
    assert done.returncode != 0
    for text in ("parameter `concurrency` is 'abc' (str); expected a whole number of at least 1",
                 "parameter `fail_fast` is 'maybe' (str); expected True or False",
                 "parameter `endpoints` is 'x' (str); expected a dict of node ids to URLs",
                 "parameter `inputs` is '{\"document\": ' (str); expected a dict of input names to values"):
        assert text in done.stderr, done.stderr[-3000:]
    assert not (tmp_path / "portable-output").exists()


def test_parameters_are_read_as_papermill_gives_them_and_required_inputs_are_checked(flows: Path, tmp_path: Path) -> None:
    checked = check_parameters(inputs='{"a": 1}', endpoints='{"n": "http://x"}', concurrency="8", fail_fast="true",
                               max_failures="5%")
    assert checked["inputs"] == {"a": 1} and checked["endpoints"] == {"n": "http://x"}
    assert checked["concurrency"] == 8 and checked["fail_fast"] is True and checked["max_failures"] == 0.05
    with pytest.raises(ParameterError) as info:
        check_parameters(output_dir="", engine="spark", flow_dir=str(tmp_path / "missing"), max_failures=-1)
    text = str(info.value)
    assert "parameter `output_dir` is ''" in text and "parameter `engine` is 'spark'" in text
    assert "parameter `flow_dir`" in text and "parameter `max_failures` is -1 (int)" in text

    spec = Flow.load(flows / "read.flow.yaml").to_dict()
    spec["inputs"]["document"] = {"type": "file"}  # required now
    with pytest.raises(FlowValidationError) as missing:
        run_exported(spec, inputs={}, output_dir=tmp_path / "out", flow_dir=flows)
    assert "document" in str(missing.value)
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("transformers")
    from jupyter_flow_examples.models import make_demo_models

    return make_demo_models(tmp_path_factory.getbasetemp() / "demo-models", log=lambda *_: None)


def test_the_exported_contract_review_runs_from_its_own_folder(tmp_path: Path, demo_models: dict[str, Path],
                                                               papermill_env: dict[str, str]) -> None:
    from jupyter_flow_examples.samples import make_samples

    root = tmp_path / "notebooks"  # the repository's layout: notebooks/, flows/ in it, models/ and samples/ beside
    shutil.copytree(REPO / "notebooks" / "flows", root / "flows")
    (root / "models").mkdir()
    (root / "models" / "clause-bert").symlink_to(demo_models["clause-bert"], target_is_directory=True)
    make_samples(root / "samples")
    nb = export_notebook(Flow.load(root / "flows" / "contract-review.flow.yaml"), root / "contract_review_exported.ipynb")

    done = papermill(nb, root, papermill_env)
    assert done.returncode == 0, done.stderr[-3000:]
    (record,) = results(root / "contract-review-output")
    assert record["status"] == "ok", record["error"]
    assert record["inputs"]["document"] == str(root / "samples" / "contract.pdf")
