"""The `inference` node against real Open Inference Protocol servers: a KServe
`ModelServer` (the `kserve` package) serving a model written here, and
`jupyter-flow serve model`; a flow chains the two."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from model_fixtures import model_dir, tiny_bert  # noqa: F401  (session fixtures)
from processes import stop
from servers import AsgiServer, LoopbackServer, Reply, free_port

from jupyter_flow import Flow, FlowRunError
from jupyter_flow.serve.app import model_app
from jupyter_flow.serve.codec import MAX_DIMS, MAX_VALUES

pytest.importorskip("kserve")

KSERVE_MODEL = textwrap.dedent('''
    import sys
    import numpy as np
    from kserve import InferOutput, InferResponse, Model, ModelServer

    class Shout(Model):
        """Text comes back upper-cased as `shout`; numbers come back doubled as `doubled`."""

        def __init__(self) -> None:
            super().__init__("shout")
            self.ready = True

        async def predict(self, payload, headers=None, response_headers=None):
            outputs = []
            for given in payload.inputs:
                data = given.as_numpy()
                if given.datatype == "BYTES":
                    text = np.array([(v.decode() if isinstance(v, bytes) else v).upper() for v in data.reshape(-1)], dtype=object)
                    out = InferOutput(name="shout", shape=list(data.shape), datatype="BYTES")
                    out.set_data_from_numpy(text.reshape(data.shape), binary_data=False)
                else:
                    out = InferOutput(name="doubled", shape=list(data.shape), datatype="FP32")
                    out.set_data_from_numpy((data * 2).astype(np.float32), binary_data=False)
                outputs.append(out)
            return InferResponse(model_name=self.name, infer_outputs=outputs, response_id=payload.id)

    if __name__ == "__main__":
        ModelServer(http_port=int(sys.argv[1]), enable_grpc=False, workers=1).start([Shout()])
''')


@pytest.fixture(scope="module")
def kserve_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    script = tmp_path_factory.mktemp("kserve") / "shout_model.py"
    script.write_text(KSERVE_MODEL)
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(script), str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/v2/models/shout/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"the KServe model server stopped: {proc.stdout.read() if proc.stdout else ''}")
            assert time.monotonic() < deadline, "the KServe model server did not come up"
            time.sleep(0.2)
        yield url
    finally:
        stop(proc, timeout_s=30)


def inference_flow(url: str, inputs: dict[str, Any], **config: Any) -> Flow:
    declared = {"text": {"type": "text", "default": "hello"}, "x": {"type": "any", "default": [[1.0, 2.0], [3.0, 4.0]]}}
    return Flow.from_dict({"name": "oip", "inputs": declared,
                           "nodes": [{"id": "model", "type": "inference", "config": {"endpoint": url, "model": "shout", "inputs": inputs, **config}}],
                           "edges": [{"from": "start", "to": "model"}]})


def test_text_and_tensor_inputs_against_kserve(kserve_url: str) -> None:
    flow = inference_flow(kserve_url, {"words": "{{ text }}", "x": "{{ x }}"})
    out = flow.run({"text": ["payment is due", "net 30"]}).outputs["model"]
    assert out == {"shout": ["PAYMENT IS DUE", "NET 30"], "doubled": [[2.0, 4.0], [6.0, 8.0]]}


def test_tensors_as_torch_and_overridden_datatype_and_shape(kserve_url: str) -> None:
    import torch

    flow = inference_flow(kserve_url, {"x": {"data": "{{ x }}", "datatype": "FP64", "shape": [-1]}}, tensors="torch")
    doubled = flow.run({"x": [[1, 2], [3, 4]]}).outputs["model"]["doubled"]
    assert isinstance(doubled, torch.Tensor) and doubled.dtype == torch.float32 and doubled.shape == (4,)
    assert doubled.tolist() == [2.0, 4.0, 6.0, 8.0]
    # a torch tensor goes with its own dtype and shape
    tensor_flow = inference_flow(kserve_url, {"x": "{{ x }}"})
    assert tensor_flow.run({"x": torch.ones(2, 3)}).outputs["model"]["doubled"] == [[2.0] * 3] * 2


def test_server_errors_are_named(kserve_url: str) -> None:
    flow = inference_flow(kserve_url, {"x": "{{ x }}"}, model="missing")
    with pytest.raises(FlowRunError) as info:
        flow.run()
    assert "node 'model'" in str(info.value) and "404" in str(info.value) and "missing" in str(info.value)
    mismatch = inference_flow(kserve_url, {"x": {"data": "{{ x }}", "shape": [3]}})
    with pytest.raises(FlowRunError, match=r"config.inputs.x: shape \[3\] holds 3 values but the data has 4"):
        mismatch.run()


def test_config_mistakes_are_found_before_the_run() -> None:
    flow = inference_flow("http://127.0.0.1:9", {"x": {"data": "{{ x }}", "datatype": "FLOAT", "size": 3}})
    (problem,) = flow.problems()
    assert problem.node == "model" and problem.field == "config.inputs"
    assert "size" in problem.message
    bad_type = inference_flow("http://127.0.0.1:9", {"x": {"data": "{{ x }}", "datatype": "FLOAT"}})
    assert "unknown datatype 'FLOAT'" in bad_type.problems()[0].message


def test_refused_connection_is_a_remote_error() -> None:
    flow = inference_flow(f"http://127.0.0.1:{free_port()}", {"x": "{{ x }}"})
    with pytest.raises(FlowRunError, match="cannot connect"):
        flow.run()


def test_flow_chains_a_served_model_and_a_kserve_model(kserve_url: str, tiny_bert: Path) -> None:  # noqa: F811
    service = {"name": "clause-bert", "type": "transformers",
               "config": {"model": str(tiny_bert), "task": "text-classification", "text": "{{ text }}"},
               "inputs": {"text": {"type": "text"}}}
    with AsgiServer(model_app(service)) as served:
        flow = Flow.from_dict({
            "name": "review", "inputs": {"clause": {"type": "text"}},
            "nodes": [
                {"id": "classify", "type": "inference", "config": {"endpoint": served.url, "model": "clause-bert",
                                                                    "inputs": {"text": "{{ clause }}"}, "outputs": ["label", "score"]}},
                {"id": "shout", "type": "inference", "config": {"endpoint": kserve_url, "model": "shout",
                                                                 "inputs": {"label": "{{ classify.output.label[0] }}"}}},
            ],
            "edges": [{"from": "start", "to": "classify"}, {"from": "classify", "to": "shout"}],
        })
        result = flow.run({"clause": "The buyer pays within 30 days."})
    label = result.outputs["classify"]["label"]
    assert set(result.outputs["classify"]) == {"label", "score"} and label[0] in {"negative", "positive"}
    assert result.outputs["shout"] == {"shout": [label[0].upper()]}


# -- answers larger than the node reads ----------------------------------------------------
def test_an_answer_over_max_response_bytes_is_a_node_error(serve: Any) -> None:
    from servers import Reply

    big = {"model_name": "shout", "outputs": [{"name": "y", "datatype": "FP32", "shape": [100_000], "data": [0.5] * 100_000}]}
    server = serve({"/v2/models/shout/infer": lambda req: Reply(200, big)})
    flow = inference_flow(server.url, {"x": "{{ x }}"}, max_response_bytes=100_000)
    with pytest.raises(FlowRunError) as info:
        flow.run()
    error = info.value.result["model"].error  # type: ignore[index]
    assert error is not None and error.type == "RemoteError", error
    assert f"{server.url}/v2/models/shout/infer" in error.message and "100000" in error.message and "max_response_bytes" in error.message
    assert "node 'model'" in str(info.value)
    within = inference_flow(server.url, {"x": "{{ x }}"}, max_response_bytes=10_000_000).run()  # the same answer, read when allowed
    assert len(within.outputs["model"]["y"]) == 100_000


# -- answers no node should take as they are -----------------------------------------------
def answering(serve: Callable[[dict], LoopbackServer], *outputs: dict) -> str:
    """A loopback server that answers every inference request with `outputs`."""
    server = serve({"/v2/models/shout/infer": lambda req: Reply(200, {"model_name": "shout", "outputs": list(outputs)})})
    return server.url


@pytest.mark.timeout(120)
def test_a_hostile_answer_with_a_huge_empty_shape_is_a_node_error_not_a_hang(serve: Callable[[dict], LoopbackServer]) -> None:
    # no value, but a million lists of a million empty lists if the node built what the shape says
    url = answering(serve, {"name": "y", "datatype": "FP32", "shape": [1_000_000, 1_000_000, 0], "data": []})
    with pytest.raises(FlowRunError) as info:
        inference_flow(url, {"x": "{{ x }}"}).run()
    message = str(info.value)
    assert "node 'model'" in message and "'y'" in message and f"{MAX_VALUES:,}" in message
    # within the bounds, an empty tensor is read as what it holds
    url = answering(serve, {"name": "y", "datatype": "FP32", "shape": [2, 0, 3], "data": []})
    assert inference_flow(url, {"x": "{{ x }}"}).run().outputs["model"] == {"y": [[], []]}


HOSTILE_ANSWERS = {
    "INT8 overflow": ([{"name": "y", "datatype": "INT8", "shape": [2], "data": [1, 300]}], ["'y'", "INT8", "300"]),
    "UINT8 given as floats": ([{"name": "y", "datatype": "UINT8", "shape": [1], "data": [2.5]}], ["'y'", "UINT8", "integers"]),
    "FP16 overflow": ([{"name": "y", "datatype": "FP16", "shape": [1], "data": [1e9]}], ["'y'", "FP16", "too large"]),
    "two outputs of one name": ([{"name": "y", "datatype": "FP32", "shape": [1], "data": [1.0]}] * 2, ["'y'", "two outputs"]),
    "too many dims": ([{"name": "y", "datatype": "FP32", "shape": [1] * (MAX_DIMS + 1), "data": [1.0]}], ["'y'", f"limit of {MAX_DIMS}"]),
}


@pytest.mark.parametrize("case", list(HOSTILE_ANSWERS))
def test_an_answer_the_codec_cannot_take_as_it_is_is_a_node_error_naming_the_tensor(serve: Callable[[dict], LoopbackServer], case: str) -> None:
    outputs, said = HOSTILE_ANSWERS[case]
    with pytest.raises(FlowRunError) as info:
        inference_flow(answering(serve, *outputs), {"x": "{{ x }}"}).run()
    message = str(info.value)
    assert "node 'model'" in message and all(word in message for word in said), message


def test_nan_and_infinity_from_a_served_model_come_back_as_floats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "odd_numbers.py").write_text("import math\n\n\ndef make(x):\n    return {'y': [math.nan, math.inf, -math.inf, x]}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    service = {"name": "shout", "type": "python", "config": {"function": "odd_numbers:make", "input_mapping": {"x": "{{ x }}"}},
               "inputs": {"x": {"type": "number"}}}
    with AsgiServer(model_app(service)) as served:
        flow = Flow.from_dict({"name": "nan", "inputs": {"v": {"type": "number"}},
                               "nodes": [{"id": "model", "type": "inference", "config": {"endpoint": served.url, "model": "shout",
                                                                                         "inputs": {"x": "{{ v }}"}}}]})
        (nan, up, down, two) = flow.run({"v": 2.0}).outputs["model"]["y"]
    assert math.isnan(nan) and (up, down, two) == (math.inf, -math.inf, 2.0)
