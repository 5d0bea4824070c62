"""Batch runs on Ray as their users meet them: a flow with a real model node (a tiny BERT
the test builds) and a real loopback HTTP endpoint, run on a real local Ray cluster and
compared with the local engine item for item; a CLI driver killed with SIGKILL and
resumed; the errors for a missing Ray and an unreachable cluster."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from model_fixtures import make_tiny_bert
from processes import kill_after_results
from servers import LoopbackServer, Reply, Request, free_port

from jupyter_flow import Flow, run_exported
from jupyter_flow.batch import BatchStoppedError, read_results, run_batch
from jupyter_flow.cli import main
from jupyter_flow.raylocal import shutdown_ray

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

from jupyter_flow.batch.ray import gpu_model_nodes, run_batch_ray  # noqa: E402

FLOW = """
name: triage
inputs:
  text: {type: string}
  priority: {type: integer, default: 1}
nodes:
  - id: clauses
    type: transformers
    config: {model: MODEL, task: text-classification, text: "{{text}}", device: auto,
             batch: {max_size: 16, max_wait_ms: 5}}
  - id: escalate
    type: http
    config: {endpoint: "ENDPOINT", input_mapping: {text: "{{text}}", label: "{{clauses.output.label}}",
             priority: "{{priority}}"}}
edges:
  - {from: start, to: clauses}
  - {from: clauses, to: escalate}
"""

WORDS = ["the", "customer", "shall", "pay", "invoice", "within", "thirty", "days", "terminate", "notice",
         "liability", "risk", "fee", "supplier", "warranty"]


def review(req: Request) -> Reply:
    body = req.body or {}
    text = str(body.get("text", ""))
    if "FAIL500" in text:
        return Reply(500, {"error": "the review model crashed"})
    delay = 0.05 if "slow" in text else 0.0
    return Reply(200, {"level": "high" if "risk" in text else "low", "label": body.get("label"),
                       "priority": body.get("priority"), "words": len(text.split())}, delay_s=delay)


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """One local Ray cluster for the module (starting one takes seconds); its address lets
    CLI subprocesses join it as drivers of their own."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 1024**2, log_to_driver=False,
             configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        shutdown_ray()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[LoopbackServer]:
    # Served on 127.0.0.1: the actors are other processes on this machine, so they reach it too.
    with LoopbackServer({"/review": review}) as server:
        yield server


@pytest.fixture(scope="module")
def flow_path(tmp_path_factory: pytest.TempPathFactory, endpoint: LoopbackServer) -> Path:
    root = tmp_path_factory.mktemp("ray-flow")
    model = make_tiny_bert(root / "clause-bert", labels=["payment", "other"], words=WORDS)
    path = root / "triage.flow.yaml"
    path.write_text(FLOW.replace("MODEL", str(model)).replace("ENDPOINT", f"{endpoint.url}/review"), encoding="utf-8")
    return path


def write_items(path: Path, count: int, *, slow: bool = False) -> list[str]:
    """`count` JSONL items: mostly good, every 37th failing at the endpoint, every 53rd with an
    input the flow does not take; half with an `id`, half named by line number."""
    ids = []
    with open(path, "w", encoding="utf-8") as fh:
        for n in range(count):
            words = [WORDS[(n * 7 + k * 3) % len(WORDS)] for k in range(3 + n % 9)]
            item: dict[str, Any] = {"text": " ".join(words) + f" n{n}" + (" slow" if slow else "")}
            if n % 37 == 5:
                item["text"] += " FAIL500"
            if n % 53 == 7:
                item["colour"] = "blue"
            if n % 4:
                item["priority"] = n % 3
            if n % 2:
                item["id"] = f"doc-{n:04d}"
            ids.append(item.get("id", f"line-{n + 1}"))
            fh.write(json.dumps(item) + "\n")
    return ids


