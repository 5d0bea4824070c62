"""`jupyter-flow validate|run` as a user types them, against real loopback servers; and the
seed flow run end to end from the CLI and from Python."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from servers import LoopbackServer, Reply, Request

from jupyter_flow import Flow

Serve = Callable[[dict[str, Any]], LoopbackServer]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("jupyter-flow")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def _cleaner(req: Request) -> Reply:
    return Reply(200, {"cleaned_text": " ".join(req.body["raw_text"].split()).lower(), "chars_removed": 3})


def _intent(req: Request) -> Reply:
    return Reply(200, {"intent": "refund" if "refund" in req.body["text"] else "other", "confidence": 0.93})


def seed_copy(seed_flow_path: Path, serve: Serve, tmp_path: Path) -> tuple[Path, LoopbackServer, LoopbackServer]:
    """The seed flow as it is, with only its two endpoints pointed at loopback servers."""
    cleaner, intent = serve({"/clean": _cleaner}), serve({"/predict": _intent})
    text = seed_flow_path.read_text()
    text = text.replace("http://text-cleaner:5000", cleaner.url).replace("http://intent-model:5000", intent.url)
    path = tmp_path / "seed_flow.json"
    path.write_text(text)
    return path, cleaner, intent


def test_seed_flow_runs_from_the_cli(seed_flow_path: Path, serve: Serve, tmp_path: Path) -> None:
    path, cleaner, intent = seed_copy(seed_flow_path, serve, tmp_path)
    trace = tmp_path / "trace.json"
    proc = cli("run", str(path), "--input", "user_input=  I want a   REFUND  ", "--trace", str(trace))
    assert proc.returncode == 0, proc.stderr
    assert [r.body for r in cleaner.requests] == [{"raw_text": "  I want a   REFUND  "}]
    # the second service receives the first one's cleaned_text
    assert [r.body for r in intent.requests] == [{"text": "i want a refund"}]
    assert intent.requests[0].method == "POST"
    outputs = json.loads(proc.stdout)
    assert outputs == {
        "cleaner": {"cleaned_text": "i want a refund", "chars_removed": 3},
        "intent": {"intent": "refund", "confidence": 0.93},
    }
    data = json.loads(trace.read_text())
    assert data["status"] == "ok" and [n["node"] for n in data["nodes"]] == ["cleaner", "intent"]
    assert data["nodes"][1]["inputs"]["input_mapping"] == {"text": "i want a refund"}


def test_seed_flow_runs_from_python(seed_flow_path: Path, serve: Serve, tmp_path: Path) -> None:
    path, cleaner, intent = seed_copy(seed_flow_path, serve, tmp_path)
    result = Flow.load(path).run({"user_input": "Where is my ORDER?"})
    assert [r.body for r in intent.requests] == [{"text": "where is my order?"}]
    assert result.outputs["intent"] == {"intent": "other", "confidence": 0.93}
    assert result.outputs["cleaner"]["cleaned_text"] == "where is my order?"


def test_inputs_from_a_json_file_and_typed_inputs(serve: Serve, tmp_path: Path) -> None:
    server = serve({"/echo": lambda req: Reply(200, {"got": req.body})})
    flow = tmp_path / "typed.flow.yaml"
    flow.write_text(
        "inputs:\n"
        "  n: {type: integer}\n"
        "  flag: {type: boolean, default: false}\n"
        "  tags: {type: list, default: []}\n"
        "  text: {type: string}\n"
        "nodes:\n"
        f"  - {{id: call, type: http, config: {{endpoint: '{server.url}/echo', "
        "input_mapping: {n: '{{ n + 1 }}', flag: '{{ flag }}', tags: '{{ tags }}', text: '{{ text }}'}}}\n"
    )
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps({"text": "from file", "tags": ["a"]}))
    proc = cli("run", str(flow), "--inputs", str(inputs), "-i", "n=41", "--input", "flag=yes", "-i", "tags=[\"x\", \"y\"]")
    assert proc.returncode == 0, proc.stderr
    assert server.requests[0].body == {"n": 42, "flag": True, "tags": ["x", "y"], "text": "from file"}
    assert json.loads(proc.stdout) == {"call": {"got": {"n": 42, "flag": True, "tags": ["x", "y"], "text": "from file"}}}


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    flow = tmp_path / "f.flow.yaml"
    flow.write_text("inputs: {n: {type: integer}}\nnodes:\n  - {id: t, type: template, config: {template: '{{ n }}'}}\n")
    cases = [
        (["run", str(flow), "--input", "novalue"], "expected KEY=VALUE"),
        (["run", str(flow), "--inputs", str(tmp_path / "missing.json")], "no such file"),
        (["run", str(flow), "-i", "n=seven"], "inputs.n"),
        (["run", str(flow), "-i", "n=1", "-i", "m=2"], "inputs.m"),
        (["run", str(flow)], "missing required input"),
        (["run"], "flow"),
        (["frobnicate"], "invalid choice"),
        (["validate", str(tmp_path / "nope.flow.yaml")], "no such file"),
    ]
    for args, expected in cases:
        proc = cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert expected in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stdout == ""
    (tmp_path / "bad.json").write_text("[1, 2")
    proc = cli("run", str(flow), "--inputs", str(tmp_path / "bad.json"))
    assert proc.returncode == 2 and "line 1" in proc.stderr and "column" in proc.stderr


def test_missing_template_input_exits_2(seed_flow_path: Path) -> None:
    proc = cli("run", str(seed_flow_path))
    assert proc.returncode == 2 and "inputs.user_input" in proc.stderr and "Traceback" not in proc.stderr


def test_validate_ok_and_version(seed_flow_path: Path) -> None:
    proc = cli("validate", str(seed_flow_path))
    assert proc.returncode == 0 and "ok (2 nodes, 2 edges)" in proc.stdout
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("jupyter-flow ")


def test_failed_run_exits_1_and_still_writes_the_trace(serve: Serve, tmp_path: Path) -> None:
    server = serve({"/ok": lambda req: Reply(200, {"a": 1}), "/boom": lambda req: Reply(503, "overloaded")})
    flow = tmp_path / "f.flow.json"
    flow.write_text(json.dumps({
        "nodes": [{"id": "first", "config": {"endpoint": f"{server.url}/ok"}},
                  {"id": "second", "config": {"endpoint": f"{server.url}/boom"}}],
        "edges": [{"from": "first", "to": "second"}],
    }))
    trace = tmp_path / "trace.json"
    proc = cli("run", str(flow), "--trace", str(trace))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "node 'second'" in proc.stderr and "503" in proc.stderr and "overloaded" in proc.stderr
    assert proc.stdout == ""
    data = json.loads(trace.read_text())
    assert data["status"] == "error"
    nodes = {n["node"]: n for n in data["nodes"]}
    assert nodes["first"]["status"] == "ok" and nodes["second"]["status"] == "error"
    assert "Traceback" in nodes["second"]["error"]["traceback"]  # kept in the trace, not on the terminal


def test_unusable_output_paths_are_usage_errors_before_anything_runs(tmp_path: Path) -> None:
    flow = tmp_path / "one.flow.yaml"
    flow.write_text("nodes:\n  - {id: a, type: template, config: {template: hi}}\n")
    missing = cli("run", str(flow), "--trace", str(tmp_path / "no" / "such" / "trace.json"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    folder = cli("export", str(flow), "-o", str(tmp_path))
    assert folder.returncode == 2 and str(tmp_path) in folder.stderr and "Traceback" not in folder.stderr
    afile = tmp_path / "afile"
    afile.write_text("")
    items = tmp_path / "items.jsonl"
    items.write_text("{}\n")
    batch = cli("batch", str(flow), "--inputs", str(items), "--out", str(afile))
    assert batch.returncode == 2 and "afile" in batch.stderr and "Traceback" not in batch.stderr


def test_run_captures_attentions_and_saves_tensors_as_safetensors(tmp_path: Path) -> None:
    from model_fixtures import make_tiny_bert
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    model = make_tiny_bert(tmp_path / "bert", layers=2, heads=2)
    flow = tmp_path / "clauses.flow.yaml"
    flow.write_text(
        "inputs: {text: {type: json}}\n"
        "nodes:\n"
        "  - id: clauses\n"
        "    type: transformers\n"
        f"    config: {{model: {model}, task: text-classification, text: '{{{{text}}}}', device: cpu}}\n"
    )
    texts = ["the fee is due", "the supplier shall pay each invoice within thirty days"]
    out = tmp_path / "tensors"
    done = cli("run", str(flow), "--input", f"text={json.dumps(texts)}", "--capture", "clauses:attentions",
               "--capture", "clauses:bert.pooler", "--save-tensors", str(out))
    assert done.returncode == 0, done.stderr
    tok = AutoTokenizer.from_pretrained(model)
    want = [tok.convert_ids_to_tokens(tok(t)["input_ids"]) for t in texts]

    index = json.loads((out / "index.json").read_text())
    assert [(f["node"], f["name"], f["file"]) for f in index["files"]] == [
        ("clauses", "attentions", "clauses.attentions.safetensors"),
        ("clauses", "bert.pooler", "clauses.bert.pooler.safetensors"),
    ]
    assert index["files"][0]["tokens"] == want and index["missing"] == []
    attentions = load_file(str(out / "clauses.attentions.safetensors"))
    assert {k: tuple(v.shape) for k, v in attentions.items()} == {
        f"input_{i}": (2, 2, len(w), len(w)) for i, w in enumerate(want)}  # one per input: the lengths differ
    assert index["files"][0]["tensors"]["input_1"]["shape"] == [2, 2, len(want[1]), len(want[1])]
    pooled = load_file(str(out / "clauses.bert.pooler.safetensors"))
    assert tuple(pooled["tensor"].shape) == (2, 32)

    # without --capture, --save-tensors writes what the flow file captures (nothing here)
    plain = cli("run", str(flow), "--input", f"text={json.dumps(texts)}", "--save-tensors", str(tmp_path / "none"))
    assert plain.returncode == 0 and json.loads((tmp_path / "none" / "index.json").read_text())["files"] == []


def test_capture_mistakes_are_usage_errors_naming_the_node(tmp_path: Path) -> None:
    flow = tmp_path / "one.flow.yaml"
    flow.write_text("nodes:\n  - {id: a, type: template, config: {template: hi}}\n")
    for args, words in [
        (["--capture", "a"], ["NODE:NAME"]),
        (["--capture", "b:attentions"], ["no node 'b'", "nodes: a"]),
        (["--capture", "a:attentions"], ["node 'a'", "captures no tensors"]),
    ]:
        done = cli("run", str(flow), *args)
        assert done.returncode == 2, (args, done.stderr)
        assert all(w in done.stderr for w in words) and "Traceback" not in done.stderr, (args, done.stderr)
    afile = tmp_path / "afile"
    afile.write_text("")
    done = cli("run", str(flow), "--save-tensors", str(afile))
    assert done.returncode == 2 and "is a file" in done.stderr


def test_a_trace_or_output_that_cannot_be_written_after_the_run_prints_the_outputs_and_exits_1(tmp_path: Path) -> None:
    # /dev/full takes the open and fails the write: the run is over by then, its outputs must not be lost
    flow = tmp_path / "one.flow.yaml"
    flow.write_text("nodes:\n  - {id: a, type: template, config: {template: hello}}\n")
    for option in ("--trace", "--output"):
        proc = cli("run", str(flow), option, "/dev/full")
        assert proc.returncode == 1, (option, proc.stdout, proc.stderr)
        assert json.loads(proc.stdout) == {"a": {"text": "hello"}}, option
        assert f"{option} /dev/full: cannot write" in proc.stderr and "the run itself succeeded" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_a_failed_run_whose_trace_cannot_be_written_says_both_and_exits_1(tmp_path: Path) -> None:
    flow = tmp_path / "f.flow.json"
    flow.write_text(json.dumps({"nodes": [{"id": "call", "config": {"endpoint": "http://127.0.0.1:9/none"}}]}))
    proc = cli("run", str(flow), "--trace", "/dev/full")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "--trace /dev/full: cannot write" in proc.stderr and "node 'call'" in proc.stderr, proc.stderr
