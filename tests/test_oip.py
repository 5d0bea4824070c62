"""`jupyter-flow serve model` speaks the Open Inference Protocol: the official Triton
client (`tritonclient.http`) checks health, readiness and metadata and infers text and
tensors against it, with JSON and binary tensors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from model_fixtures import model_dir, tiny_bert, torchscript_model  # noqa: F401  (session fixtures)
from servers import AsgiServer
from test_serve import metric

from jupyter_flow.serve.app import model_app
from jupyter_flow.serve.codec import MAX_DIMS, MAX_VALUES

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


# -- hostile requests and odd answers ------------------------------------------------------
ECHO = {"name": "echo", "type": "template", "config": {"template": "{{ x }}"}, "inputs": {"x": {"type": "any"}}}


@pytest.fixture
def echo() -> Iterator[AsgiServer]:
    with AsgiServer(model_app(ECHO)) as srv:
        yield srv


def strict_json(text: str) -> object:
    """JSON as a strict parser reads it: NaN and Infinity literals are refused."""

    def refuse(name: str) -> object:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_a_shape_asking_for_a_trillion_empty_lists_is_refused_and_the_server_keeps_answering(echo: AsgiServer) -> None:
    # 81 bytes that once made the server build a million lists of a million empty lists
    # on its event loop: nothing else was answered until memory ran out
    body = b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1000000,1000000,0],"data":[]}]}'
    with httpx.Client(base_url=echo.url, timeout=30) as client:
        answer = client.post("/v2/models/echo/infer", content=body)
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert "'x'" in error and f"{MAX_VALUES:,}" in error
        too_many_dims = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1] * (MAX_DIMS + 1), "data": [1.0]}]}
        answer = client.post("/v2/models/echo/infer", json=too_many_dims)
        assert answer.status_code == 400 and f"limit of {MAX_DIMS}" in answer.json()["error"]
        assert client.get("/v2/health/live").json() == {"live": True}
        fine = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 0], "data": []}]}
        assert client.post("/v2/models/echo/infer", json=fine).json()["outputs"][0]["data"] == ["[[], []]"]
        metrics = client.get("/metrics").text
    assert metric(metrics, "jupyter_flow_requests_total", route="/v2/infer", status="400") == 2


def binary_request(header: dict, data: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    return head + data, {"inference-header-content-length": str(len(head)), "content-type": "application/octet-stream"}


def one(datatype: str, shape: list[int], **fields: object) -> dict:
    return {"inputs": [{"name": "x", "datatype": datatype, "shape": shape, **fields}]}


CODEC_CASES = {
    "negative binary_data_size": (binary_request(one("FP32", [1], parameters={"binary_data_size": -4}), b"\0" * 4),
                                  ["'x'", "binary_data_size", "-4"]),
    "binary_data_size given as a list": (binary_request(one("FP32", [1], parameters={"binary_data_size": [4]}), b"\0" * 4),
                                         ["'x'", "binary_data_size", "[4]"]),
    "odd-length BF16 bytes": (binary_request(one("BF16", [2], parameters={"binary_data_size": 5}), b"\0" * 5),
                              ["'x'", "BF16", "5 bytes"]),
    "UINT8 data given as floats": (one("UINT8", [2], data=[1.5, 2.0]), ["'x'", "UINT8", "integers", "1.5"]),
    "INT8 overflow": (one("INT8", [2], data=[1, 300]), ["'x'", "INT8", "-128..127", "300"]),
    "FP16 overflow": (one("FP16", [1], data=[1e6]), ["'x'", "FP16", "too large"]),
    "BOOL given as a number": (one("BOOL", [1], data=[2]), ["'x'", "BOOL", "true or false"]),
    "an input given twice": ({"inputs": one("FP32", [1], data=[1.0])["inputs"] * 2}, ["'x'", "twice"]),
    "an output asked for twice": ({**one("FP32", [1], data=[1.0]), "outputs": [{"name": "text"}, {"name": "text"}]},
                                  ["'text'", "twice"]),
}


@pytest.mark.parametrize("case", list(CODEC_CASES))
def test_what_the_codec_cannot_take_as_it_is_gets_400_naming_the_tensor(echo: AsgiServer, case: str) -> None:
    request, said = CODEC_CASES[case]
    url = echo.url + "/v2/models/echo/infer"
    if isinstance(request, tuple):
        answer = httpx.post(url, content=request[0], headers=request[1], timeout=30)
    else:
        answer = httpx.post(url, json=request, timeout=30)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert all(word in error for word in said), error
    # nothing was cut or coerced on the way, and the service keeps answering
    assert httpx.post(url, json=one("INT8", [2], data=[1, 127]), timeout=30).json()["outputs"][0]["data"] == ["[1, 127]"]


NAN_MODEL = """\
import math

