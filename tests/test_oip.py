"""`jupyter-flow serve model` speaks the Open Inference Protocol: the official Triton
client (`tritonclient.http`) checks health, readiness and metadata and infers text and
tensors against it, with JSON and binary tensors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from model_fixtures import model_dir, tiny_bert, torchscript_model  # noqa: F401  (session fixtures)
from servers import AsgiServer
from test_serve import metric

from jupyter_flow.serve.app import model_app

tc = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402


def bert_service(model: Path) -> dict:
    return {"name": "clause-bert", "type": "transformers",
            "config": {"model": str(model), "task": "text-classification", "text": "{{ text }}",
                       "batch": {"max_size": 16, "max_wait_ms": 20}},
            "inputs": {"text": {"type": "text"}}}


@pytest.fixture
def bert(tiny_bert: Path) -> Iterator[AsgiServer]:  # noqa: F811
    with AsgiServer(model_app(bert_service(tiny_bert))) as srv:
        yield srv


def triton(srv: AsgiServer) -> tc.InferenceServerClient:
    return tc.InferenceServerClient(url=f"127.0.0.1:{srv.port}", network_timeout=60)


def text_input(texts: list[str], *, binary: bool) -> tc.InferInput:
    given = tc.InferInput("text", [len(texts)], "BYTES")
    given.set_data_from_numpy(np.array(texts, dtype=object), binary_data=binary)
    return given


def test_health_readiness_and_metadata(bert: AsgiServer) -> None:
    client = triton(bert)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("clause-bert")
    assert not client.is_model_ready("other-model")
    meta = client.get_model_metadata("clause-bert")
    assert meta["name"] == "clause-bert"
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert client.get_server_metadata()["name"] == "jupyter-flow"
    client.infer("clause-bert", [text_input(["hello"], binary=False)])
    # once the model answered, its outputs are described too
    outputs = {o["name"]: o for o in client.get_model_metadata("clause-bert")["outputs"]}
    assert outputs["label"]["datatype"] == "BYTES" and outputs["logits"]["datatype"] == "FP32"


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_text_in_json_and_binary_tensors(bert: AsgiServer, binary: bool) -> None:
    client = triton(bert)
    texts = ["The buyer pays within 30 days.", "Either party may terminate."]
    result = client.infer("clause-bert", [text_input(texts, binary=binary)])
    labels = result.as_numpy("label")
    assert labels.shape == (2,) and {x.decode() if isinstance(x, bytes) else x for x in labels} <= {"negative", "positive"}
    assert result.as_numpy("logits").shape == (2, 2) and result.as_numpy("logits").dtype == np.float32
    # the same answer as /predict gives
    predicted = httpx.post(bert.url + "/predict", json={"text": texts}, timeout=60).json()
    assert [p["label"] for p in predicted] == [x.decode() if isinstance(x, bytes) else x for x in labels]
    assert result.as_numpy("score").tolist() == pytest.approx([p["score"] for p in predicted], abs=1e-5)
    # asking for one output gives just that one
    only = client.infer("clause-bert", [text_input(texts[:1], binary=binary)], outputs=[tc.InferRequestedOutput("label", binary_data=False)])
    assert [o["name"] for o in only.get_response()["outputs"]] == ["label"]


def test_infer_a_tensor(torchscript_model: Path) -> None:  # noqa: F811
    import torch

    service = {"name": "mlp", "type": "torch", "config": {"model": str(torchscript_model), "inputs": "{{ x }}", "device": "cpu"},
               "inputs": {"x": {"type": "any"}}}
    x = np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8)
    with AsgiServer(model_app(service)) as srv:
        client = triton(srv)
        for binary in (False, True):
            given = tc.InferInput("x", [2, 8], "FP32")
            given.set_data_from_numpy(x, binary_data=binary)
            out = client.infer("mlp", [given]).as_numpy("output")
            expected = torch.jit.load(str(torchscript_model))(torch.from_numpy(x)).detach().numpy()
            assert out.shape == (2, 3) and np.allclose(out, expected, atol=1e-5)


def test_errors_come_in_the_protocols_format(bert: AsgiServer) -> None:
    client = triton(bert)
    with pytest.raises(InferenceServerException, match="no model 'nope'"):
        client.infer("nope", [text_input(["x"], binary=False)])
    url = bert.url + "/v2/models/clause-bert/infer"
    cases = {
        "shape": {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [3], "data": ["a"]}]},
        "datatype": {"inputs": [{"name": "text", "datatype": "FP32", "shape": [1], "data": [1.0]}]},
        "unknown input": {"inputs": [{"name": "txt", "datatype": "BYTES", "shape": [1], "data": ["a"]}]},
        "not a request": {"text": "a"},
    }
    for case, body in cases.items():
        answer = httpx.post(url, json=body, timeout=60)
        assert answer.status_code == 400, (case, answer.text)
        assert set(answer.json()) == {"error"} and answer.json()["error"], case
    missing = httpx.post(url, json={"inputs": []}, timeout=60)
    assert missing.status_code == 400 and "inputs.text" in missing.json()["error"]
    assert httpx.post(url, content=b"{not json", timeout=60).status_code == 400
    # the service keeps answering
    assert client.infer("clause-bert", [text_input(["fine"], binary=False)]).as_numpy("label").shape == (1,)


def test_concurrent_requests_share_forward_passes(bert: AsgiServer) -> None:
    from tritonclient.http.aio import InferenceServerClient as AsyncClient

    async def many() -> list[str]:
        client = AsyncClient(url=f"127.0.0.1:{bert.port}", conn_limit=64)
        try:
            async def one(i: int) -> str:
                result = await client.infer("clause-bert", [text_input([f"clause number {i} about payment"], binary=False)])
                return str(result.as_numpy("label")[0])

            return list(await asyncio.gather(*(one(i) for i in range(48))))
        finally:
            await client.close()

    assert len(asyncio.run(many())) == 48
    metrics = httpx.get(bert.url + "/metrics", timeout=60).text
    count = metric(metrics, "jupyter_flow_batch_size_count", node="model")
    total = metric(metrics, "jupyter_flow_batch_size_sum", node="model")
    assert count == 48 and total / count > 1.5, total / count  # micro-batched like /predict
    assert metric(metrics, "jupyter_flow_requests_total", route="/v2/infer", status="200") == 48
