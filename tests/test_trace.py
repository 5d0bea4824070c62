"""What a run leaves behind: records and the JSON trace (tensors and arrays summarized;
the summaries themselves are `jupyter_flow.values`' subject, tested in test_values)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from servers import LoopbackServer, Reply

from jupyter_flow import Flow, RunResult
from jupyter_flow.values import SUMMARY, encode

Serve = Callable[[dict[str, Any]], LoopbackServer]


def test_to_json_never_dumps_tensors() -> None:
    import torch

    big = torch.randn(300, 400)
    value = {"hidden": big, "nested": [np.ones((50, 50)), {"t": big[0]}], "label": "x", "score": float("nan")}
    out = encode(value, SUMMARY).data
    text = json.dumps(out)
    assert len(text) < 5_000  # 120 000 floats would be megabytes
    assert out["hidden"]["__summary__"]["shape"] == [300, 400]
    assert out["nested"][0]["__summary__"]["kind"] == "ndarray"
    assert out["nested"][1]["t"]["__summary__"]["shape"] == [400]
    assert out["label"] == "x" and out["score"] == "NaN"
    assert value["hidden"] is big  # the live object is untouched


def test_run_result_fields_through_a_real_run(serve: Serve, tmp_path: Path) -> None:
    import torch

    server = serve({"/embed": lambda req: Reply(200, {"vec": [float(len(req.body["text"]))] * 3}),
                    "/boom": lambda req: Reply(500, {"error": "model crashed"})})

    def to_tensor(vec: list[float]) -> dict[str, Any]:
        return {"tensor": torch.tensor(vec).repeat(100, 1), "array": np.array(vec)}

    flow = Flow.from_dict(
        {
            "name": "trace-demo",
            "inputs": {"text": {"type": "string"}},
            "nodes": [
                {"id": "embed", "type": "http", "config": {"endpoint": f"{server.url}/embed", "input_mapping": {"text": "{{ text }}"}}},
                {"id": "tensor", "type": "python", "config": {"function": "to_tensor", "input_mapping": {"vec": "{{ embed.output.vec }}"}}},
                {"id": "broken", "type": "http", "on_error": "continue", "config": {"endpoint": f"{server.url}/boom"}},
                {"id": "skipped", "type": "template", "config": {"template": "{{ broken.output }}"}},
            ],
            "edges": [{"from": "embed", "to": "tensor"}, {"from": "broken", "to": "skipped"}],
        },
        functions={"to_tensor": to_tensor},
    )
    result = flow.run({"text": "abcd"})
    assert isinstance(result, RunResult)
    assert result.flow == "trace-demo" and result.status == "ok" and result.ok and result.error is None
    assert len(result.run_id) >= 8 and result.inputs == {"text": "abcd"}
    assert result.started_at is not None and result.duration_s is not None and result.duration_s > 0

    # live objects stay reachable from Python
    tensor = result.outputs["tensor"]["tensor"]
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (100, 3)
    assert set(result.outputs) == {"embed", "tensor"}

    embed = result["embed"]
    assert embed.status == "ok" and embed.attempts == 1 and embed.type == "http"
    assert embed.inputs["input_mapping"] == {"text": "abcd"}  # resolved, not the template
    assert embed.outputs == {"vec": [4.0, 4.0, 4.0]}
    assert embed.started_at is not None and embed.duration_s is not None and embed.ended_at is not None
    assert embed.extra["http_status"] == 200

    broken = result["broken"]
    assert broken.status == "error" and broken.error is not None
    assert broken.error.type == "RemoteError" and "500" in broken.error.message and "model crashed" in broken.error.message
    assert "Traceback" in broken.error.traceback
    assert result["skipped"].status == "skipped" and result["skipped"].started_at is None

    # trace order: by start time, never-started last
    order = [r.node for r in result.trace]
    assert order[-1] == "skipped" and order.index("embed") < order.index("tensor")

    path = tmp_path / "trace.json"
    text = result.to_json(path)
    assert json.loads(path.read_text()) == json.loads(text)
    data = json.loads(text)
    assert data["flow"] == "trace-demo" and data["status"] == "ok" and data["run_id"] == result.run_id
    nodes = {n["node"]: n for n in data["nodes"]}
    summary = nodes["tensor"]["outputs"]["tensor"]["__summary__"]
    assert summary["shape"] == [100, 3] and summary["mean"] == 4.0 and summary["std"] == 0.0
    assert nodes["tensor"]["outputs"]["array"]["__summary__"]["kind"] == "ndarray"
    assert nodes["broken"]["error"]["type"] == "RemoteError" and "Traceback" in nodes["broken"]["error"]["traceback"]
    assert nodes["embed"]["started_at"].endswith("+00:00")
    for key in ("status", "inputs", "outputs", "started_at", "duration_s", "attempts", "error", "cached"):
        assert key in nodes["embed"]
    assert text.count("4.0") < 50  # 300 tensor values were not written out
    assert "| embed | ok |" in result._repr_markdown_()


def test_non_finite_floats_stay_valid_json() -> None:
    flow = Flow.from_dict({"nodes": [{"id": "p", "type": "python", "config": {"function": "textwrap:dedent", "input_mapping": {"text": "  x"}}}]})
    result = flow.run()
    assert result.outputs["p"] == {"result": "x"}
    result["p"].outputs = {"x": math.inf}
    assert json.loads(result.to_json())["nodes"][0]["outputs"] == {"x": "Infinity"}
