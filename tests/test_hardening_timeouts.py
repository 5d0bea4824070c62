"""Work that holds the event loop past its deadline is reported as having run past it.

A python function with `blocking: false` (or async code that blocks) runs on the event
loop: its node's `timeout_s`, or the flow's, cannot fire until it returns. It used to
come back as a success however long it took; now the node (or the flow) is reported as
having run past its time, in the run's result, in `jupyter-flow run`'s exit code and in a
batch's results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_flow import Flow
from jupyter_flow.batch import read_results, run_batch

CODE = """\
import time


def hold(seconds):
    time.sleep(seconds)
    return {"slept": seconds}


async def hold_async(seconds):
    time.sleep(seconds)  # blocking work in async code: the loop is held too
    return {"slept": seconds}
"""


def node_flow(tmp: Path, function: str, seconds: float, *, blocking: bool | None = False) -> Path:
    config = {"function": f"slow:{function}", "input_mapping": {"seconds": seconds}}
    if blocking is not None:
        config["blocking"] = blocking
    path = tmp / "hold.flow.json"
    path.write_text(json.dumps({"name": "hold", "nodes": [{"id": "hold", "type": "python", "config": config,
                                                          "timeout_s": 0.5}]}), encoding="utf-8")
    return path


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    (tmp_path / "slow.py").write_text(CODE, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("function", ["hold", "hold_async"])
def test_a_node_holding_the_loop_past_its_timeout_is_a_timeout(tmp: Path, function: str) -> None:
    result = Flow.load(node_flow(tmp, function, 1.5)).run(raise_on_error=False)
    assert not result.ok
    record = result.records["hold"]
    assert record.status == "error" and record.error is not None
    assert record.error.type == "NodeTimeoutError"
    assert "past timeout_s=0.5" in record.error.message and "event loop" in record.error.message
    assert record.attempts == 1  # holding the loop again would not help


def test_a_loop_node_within_its_time_is_still_fine(tmp: Path) -> None:
    result = Flow.load(node_flow(tmp, "hold", 0.05)).run()
    assert result.ok and result.outputs["hold"] == {"slept": 0.05}


def test_jupyter_flow_run_exits_1_naming_the_node(tmp: Path) -> None:
    exe = Path(sys.executable).with_name("jupyter-flow")
    done = subprocess.run([str(exe), "run", str(node_flow(tmp, "hold", 1.5))], capture_output=True, text=True,
                          timeout=120, cwd=tmp)
    assert done.returncode == 1, done.stderr
    assert "hold" in done.stderr and "past timeout_s=0.5" in done.stderr and "Traceback" not in done.stderr


def test_the_flows_deadline_held_past_by_a_loop_node_is_a_timeout(tmp: Path) -> None:
    path = tmp / "flow-deadline.flow.json"
    path.write_text(json.dumps({
        "name": "hold", "timeout_s": 0.5,
        "nodes": [{"id": "hold", "type": "python",
                   "config": {"function": "slow:hold", "blocking": False, "input_mapping": {"seconds": 1.5}}}],
    }), encoding="utf-8")
    result = Flow.load(path).run(raise_on_error=False)
    assert result.status == "timeout" and not result.ok
    assert result.error is not None and "ran past its timeout_s=0.5" in result.error


def test_a_batch_records_the_overrun_as_a_failure(tmp: Path) -> None:
    summary = run_batch(Flow.load(node_flow(tmp, "hold", 1.5)), [{"id": "a"}], tmp / "out", progress=False)
    assert summary.failed == 1 and not summary.succeeded
    (record,) = read_results(tmp / "out")
    assert record["status"] == "error" and record["error"]["node"] == "hold"
    assert record["error"]["type"] == "NodeTimeoutError"
