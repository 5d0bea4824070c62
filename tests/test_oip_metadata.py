"""The Open Inference Protocol's model metadata lists a served model's (or flow's) outputs
before its first request, so that a client can plan with them: the official Triton client
(`tritonclient.http`) reads names, datatypes and shapes, then infers and gets just those."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from model_fixtures import model_dir, tiny_bert, torchscript_model  # noqa: F401  (session fixtures)
from servers import AsgiServer, LoopbackServer, Reply
from test_serve import metric

from jupyter_flow.errors import FlowValidationError
from jupyter_flow.serve.app import flow_app, model_app

tc = pytest.importorskip("tritonclient.http")


def triton(srv: AsgiServer) -> Any:
    return tc.InferenceServerClient(url=f"127.0.0.1:{srv.port}", network_timeout=60)


def text_input(texts: list[str], name: str = "text") -> Any:
    given = tc.InferInput(name, [len(texts)], "BYTES")
    given.set_data_from_numpy(np.array(texts, dtype=object), binary_data=False)
    return given


def by_name(tensors: list[dict]) -> dict[str, dict]:
    return {t["name"]: t for t in tensors}


# -- a served model ---------------------------------------------------------------------------
def test_a_served_models_outputs_are_listed_before_its_first_request(tiny_bert: Path) -> None:  # noqa: F811
    service = {"name": "clause-bert", "type": "transformers",
               "config": {"model": str(tiny_bert), "task": "text-classification", "text": "{{ text }}"},
               "inputs": {"text": {"type": "text"}}}
    with AsgiServer(model_app(service)) as srv:
        client = triton(srv)
        outputs = by_name(client.get_model_metadata("clause-bert")["outputs"])
        # nothing was asked of the service yet: the example call at start-up told these
        assert metric(httpx.get(srv.url + "/metrics").text, "jupyter_flow_requests_total", route="/v2/infer", status="200") == 0
        assert outputs["label"] == {"name": "label", "datatype": "BYTES", "shape": [-1]}
        assert outputs["logits"] == {"name": "logits", "datatype": "FP32", "shape": [-1]}
        assert outputs["score"]["datatype"] == "FP32"
        # the client plans its request from the metadata, and gets what it planned
        wanted = [tc.InferRequestedOutput(name, binary_data=False) for name in ("label", "score")]
        result = client.infer("clause-bert", [text_input(["The buyer pays within 30 days.", "Either party may end it."])],
                              outputs=wanted)
        answer = by_name(result.get_response()["outputs"])
        assert list(answer) == ["label", "score"]
        for name, tensor in answer.items():
            assert tensor["datatype"] == outputs[name]["datatype"]
        assert {x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("label")} <= {"negative", "positive"}
        # what the metadata says stays what it was told before the first answer
        assert by_name(client.get_model_metadata("clause-bert")["outputs"]) == outputs


def test_declared_outputs_are_listed_and_answers_hold_them_in_their_datatypes(torchscript_model: Path) -> None:  # noqa: F811
    import torch

    service = {"name": "mlp", "type": "torch", "config": {"model": str(torchscript_model), "inputs": "{{ x }}", "device": "cpu"},
               "inputs": {"x": {"type": "any"}},  # no placeholder for a tensor: the declaration says it all
               "outputs": {"output": {"datatype": "FP64", "shape": [-1, 3]}}}
    x = np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8)
    with AsgiServer(model_app(service)) as srv:
        client = triton(srv)
        meta = client.get_model_metadata("mlp")
        assert meta["outputs"] == [{"name": "output", "datatype": "FP64", "shape": [-1, 3]}]
        assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1]}]
        given = tc.InferInput("x", [2, 8], "FP32")
        given.set_data_from_numpy(x, binary_data=False)
        out = client.infer("mlp", [given]).as_numpy("output")
    expected = torch.jit.load(str(torchscript_model))(torch.from_numpy(x)).detach().numpy()
    assert out.dtype == np.float64 and out.shape == (2, 3) and np.allclose(out, expected, atol=1e-5)


SCORER = """\
def score(text):
    if text == "boom":
        raise ValueError("cannot score that")
    if isinstance(text, list):  # a batch: each output a list, one item per text
        each = [score(t) for t in text]
        return {name: [one[name] for one in each] for name in each[0]}
    words = len(text.split())
    return {"label": "long" if words > 3 else "short", "scores": [0.25, 0.75, float(words)], "extra": 1}
