"""Batch runs as their users meet them: folders, globs and JSONL files of inputs, a real
loopback model endpoint, results that survive a real SIGKILL, fail-fast and continue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from dataclasses import FrozenInstanceError
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from processes import kill_after_results
from servers import Reply, Request

from jupyter_flow import Flow, FlowValidationError, Node, NodeConfig, NodeRegistry
from jupyter_flow.batch import (
    BatchInputError,
    BatchOptions,
    BatchStoppedError,
    apply_endpoints,
    collect_items,
    read_results,
    run_batch,
)
from jupyter_flow.cli import main

# The python node's function lives in a module the test writes, so that subprocesses
# (the CLI, a kernel) import the very same code.
FLOWFNS = '''
import os, time

def read(path, delay=0):
    time.sleep(float(delay or 0))
    with open(path, encoding="utf-8") as fh:
        text = fh.read().strip()
    log = os.environ.get("FLOWFNS_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(os.path.basename(path) + "\\n")
    if text.startswith("BAD"):
        raise ValueError(f"cannot read {os.path.basename(path)}: it says BAD")
    return {"text": text, "words": len(text.split())}
'''

FLOW = """
name: docs
inputs:
  document: {type: file}
  delay: {type: number, default: 0}
nodes:
  - id: read
    type: python
    config: {function: "flowfns:read", input_mapping: {path: "{{document}}", delay: "{{delay}}"}}
  - id: escalate
    type: http
    config: {endpoint: "ENDPOINT", input_mapping: {text: "{{read.output.text}}"}}
edges:
  - {from: start, to: read}
  - {from: read, to: escalate}