import numpy


def make(x):
    if x < 0:  # an empty array whose nested lists would be a million lists of a million lists
        return {"y": numpy.zeros((1_000_000, 1_000_000, 0), dtype=numpy.float32)}
    return {"y": math.nan if x > 0 else 1.0, "z": [1.0, math.inf, -math.inf]}
"""


@pytest.fixture
def nan_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AsgiServer]:
    (tmp_path / "nanmodel.py").write_text(NAN_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    service = {"name": "nan", "type": "python", "config": {"function": "nanmodel:make", "input_mapping": {"x": "{{ x }}"}},
               "inputs": {"x": {"type": "number"}}}
    with AsgiServer(model_app(service)) as srv:
        yield srv


def test_a_nan_answer_is_strict_json_with_200_and_metrics_count_what_was_sent(nan_model: AsgiServer) -> None:
    with httpx.Client(base_url=nan_model.url, timeout=30) as client:
        v2 = client.post("/v2/models/nan/infer", json={"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [1.0]}]})
        assert v2.status_code == 200 and v2.headers["content-type"] == "application/json"
        outputs = {o["name"]: o for o in strict_json(v2.text)["outputs"]}  # type: ignore[index]
        assert outputs["y"]["data"] == ["NaN"] and outputs["z"]["data"] == [1.0, "Infinity", "-Infinity"]
        predicted = client.post("/predict", json={"x": 1.0})
        assert predicted.status_code == 200
        assert strict_json(predicted.text) == json.loads(predicted.text) == {"y": "NaN", "z": [1.0, "Infinity", "-Infinity"]}
        metrics = client.get("/metrics").text
    for route in ("/v2/infer", "/predict"):
        assert metric(metrics, "jupyter_flow_requests_total", route=route, status="200") == 1
        assert metric(metrics, "jupyter_flow_requests_total", route=route, status="500") == 0
    # the official client reads them back as NaN and infinities
    given = tc.InferInput("x", [1], "FP64")
    given.set_data_from_numpy(np.array([2.0]), binary_data=False)
    result = triton(nan_model).infer("nan", [given])
    assert np.isnan(result.as_numpy("y")[0]) and result.as_numpy("z").tolist() == [1.0, np.inf, -np.inf]


def test_an_answer_that_does_not_fit_the_protocol_is_a_json_500_counted_as_500(nan_model: AsgiServer) -> None:
    with httpx.Client(base_url=nan_model.url, timeout=30) as client:
        body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [-1.0]}]}
        answer = client.post("/v2/models/nan/infer", json=body)  # what no client could read without building it
        assert answer.status_code == 500
        assert "does not fit the protocol" in answer.json()["error"] and "'y'" in answer.json()["error"]
        predicted = client.post("/predict", json={"x": -1.0})  # whole answers have a bound too
        assert predicted.status_code == 500 and "too large to send" in predicted.json()["error"]
        assert client.get("/v2/health/live").status_code == 200
        metrics = client.get("/metrics").text
    assert metric(metrics, "jupyter_flow_requests_total", route="/v2/infer", status="500") == 1
    assert metric(metrics, "jupyter_flow_requests_total", route="/v2/infer", status="200") == 0