"""


@pytest.fixture
def scorer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "scorer.py").write_text(SCORER)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def scorer_service(**more: object) -> dict:
    return {"name": "scorer", "type": "python", "config": {"function": "scorer:score", "input_mapping": {"text": "{{ text }}"}},
            "inputs": {"text": {"type": "text"}}, **more}


def test_a_one_item_request_gets_the_declared_batch_dim_and_undeclared_outputs_are_not_sent(scorer: Path) -> None:
    declared = {"label": {"datatype": "BYTES"}, "scores": {"datatype": "FP32", "shape": [-1, 3]}}
    with AsgiServer(model_app(scorer_service(outputs=declared))) as srv:
        client = triton(srv)
        assert client.get_model_metadata("scorer")["outputs"] == [
            {"name": "label", "datatype": "BYTES", "shape": [-1]}, {"name": "scores", "datatype": "FP32", "shape": [-1, 3]}]
        one = client.infer("scorer", [text_input(["a short one"])])
        assert [o["name"] for o in one.get_response()["outputs"]] == ["label", "scores"]
        assert one.as_numpy("scores").shape == (1, 3) and one.as_numpy("scores").dtype == np.float32
        two = client.infer("scorer", [text_input(["a short one", "this one is rather long"])])
        assert two.as_numpy("scores").tolist() == [[0.25, 0.75, 3.0], [0.25, 0.75, 5.0]]
        assert [x.decode() if isinstance(x, bytes) else x for x in two.as_numpy("label")] == ["short", "long"]


def test_an_answer_that_breaks_the_declaration_is_a_500_naming_the_output(scorer: Path) -> None:
    cases = {"missing": {"label": {"datatype": "BYTES"}, "logits": {"datatype": "FP32"}},
             "shape": {"scores": {"datatype": "FP32", "shape": [-1, 4]}},
             "text as numbers": {"label": {"datatype": "FP32"}}}
    said = {"missing": ["'logits'", "declares", "label"], "shape": ["'scores'", "[-1, 4]"], "text as numbers": ["'label'", "FP32"]}
    for case, declared in cases.items():
        with AsgiServer(model_app(scorer_service(outputs=declared))) as srv:
            body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hello"]}]}
            answer = httpx.post(srv.url + "/v2/models/scorer/infer", json=body, timeout=30)
            assert answer.status_code == 500, (case, answer.text)
            error = answer.json()["error"]
            assert "does not fit the protocol" in error and all(word in error for word in said[case]), (case, error)


def test_a_failing_example_call_is_a_warning_and_the_first_answer_fills_the_metadata_in(
        scorer: Path, caplog: pytest.LogCaptureFixture) -> None:
    service = scorer_service(inputs={"text": {"type": "text", "default": "boom"}, "n": {"type": "integer"}},
                             config={"function": "scorer:score", "input_mapping": {"text": "{{ text }}"}})
    with caplog.at_level(logging.WARNING, logger="jupyter_flow.serve"), AsgiServer(model_app(service)) as srv:
        client = triton(srv)
        assert client.is_server_ready() and client.is_model_ready("scorer")  # the service started all the same
        assert client.get_model_metadata("scorer")["outputs"] == []
        warned = [r.getMessage() for r in caplog.records if "example call" in r.getMessage()]
        assert len(warned) == 1 and "scorer" in warned[0] and "cannot score that" in warned[0] and "outputs:" in warned[0]
        n = tc.InferInput("n", [1], "INT64")
        n.set_data_from_numpy(np.array([1]), binary_data=False)
        client.infer("scorer", [text_input(["fine words here"]), n])
        outputs = by_name(client.get_model_metadata("scorer")["outputs"])
    assert outputs["label"] == {"name": "label", "datatype": "BYTES", "shape": [-1]}
    assert outputs["scores"] == {"name": "scores", "datatype": "FP32", "shape": [-1]}


def test_a_declaration_that_is_not_one_is_refused_at_start_up_naming_the_field(scorer: Path, tmp_path: Path) -> None:
    bad = {"label": {"datatype": "STRING"}, "scores": {"datatype": "FP32", "shape": [-2]},
           "big": {"datatype": "FP32", "shape": [2**30, 2**30]}, "odd": {"datatype": "FP32", "dims": [3]}}
    with pytest.raises(FlowValidationError) as info:
        model_app(scorer_service(outputs=bad))
    fields = {p.field for p in info.value.problems}
    assert fields == {"outputs.label.datatype", "outputs.scores.shape", "outputs.big.shape", "outputs.odd"}
    assert "STRING" in str(info.value) and "dims" in str(info.value)
    config = tmp_path / "scorer.yaml"
    config.write_text(yaml.safe_dump(scorer_service(outputs={"label": {"datatype": "TEXT"}})))
    done = subprocess.run([sys.executable, "-m", "jupyter_flow.cli", "serve", "model", str(config), "--port", "9"],
                          capture_output=True, text=True, timeout=120, cwd=scorer)
    assert done.returncode == 2 and "outputs.label.datatype" in done.stderr and "TEXT" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


# -- a served flow ----------------------------------------------------------------------------
FLOW = """\
name: review
inputs:
  clause: {type: text}