"""


def score(req: Request) -> Reply:
    text = (req.body or {}).get("text", "")
    if "FAIL500" in text:
        return Reply(500, {"error": "model crashed"})
    return Reply(200, {"label": "risky" if "risk" in text else "fine", "length": len(text)}, delay_s=0.0)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "flowfns.py").write_text(FLOWFNS, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    sys.modules.pop("flowfns", None)
    return tmp_path


def write_flow(workdir: Path, endpoint: str) -> Path:
    path = workdir / "docs.flow.yaml"
    path.write_text(FLOW.replace("ENDPOINT", endpoint), encoding="utf-8")
    return path


def make_inbox(workdir: Path, texts: dict[str, str], name: str = "inbox") -> Path:
    inbox = workdir / name
    inbox.mkdir(parents=True, exist_ok=True)
    for file, text in texts.items():
        (inbox / file).parent.mkdir(parents=True, exist_ok=True)
        (inbox / file).write_text(text, encoding="utf-8")
    return inbox


def lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]


def test_folder_batch_runs_every_file_once_concurrently_with_traces_and_summary(workdir: Path, serve) -> None:
    server = serve({"/score": lambda r: Reply(200, {"label": "risky" if "risk" in r.body["text"] else "fine"}, delay_s=0.25)})
    flow = Flow.load(write_flow(workdir, f"{server.url}/score"))
    texts = {f"doc{i:02d}.txt": ("a risk clause" if i % 3 == 0 else f"plain text {i}") for i in range(8)}
    inbox = make_inbox(workdir, texts)
    out = workdir / "out"

    summary = run_batch(flow, inbox, out, concurrency=4, progress=False)

    records = lines(out)
    assert sorted(r["id"] for r in records) == sorted(texts)
    calls = []  # when each item's model call ran, from its trace
    for r in records:
        assert r["status"] == "ok", r
        expected = "risky" if "risk" in texts[r["id"]] else "fine"
        assert r["outputs"]["escalate"]["label"] == expected
        assert r["inputs"]["document"] == str((inbox / r["id"]).resolve())
        trace = json.loads((out / r["trace"]).read_text(encoding="utf-8"))
        assert [n["node"] for n in trace["nodes"]] == ["read", "escalate"]
        assert trace["status"] == "ok"
        call = next(n for n in trace["nodes"] if n["node"] == "escalate")
        start = datetime.fromisoformat(call["started_at"]).timestamp()
        calls.append((start, start + call["duration_s"]))
    assert len(server.requests) == 8
    # 8 requests of 0.25 s each, 4 at a time: the calls overlapped, never more than 4 at once
    at_once = max(sum(1 for s, e in calls if s <= start < e) for start, _ in calls)
    assert 2 <= at_once <= 4
    assert (summary.total, summary.ok, summary.failed, summary.pending) == (8, 8, 0, 0)
    assert set(summary.node_timing) == {"read", "escalate"}
    assert summary.node_timing["escalate"]["count"] == 8
    assert summary.node_timing["escalate"]["mean_s"] >= 0.25
    on_disk = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert on_disk["ok"] == 8 and on_disk["node_timing"]["escalate"]["count"] == 8


def test_jsonl_items_take_their_id_field_or_line_number_and_bad_inputs_fail_only_their_item(workdir: Path, serve) -> None:
    server = serve({"/score": score})
    flow = Flow.load(write_flow(workdir, f"{server.url}/score"))
    inbox = make_inbox(workdir, {"a.txt": "alpha", "b.txt": "a risk"})
    jsonl = workdir / "items.jsonl"
    jsonl.write_text(
        "\n".join(
            [
                json.dumps({"id": "first", "document": str(inbox / "a.txt")}),
                json.dumps({"document": str(inbox / "b.txt"), "delay": "0.01"}),
                "",
                json.dumps({"document": str(inbox / "a.txt"), "colour": "red"}),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    summary = run_batch(flow, jsonl, workdir / "out", concurrency=2, progress=False)
    by_id = {r["id"]: r for r in lines(workdir / "out")}
    assert set(by_id) == {"first", "line-2", "line-4"}
    assert by_id["first"]["outputs"]["read"]["text"] == "alpha"
    assert by_id["line-2"]["outputs"]["escalate"]["label"] == "risky"
    bad = by_id["line-4"]
    assert bad["status"] == "error" and bad["error"]["node"] is None
    assert "inputs.colour" in bad["error"]["message"] and "unknown input" in bad["error"]["message"]
    assert (summary.ok, summary.failed) == (2, 1)
    assert summary.failures == [{"id": "line-4", "node": None, "message": bad["error"]["message"]}]


def test_a_broken_jsonl_line_is_a_usage_error_naming_file_and_line(workdir: Path, capsys) -> None:
    flow_path = write_flow(workdir, "http://127.0.0.1:9/score")
    jsonl = workdir / "items.jsonl"
    jsonl.write_text('{"document": "x"}\n{"document": "y"}\n{"document": \n', encoding="utf-8")
    assert main(["batch", str(flow_path), "--inputs", str(jsonl), "--out", str(workdir / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert f"{jsonl}:3: not JSON" in err
    assert "Traceback" not in err


def test_glob_items_are_named_by_their_path_below_the_pattern_root(workdir: Path, serve) -> None:
    server = serve({"/score": score})
    flow = Flow.load(write_flow(workdir, f"{server.url}/score"))
    make_inbox(workdir, {"2024/x.txt": "one", "2025/x.txt": "two", "2025/skip.md": "not me"})
    pattern = str(workdir / "inbox" / "**" / "*.txt")
    items = collect_items(flow, pattern)
    assert [i.id for i in items] == ["2024/x.txt", "2025/x.txt"]
    run_batch(flow, pattern, workdir / "out", progress=False)
    records = {r["id"]: r for r in lines(workdir / "out")}
    assert records["2024/x.txt"]["outputs"]["read"]["text"] == "one"
    assert records["2025/x.txt"]["outputs"]["read"]["text"] == "two"
    assert records["2024/x.txt"]["trace"] != records["2025/x.txt"]["trace"]
    assert len(list((workdir / "out" / "traces").glob("*.json"))) == 2


def test_without_fail_fast_failures_are_recorded_counted_and_named(workdir: Path, serve, capsys) -> None:
    server = serve({"/score": score})
    flow_path = write_flow(workdir, f"{server.url}/score")
    inbox = make_inbox(workdir, {"a.txt": "fine", "b.txt": "BAD scan", "c.txt": "FAIL500 here", "d.txt": "ok too"})
    out = workdir / "out"
    code = main(["batch", str(flow_path), "--inputs", str(inbox), "--out", str(out), "-c", "2", "-q"])
    printed = capsys.readouterr().out
    assert code == 1  # every item ran and was recorded, but a scheduler must hear that two failed
    last = printed.splitlines()[-3:]
    assert last[0].startswith("4 items: 2 ok, 2 failed")
    assert last[1].startswith("batch FAILED: 2 of 4 items failed (0 allowed)")
    assert last[2] == "failed items: b.txt, c.txt"
    assert "FAILED b.txt: node 'read': ValueError: cannot read b.txt: it says BAD" in printed
    assert "FAILED c.txt: node 'escalate'" in printed and "HTTP 500" in printed
    by_id = {r["id"]: r for r in lines(out)}
    assert {k: v["status"] for k, v in by_id.items()} == {"a.txt": "ok", "b.txt": "error", "c.txt": "error", "d.txt": "ok"}
    assert by_id["c.txt"]["error"]["node"] == "escalate"
    assert by_id["c.txt"]["outputs"]["read"]["text"] == "FAIL500 here"  # what finished is kept
    trace = json.loads((out / by_id["b.txt"]["trace"]).read_text(encoding="utf-8"))
    read = next(n for n in trace["nodes"] if n["node"] == "read")
    assert read["status"] == "error" and "it says BAD" in read["error"]["traceback"]


def test_fail_fast_stops_at_the_first_failed_item_and_names_item_and_node(workdir: Path, serve, capsys) -> None:
    server = serve({"/score": score})
    flow_path = write_flow(workdir, f"{server.url}/score")
    inbox = make_inbox(workdir, {"a.txt": "one", "b.txt": "two", "c.txt": "BAD", "d.txt": "four", "e.txt": "five"})
    out = workdir / "out"
    code = main(["batch", str(flow_path), "--inputs", str(inbox), "--out", str(out), "-c", "1", "--fail-fast", "-q"])
    captured = capsys.readouterr()
    assert code == 1
    assert "item 'c.txt' failed at node 'read'" in captured.err and "it says BAD" in captured.err
    assert "2 not run" in captured.out
    assert [r["id"] for r in lines(out)] == ["a.txt", "b.txt", "c.txt"]

    with pytest.raises(BatchStoppedError) as info:
        run_batch(Flow.load(flow_path), inbox, workdir / "out2", concurrency=1, fail_fast=True, progress=False)
    assert info.value.summary.failures[0]["id"] == "c.txt"
    assert info.value.summary.pending == 2


def test_a_batch_killed_with_sigkill_resumes_with_every_item_exactly_once(workdir: Path, serve) -> None:
    server = serve({"/score": score})
    flow_path = write_flow(workdir, f"{server.url}/score")
    names = [f"doc{i:02d}.txt" for i in range(30)]
    inbox = make_inbox(workdir, {n: f"text of {n}" for n in names})
    out = workdir / "out"
    log = workdir / "calls.log"
    env = {**os.environ, "FLOWFNS_LOG": str(log)}
    cmd = [sys.executable, "-m", "jupyter_flow.cli", "batch", str(flow_path), "--inputs", str(inbox),
           "--out", str(out), "-c", "3", "-q", "--input", "delay=0.2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    kill_after_results(proc, out / "results.jsonl", 6, timeout_s=60)
    before = read_results(out)
    assert 6 <= len(before) < 30, "the kill came too late to test anything"

    resumed = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"30 items: 30 ok, 0 failed ({30 - len(before)} run now, {len(before)} already done" in resumed.stdout

    ids = [json.loads(line)["id"] for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(ids) == names  # every item, none twice, no torn line
    calls = log.read_text(encoding="utf-8").splitlines()
    for record in before:  # what was recorded before the kill did not run again
        assert calls.count(record["id"]) == 1
    assert len(list((out / "traces").glob("*.json"))) == 30


def test_resume_cuts_a_line_torn_by_a_crash_and_runs_that_item_again(workdir: Path, serve) -> None:
    server = serve({"/score": score})
    flow = Flow.load(write_flow(workdir, f"{server.url}/score"))
    inbox = make_inbox(workdir, {"a.txt": "one", "b.txt": "two", "c.txt": "three"})
    out = workdir / "out"
    run_batch(flow, inbox, out, progress=False)
    raw = (out / "results.jsonl").read_bytes().splitlines(keepends=True)
    torn = b"".join(raw[:2]) + raw[2][: len(raw[2]) // 2]  # the third write cut half-way
    (out / "results.jsonl").write_bytes(torn)
    lost = json.loads(raw[2])["id"]

    summary = run_batch(flow, inbox, out, resume=True, progress=False)
    assert (summary.ran, summary.resumed, summary.ok) == (1, 2, 3)
    records = lines(out)  # every line parses
    assert sorted(r["id"] for r in records) == ["a.txt", "b.txt", "c.txt"]
    assert records[-1]["id"] == lost


def test_without_resume_a_batch_replaces_earlier_results(workdir: Path, serve) -> None:
    server = serve({"/score": score})
    flow = Flow.load(write_flow(workdir, f"{server.url}/score"))
    out = workdir / "out"
    run_batch(flow, make_inbox(workdir, {"a.txt": "one", "b.txt": "two"}), out, progress=False)
    run_batch(flow, make_inbox(workdir, {"z.txt": "last"}, "inbox2"), out, progress=False)
    assert [r["id"] for r in lines(out)] == ["z.txt"]
    assert [p.name for p in (out / "traces").glob("*.json")] == ["z.txt.json"]


def test_endpoint_overrides_name_unknown_and_non_http_nodes(workdir: Path, serve) -> None:
    server = serve({"/score": score})
    flow = Flow.load(write_flow(workdir, "http://127.0.0.1:9/nothing-listens-here"))
    with pytest.raises(FlowValidationError) as info:
        apply_endpoints(flow, {"nope": "http://x", "read": "http://y"})
    text = str(info.value)
    assert "node 'nope', field 'endpoints': no such node" in text
    assert "node 'read', field 'endpoints': is a 'python' node, not an http node" in text
    inbox = make_inbox(workdir, {"a.txt": "a risk"})
    summary = run_batch(flow, inbox, workdir / "out", endpoints={"escalate": f"{server.url}/score"}, progress=False)
    assert summary.ok == 1 and lines(workdir / "out")[0]["outputs"]["escalate"]["label"] == "risky"
    assert flow.spec.node("escalate").config["endpoint"].endswith("nothing-listens-here")  # the caller's flow is untouched


def test_a_folder_needs_to_know_which_input_takes_the_file(workdir: Path) -> None:
    flow = Flow.from_text(textwrap.dedent("""
        name: two
        inputs: {left: {type: file}, right: {type: file}}
        nodes: [{id: t, type: template, config: {template: "{{left}} {{right}}"}}]
    """))
    inbox = make_inbox(workdir, {"a.txt": "x"})
    with pytest.raises(FlowValidationError, match="cannot tell which input takes each file"):
        collect_items(flow, inbox)
    assert collect_items(flow, inbox, input_name="right")[0].inputs == {"right": str((inbox / "a.txt").resolve())}


class CountingConfig(NodeConfig):
    text: str = ""


class CountingNode(Node):
    """Counts warm-ups and how many runs overlap, as a model node with a micro-batcher sees them."""

    kind = "counting"
    Config = CountingConfig
    warm_ups = 0
    in_flight = 0
    peak = 0
    lock = threading.Lock()

    def warm_up(self) -> None:
        type(self).warm_ups += 1

    async def run(self, inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
        import asyncio

        cls = type(self)
        with cls.lock:
            cls.in_flight += 1
            cls.peak = max(cls.peak, cls.in_flight)
        await asyncio.sleep(0.05)
        with cls.lock:
            cls.in_flight -= 1
        return {"upper": inputs["text"].upper()}


def test_items_share_the_flows_loaded_nodes_and_overlap(workdir: Path) -> None:
    CountingNode.warm_ups = CountingNode.in_flight = CountingNode.peak = 0
    registry = NodeRegistry(entry_points_group=None)
    registry.register(CountingNode)
    flow = Flow.from_dict(
        {"name": "count", "inputs": {"text": {"type": "string"}},
         "nodes": [{"id": "model", "type": "counting", "config": {"text": "{{text}}"}}]},
        registry=registry,
    )
    items = [{"id": f"i{n}", "text": f"item {n}"} for n in range(9)]
    summary = run_batch(flow, items, workdir / "out", concurrency=3, progress=False)
    assert summary.ok == 9
    assert CountingNode.warm_ups == 1  # one loaded model for the whole batch
    assert CountingNode.peak == 3  # runs reach the shared node together, so it can batch them
    assert {r["id"]: r["outputs"]["model"]["upper"] for r in lines(workdir / "out")}["i4"] == "ITEM 4"


# The code cells of a notebook written by the export of before `jupyter_flow.run_exported`:
# such notebooks are out there, on schedules, and must keep running.
OLD_EXPORTED_CELLS = '''
inputs = {"text": "old notebook"}
inputs_path = None
output_dir = OUT
device = None
endpoints = {}
concurrency = 4
fail_fast = False
engine = 'local'

import os

from jupyter_flow import Flow
from jupyter_flow.batch import BatchItem, apply_endpoints, run_batch

FLOW_SPEC = {"name": "old", "inputs": {"text": {"type": "string"}},
             "nodes": [{"id": "t", "type": "template", "config": {"template": "got {{text}}"}}]}
FLOW_FILE = None
source = FLOW_FILE if FLOW_FILE and os.path.isdir(os.path.dirname(FLOW_FILE)) else None

flow = apply_endpoints(Flow.from_dict(FLOW_SPEC, source=source), endpoints).validate()

settings = {"device": device} if device else {}
if inputs_path:
    run_engine = run_batch
    summary = run_engine(flow, str(inputs_path), output_dir, concurrency=concurrency, resume=True,
                         fail_fast=fail_fast, progress=True, settings=settings, common_inputs=inputs)
else:
    summary = run_batch(flow, [BatchItem("run", dict(inputs))], output_dir, concurrency=1,
                        fail_fast=fail_fast, progress=True, settings=settings)
'''


def test_notebooks_exported_before_run_exported_still_run_with_the_names_they_import(tmp_path: Path) -> None:
    from jupyter_flow.batch import (  # noqa: F401 - every name such notebooks and older scripts import
        RESULTS_FILE,
        SUMMARY_FILE,
        TRACES_DIR,
        BatchInputError,
        BatchItem,
        BatchSummary,
        arun_batch,
        trace_name,
    )

    namespace: dict[str, Any] = {"OUT": str(tmp_path / "out")}
    exec(OLD_EXPORTED_CELLS, namespace)
    summary = namespace["summary"]
    assert isinstance(summary, BatchSummary) and summary.ok == 1
    assert lines(tmp_path / "out")[0]["outputs"]["t"] == {"text": "got old notebook"}


@pytest.mark.parametrize(
    ("options", "field"),
    [({"concurrency": 0}, "concurrency"), ({"concurrency": 2.5}, "concurrency"), ({"progress": "bar"}, "progress"),
     ({"resume": "yes"}, "resume"), ({"endpoints": ["escalate"]}, "endpoints"), ({"input_name": ""}, "input_name")],
)
def test_bad_options_are_named_before_the_output_folder_is_touched(workdir: Path, options: dict[str, Any],
                                                                   field: str) -> None:
    flow = Flow.load(write_flow(workdir, "http://127.0.0.1:9/score"))
    out = workdir / "out"
    with pytest.raises(BatchInputError) as info:
        run_batch(flow, make_inbox(workdir, {"a.txt": "one"}), out, **{"progress": False, **options})
    assert f"field '{field}'" in str(info.value)
    assert not out.exists()
    with pytest.raises(BatchInputError, match="field 'concurrency': must be at least 1"):
        BatchOptions(concurrency=0)


def test_an_options_value_is_read_only() -> None:
    options = BatchOptions(settings={"device": "cpu"})
    with pytest.raises(FrozenInstanceError):
        options.concurrency = 8  # type: ignore[misc]
    with pytest.raises(TypeError):
        options.settings["device"] = "cuda"  # type: ignore[index]


class DeviceConfig(NodeConfig):
    device: str | None = None


class DeviceNode(Node):
    """A node that asks for the device its config names; a node without one has no model."""

    kind = "device"
    Config = DeviceConfig

    def device_request(self, ctx: Any = None) -> str | None:
        return self.config.device

    async def run(self, inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
        return {}


def test_gpu_model_nodes_asks_each_node_for_its_device(monkeypatch: pytest.MonkeyPatch) -> None:
    # No Ray needed: the choice of GPU replicas is made on the driver, from the nodes' answers.
    from jupyter_flow.batch.ray import gpu_model_nodes

    registry = NodeRegistry(entry_points_group=None)
    registry.register(DeviceNode)
    devices = {"auto": "auto", "gpu": "cuda:1", "cpu": "cpu", "templ": "{{ inputs.where }}", "none": None}
    flow = Flow.from_dict(
        {"name": "devices", "inputs": {"where": {"type": "string", "default": "cpu"}},
         "nodes": [{"id": nid, "type": "device", "config": {"device": d}} for nid, d in devices.items()]},
        registry=registry,
    )
    assert gpu_model_nodes(flow) == ["auto", "gpu", "templ"]
    assert gpu_model_nodes(flow, {"device": "cpu"}) == []  # the run-wide device wins
    assert gpu_model_nodes(flow, {"device": "cuda"}) == ["auto", "gpu", "cpu", "templ"]


def test_batch_modules_import_no_private_names_no_cli_and_no_circle() -> None:
    import ast
    import graphlib

    import jupyter_flow.batch

    package = Path(jupyter_flow.batch.__file__).parent
    graph: dict[str, set[str]] = {}
    for module in sorted(package.glob("*.py")):
        name = f"jupyter_flow.batch.{module.stem}"
        graph[name] = set()
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):  # imports inside functions too
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jupyter_flow"):
                private = [a.name for a in node.names if a.name.startswith("_") and a.name != "__version__"]
                assert not private, f"{module.name} imports {private} from {node.module}"
                assert node.module != "jupyter_flow.cli", f"{module.name} imports the command line"
                if node.module and node.module.startswith("jupyter_flow.batch."):
                    graph[name].add(node.module)
    del graph["jupyter_flow.batch.__init__"]  # the package re-exports; its modules never import it
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError on an import circle
    assert "jupyter_flow.batch.local" not in graph["jupyter_flow.batch.results"]
