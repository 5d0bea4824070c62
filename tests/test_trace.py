"""What a run leaves behind: records, summaries of tensors and arrays, the JSON trace."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from servers import LoopbackServer, Reply

from jupyter_flow import Flow, RunResult
from jupyter_flow.trace import HISTOGRAM_BINS, summarize, to_jsonable

Serve = Callable[[dict[str, Any]], LoopbackServer]


def test_tensor_summary() -> None:
    import torch

    t = torch.tensor([[1.0, 2.0, 3.0, float("nan")], [float("inf"), -float("inf"), 4.0, 5.0]])
    s = summarize(t)
    assert s is not None
    assert s["kind"] == "tensor" and s["shape"] == [2, 4] and s["dtype"] == "float32" and s["device"] == "cpu"
    assert (s["nan"], s["inf"], s["numel"]) == (1, 2, 8)
    finite = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (s["min"], s["max"]) == (1.0, 5.0)
    assert s["mean"] == pytest.approx(float(finite.mean()))
    assert s["std"] == pytest.approx(float(finite.std()))
    hist = s["histogram"]
    assert hist["bins"] == HISTOGRAM_BINS and len(hist["counts"]) == HISTOGRAM_BINS
    assert sum(hist["counts"]) == 5 and hist["range"] == [1.0, 5.0]
    assert hist["counts"][0] == 1 and hist["counts"][-1] == 1


def test_integer_and_empty_tensors() -> None:
    import torch

    s = summarize(torch.arange(10, dtype=torch.int64))
    assert s is not None and s["dtype"] == "int64" and (s["min"], s["max"], s["mean"]) == (0.0, 9.0, 4.5)
    empty = summarize(torch.empty(0, 3))
    assert empty is not None and empty["shape"] == [0, 3] and empty["numel"] == 0 and "mean" not in empty


def test_ndarray_summary() -> None:
    a = np.array([[0.5, np.nan], [np.inf, 2.5]], dtype=np.float64)
    s = summarize(a)
    assert s is not None
    assert s["kind"] == "ndarray" and s["shape"] == [2, 2] and s["dtype"] == "float64" and s["device"] == "cpu"
    assert (s["nan"], s["inf"]) == (1, 1)
    assert (s["min"], s["max"], s["mean"]) == (0.5, 2.5, 1.5)
    assert s["std"] == pytest.approx(float(np.std([0.5, 2.5], ddof=1)))
    assert sum(s["histogram"]["counts"]) == 2


def test_plain_values_have_no_summary() -> None:
    assert summarize([1.0, 2.0]) is None and summarize("text") is None and summarize({"a": 1}) is None


def test_to_json_never_dumps_tensors() -> None:
    import torch

    big = torch.randn(300, 400)
    value = {"hidden": big, "nested": [np.ones((50, 50)), {"t": big[0]}], "label": "x", "score": float("nan")}
    out = to_jsonable(value)
    text = json.dumps(out)
    assert len(text) < 5_000  # 120 000 floats would be megabytes
    assert out["hidden"]["__summary__"]["shape"] == [300, 400]
    assert out["nested"][0]["__summary__"]["kind"] == "ndarray"
    assert out["nested"][1]["t"]["__summary__"]["shape"] == [400]
    assert out["label"] == "x" and out["score"] == "nan"
    assert value["hidden"] is big  # the live object is untouched


def test_long_text_bytes_and_other_objects_are_kept_small_in_a_trace_and_the_summary_says_so() -> None:
    out = to_jsonable({"text": "a" * 50_000, "blob": b"\x00" * 1000, "items": list(range(5000)), "path": Path("/x"), "obj": object()})
    text = out["text"]["__summary__"]
    assert text["kind"] == "text" and text["truncated"] is True and text["length"] == 50_000 and len(text["head"]) == 10_000
    assert out["blob"] == {"__summary__": {"kind": "bytes", "length": 1000}}
    items = out["items"]["__summary__"]
    assert items["kind"] == "list" and items["truncated"] is True and items["length"] == 5000 and len(items["head"]) == 1000
    assert out["path"] == "/x" and "__repr__" in out["obj"]
    json.dumps(out)


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
    assert json.loads(result.to_json())["nodes"][0]["outputs"] == {"x": "inf"}