nodes:
  - id: score
    type: python
    config: {function: "scorer:score", input_mapping: {text: "{{ clause }}"}}
  - id: report
    type: template
    config: {template: "{{ score.output.label }}: {{ clause }}"}
edges:
  - {from: score, to: report}
outputs:
  label: "{{ score.output.label }}"
  scores: "{{ score.output.scores }}"
  report: "{{ report.output.text }}"
"""


@pytest.fixture
def review(scorer: Path) -> Iterator[tuple[AsgiServer, Path]]:
    path = scorer / "review.flow.yaml"
    path.write_text(FLOW)
    with AsgiServer(flow_app(path, settle_s=0.1)) as srv:
        yield srv, path


def test_a_served_flow_lists_its_declared_outputs_before_its_first_answer(review: tuple[AsgiServer, Path]) -> None:
    srv, path = review
    client = triton(srv)
    assert client.is_model_ready("review")
    meta = client.get_model_metadata("review")
    assert meta["platform"] == "jupyter-flow/flow" and meta["inputs"] == [{"name": "clause", "datatype": "BYTES", "shape": [-1]}]
    # nothing ran: the names come from the flow's `outputs:`, their datatypes from the first answer
    assert meta["outputs"] == [{"name": name, "datatype": "BYTES", "shape": [-1]} for name in ("label", "scores", "report")]
    assert metric(httpx.get(srv.url + "/metrics").text, "jupyter_flow_requests_total", route="/v2/infer", status="200") == 0
    # the client plans its request from the metadata, and gets what it planned
    wanted = [tc.InferRequestedOutput(o["name"], binary_data=False) for o in meta["outputs"]]
    result = client.infer("review", [text_input(["the buyer pays within thirty days"], name="clause")], outputs=wanted)
    answer = result.get_response()
    assert [o["name"] for o in answer["outputs"]] == ["label", "scores", "report"]
    assert result.as_numpy("scores").tolist() == [0.25, 0.75, 6.0]
    report = result.as_numpy("report")[0]
    assert (report.decode() if isinstance(report, bytes) else report) == "long: the buyer pays within thirty days"
    # the first answer told the datatypes
    told = client.get_model_metadata("review")["outputs"]
    assert told == [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                    {"name": "scores", "datatype": "FP32", "shape": [-1]},
                    {"name": "report", "datatype": "BYTES", "shape": [-1]}]
    assert [o["datatype"] for o in answer["outputs"]] == [o["datatype"] for o in told]
    assert metric(httpx.get(srv.url + "/metrics").text, "jupyter_flow_requests_total", route="/v2/infer", status="200") == 1
    # an edited flow file lists its new outputs, again without running
    path.write_text(FLOW.replace('  report: "{{ report.output.text }}"\n', '  words: "{{ score.output.scores[2] | int }}"\n'))
    deadline = time.monotonic() + 30
    while [o["name"] for o in client.get_model_metadata("review")["outputs"]] != ["label", "scores", "words"]:
        assert time.monotonic() < deadline, client.get_model_metadata("review")
        time.sleep(0.2)
    assert by_name(client.get_model_metadata("review")["outputs"])["words"]["datatype"] == "BYTES"
    client.infer("review", [text_input(["one two"], name="clause")])
    assert by_name(client.get_model_metadata("review")["outputs"])["words"]["datatype"] == "INT64"


def test_a_metadata_request_runs_nothing_of_the_flow(scorer: Path) -> None:
    # an http node that posts to a sink: its effect must come from inferences only
    flow = FLOW.replace("  - id: report\n", "  - id: notify\n    type: http\n"
                        "    config: {endpoint: \"SINK/notify\", input_mapping: {text: \"{{ clause }}\"}}\n  - id: report\n")
    with LoopbackServer({"/notify": lambda request: Reply(200, {"sent": True})}) as sink:
        path = scorer / "notify.flow.yaml"
        path.write_text(flow.replace("SINK", sink.url))
        with AsgiServer(flow_app(path)) as srv:
            client = triton(srv)
            for _ in range(3):
                assert [o["name"] for o in client.get_model_metadata("review")["outputs"]] == ["label", "scores", "report"]
            assert client.is_model_ready("review")
            assert sink.requests == []
            client.infer("review", [text_input(["one two"], name="clause")])
            assert [r.body for r in sink.requests] == [{"text": "one two"}]
            client.get_model_metadata("review")
            assert len(sink.requests) == 1
        undeclared = scorer / "undeclared.flow.yaml"
        undeclared.write_text(path.read_text().split("outputs:")[0])
        with AsgiServer(flow_app(undeclared)) as srv:
            assert triton(srv).get_model_metadata("review")["outputs"] == []  # without `outputs:`, none until an answer
            assert len(sink.requests) == 1