def same(a: Any, b: Any) -> bool:
    """Equal, floats up to rounding (a model's scores in batches of other sizes)."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def test_a_ray_batch_gives_the_local_results_item_for_item(cluster: str, flow_path: Path, endpoint: LoopbackServer,
                                                          tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    ids = write_items(items, 300)
    flow = Flow.load(flow_path)
    assert gpu_model_nodes(flow) == ["clauses"] and gpu_model_nodes(flow, {"device": "cpu"}) == []

    local = run_batch(flow, items, tmp_path / "local", concurrency=8, progress=False)
    served = len(endpoint.requests)
    on_ray = run_batch_ray(Flow.load(flow_path), items, tmp_path / "ray", replicas=2, concurrency=8, progress=False)

    assert len(endpoint.requests) - served == local.ok + sum(1 for f in local.failures if f["node"] == "escalate")
    mine, theirs = ({r["id"]: r for r in read_results(tmp_path / d)} for d in ("local", "ray"))
    assert sorted(mine) == sorted(theirs) == sorted(ids)
    assert len(read_results(tmp_path / "ray")) == 300  # each item once
    for item_id, rec in mine.items():
        other = theirs[item_id]
        for key in ("status", "error", "inputs", "source", "trace"):
            assert other[key] == rec[key], (item_id, key)
        assert same(other["outputs"], rec["outputs"]), item_id
        assert {n: v["status"] for n, v in other["nodes"].items()} == {n: v["status"] for n, v in rec["nodes"].items()}
        mine_trace = json.loads((tmp_path / "local" / rec["trace"]).read_text(encoding="utf-8"))
        ray_trace = json.loads((tmp_path / "ray" / other["trace"]).read_text(encoding="utf-8"))
        assert ray_trace.get("status") == mine_trace.get("status")
        assert [n["node"] for n in ray_trace.get("nodes", [])] == [n["node"] for n in mine_trace.get("nodes", [])]
    assert (on_ray.total, on_ray.ok, on_ray.failed, on_ray.pending) == (local.total, local.ok, local.failed, 0)
    assert on_ray.failed == sum(1 for n in range(300) if n % 37 == 5 or n % 53 == 7)
    assert {f["node"] for f in on_ray.failures} == {"escalate", None}
    # Inside each replica the items of a batch run concurrently, so the model node gathers them.
    sizes = [n.get("extra", {}).get("batch_size", 1) for r in theirs.values() if r["status"] == "ok"
             for n in json.loads((tmp_path / "ray" / r["trace"]).read_text(encoding="utf-8"))["nodes"]
             if n["node"] == "clauses"]
    assert max(sizes) > 1


def test_fail_fast_stops_a_ray_batch_at_the_first_failed_item(cluster: str, flow_path: Path, tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    write_items(items, 80)  # doc-0005 fails at the endpoint, doc-0007 at its inputs
    with pytest.raises(BatchStoppedError) as info:
        run_batch_ray(Flow.load(flow_path), items, tmp_path / "out", replicas=1, concurrency=4, fail_fast=True,
                      progress=False)
    message = str(info.value)
    assert message.startswith("batch stopped (fail-fast): item 'doc-000")
    assert "at node 'escalate': " in message or "at its inputs: " in message
    summary = info.value.summary
    assert summary.failed == 1 and summary.pending > 0
    assert summary.ok + summary.failed == len(read_results(tmp_path / "out"))


def test_an_exported_notebooks_entry_point_runs_its_batch_on_ray(cluster: str, flow_path: Path, tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    ids = write_items(items, 12)
    summary = run_exported(Flow.load(flow_path).to_dict(), inputs_path=str(items), output_dir=str(tmp_path / "out"),
                           inputs={"priority": 2}, engine="ray", flow_dir=str(flow_path.parent))
    assert (summary.total, summary.pending) == (12, 0)
    by_id = {r["id"]: r for r in read_results(tmp_path / "out")}
    assert sorted(by_id) == sorted(ids)
    # `inputs` goes to every item; an item's own value wins
    assert (by_id["line-1"]["inputs"]["priority"], by_id["doc-0001"]["inputs"]["priority"]) == (2, 1)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "jupyter_flow.cli", "batch", *args]


def test_a_killed_ray_batch_resumes_with_every_item_exactly_once(cluster: str, flow_path: Path,
                                                                endpoint: LoopbackServer, tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    ids = write_items(items, 160, slow=True)
    out = tmp_path / "out"
    cmd = cli(str(flow_path), "--inputs", str(items), "--out", str(out), "--engine", "ray", "--address", cluster,
              "-c", "2", "--quiet")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = out / "results.jsonl"
    kill_after_results(proc, results, 10, timeout_s=120)
    before = read_results(out)
    assert 10 <= len(before) < 160, "the kill came too late to test anything"
    served = len(endpoint.requests)

    resumed = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 1, resumed.stderr  # some items fail on purpose: the scheduler hears it
    summary_line = next(line for line in resumed.stdout.splitlines() if line.startswith("160 items: "))
    assert f"({160 - len(before)} run now, {len(before)} already done" in summary_line
    assert "batch FAILED" in resumed.stdout

    recorded = [json.loads(line)["id"] for line in results.read_text(encoding="utf-8").splitlines()]
    assert sorted(recorded) == sorted(ids)  # every item, none twice, no torn line
    again = {r.body["text"] for r in endpoint.requests[served:]}
    assert again, "the resumed run called the endpoint"
    assert not again & {r["inputs"]["text"] for r in before}  # what was recorded before the kill did not run again
    assert len(list((out / "traces").glob("*.json"))) == 160


def test_without_ray_the_cli_names_the_extra_to_install(flow_path: Path, tmp_path: Path) -> None:
    (tmp_path / "items.jsonl").write_text('{"text": "pay the fee"}\n', encoding="utf-8")
    blocked = "import sys; sys.modules['ray'] = None; from jupyter_flow.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", blocked, "batch", str(flow_path), "--inputs",
                           str(tmp_path / "items.jsonl"), "--out", str(tmp_path / "out"), "--engine", "ray"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "pip install 'jupyter-flow[ray]'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_an_unreachable_cluster_is_named_in_the_error(flow_path: Path, tmp_path: Path) -> None:
    (tmp_path / "items.jsonl").write_text('{"text": "pay the fee"}\n', encoding="utf-8")
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    t0 = time.monotonic()
    proc = subprocess.run(cli(str(flow_path), "--inputs", str(tmp_path / "items.jsonl"), "--out", str(tmp_path / "out"),
                              "--engine", "ray", "--address", address),
                          capture_output=True, text=True, timeout=60, env={**os.environ, "RAY_ADDRESS": ""})
    assert proc.returncode == 1, proc.stderr
    assert f"cannot reach the Ray cluster at '{address}'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - t0 < 30  # a clear answer, not minutes of retries


def test_address_without_the_ray_engine_is_a_usage_error(flow_path: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "items.jsonl").write_text('{"text": "pay the fee"}\n', encoding="utf-8")
    code = main(["batch", str(flow_path), "--inputs", str(tmp_path / "items.jsonl"), "--out", str(tmp_path / "o"),
                 "--address", "127.0.0.1:6379"])
    assert code == 2
    assert "--address is for --engine ray" in capsys.readouterr().err


def test_ray_is_shut_down_only_after_the_threads_that_call_into_it_end() -> None:
    """A deployment left running past its deadline polls Serve from a thread of its own; a
    call into Ray after `ray.shutdown()` makes Ray end the process (exit 1, the rest of a
    test run lost), so the shutdown waits for such threads first."""
    import threading

    from jupyter_flow.raylocal import calls_ray

    done = threading.Event()
    caller = threading.Thread(target=lambda: (time.sleep(1.0), done.set()), name="deploy late", daemon=True)
    calls_ray(caller)
    caller.start()
    shutdown_ray()
    assert done.is_set() and not caller.is_alive()
