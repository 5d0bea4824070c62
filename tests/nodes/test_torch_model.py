from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import torch
from model_fixtures import (  # noqa: F401  (fixtures)
    _fresh_models,
    exported_model,
    gpu,
    make_state_dict_weights,
    model_dir,
    model_flow,
    safetensors_weights,
    tiny_mlp,
    torchscript_model,
)

from jupyter_flow import Flow, FlowRunError, FlowValidationError
from jupyter_flow.capture import tensors

FACTORY = "jupyter_flow_examples.models:tiny_mlp"


def reference(x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return tiny_mlp()(x)


def test_torchscript_model_in_a_flow_takes_an_upstream_tensor(torchscript_model: Path) -> None:
    flow = Flow.from_dict(model_flow(
        "torch", {"model": str(torchscript_model), "inputs": "{{ make.output.result }}", "device": "cpu"},
        extra_nodes=[{"id": "make", "type": "python", "config": {"function": "torch:ones", "input_mapping": {"size": [8]}}}],
    ))
    result = flow.run()
    out = result.outputs["model"]["output"]
    assert out.shape == (3,)
    assert torch.allclose(out, reference(torch.ones(1, 8))[0], atol=1e-6)
    extra = result["model"].extra
    assert extra["device"] == "cpu" and extra["batch_size"] == 1 and "queue_wait_ms" in extra
    summary = json.loads(result.to_json())["nodes"][1]["outputs"]["output"]["__summary__"]
    assert summary["shape"] == [3] and summary["dtype"] == "float32"


def test_exported_program_with_batched_inputs_keeps_the_batch_dimension(exported_model: Path) -> None:
    x = torch.randn(5, 8)
    flow = Flow.from_dict(model_flow("torch", {"model": str(exported_model), "inputs": "{{x}}", "batched": True,
                                               "device": "cpu"}))
    out = flow.run({"x": x}).outputs["model"]["output"]
    assert out.shape == (5, 3)
    assert torch.allclose(out, reference(x), atol=1e-5)


def test_factory_with_safetensors_weights_and_keyword_inputs(safetensors_weights: Path) -> None:
    flow = Flow.from_dict(model_flow("torch", {"factory": FACTORY, "weights": str(safetensors_weights),
                                               "inputs": {"x": "{{x}}"}, "outputs": ["logits"], "device": "cpu"}))
    out = flow.run({"x": [0.5] * 8}).outputs["model"]
    assert set(out) == {"logits"}
    assert torch.allclose(out["logits"], reference(torch.full((1, 8), 0.5))[0], atol=1e-6)


def test_factory_with_a_plain_state_dict(tmp_path: Path) -> None:
    weights = make_state_dict_weights(tmp_path / "w.pt")
    flow = Flow.from_dict(model_flow("torch", {"factory": FACTORY, "weights": str(weights), "inputs": "{{x}}",
                                               "device": "cpu", "dtype": "bfloat16"}))
    result = flow.run({"x": [1.0] * 8})
    assert result.outputs["model"]["output"].dtype == torch.bfloat16
    assert result["model"].extra["dtype"] == "bfloat16"


def test_capture_hands_back_live_activations_and_summarizes_them(safetensors_weights: Path) -> None:
    flow = Flow.from_dict(model_flow("torch", {"factory": FACTORY, "weights": str(safetensors_weights),
                                               "inputs": "{{x}}", "capture": ["encoder", "head"], "device": "cpu"}))
    x = torch.linspace(-1, 1, 8)
    result = flow.run({"x": x})
    captured = tensors(result, "model")
    with torch.no_grad():
        hidden = tiny_mlp().encoder(x.unsqueeze(0))[0]
    assert torch.allclose(captured["encoder"], hidden, atol=1e-6)
    assert torch.equal(captured["head"], result.outputs["model"]["output"])
    summary = json.loads(result.to_json())["nodes"][0]["outputs"]["captured"]["encoder"]["__summary__"]
    assert summary["shape"] == [16] and summary["min"] >= 0.0  # after the ReLU
    assert sum(summary["histogram"]["counts"]) == 16


def test_sixty_four_concurrent_runs_share_few_forward_passes(exported_model: Path) -> None:
    xs = [torch.randn(8, generator=torch.Generator().manual_seed(i)) for i in range(64)]
    batched = Flow.from_dict(model_flow("torch", {"model": str(exported_model), "inputs": "{{x}}", "device": "cpu",
                                                  "batch": {"max_size": 16, "max_wait_ms": 20}}))
    plain = Flow.from_dict(model_flow("torch", {"model": str(exported_model), "inputs": "{{x}}", "device": "cpu"}))

    async def main() -> list:
        return await asyncio.gather(*(batched.arun({"x": x}) for x in xs))

    results = asyncio.run(main())
    passes = {r["model"].extra["forward_passes"] for r in results}
    sizes = [r["model"].extra["batch_size"] for r in results]
    assert passes == {1}
    assert max(sizes) > 1 and sum(1 for s in sizes if s > 1) > 48  # most callers shared a pass
    for x, r in zip(xs, results):
        alone = plain.run({"x": x}).outputs["model"]["output"]
        assert torch.allclose(r.outputs["model"]["output"], alone, atol=1e-5)


def test_run_wide_device_setting_overrides_the_node(torchscript_model: Path) -> None:
    flow = Flow.from_dict(model_flow("torch", {"model": str(torchscript_model), "inputs": "{{x}}", "device": "cuda"}))
    result = flow.run({"x": [0.0] * 8}, settings={"device": "cpu"})
    assert result["model"].extra["device"] == "cpu"


# -- paths ----------------------------------------------------------------------------------
def test_relative_model_and_weights_are_read_from_the_flow_files_folder(torchscript_model: Path, safetensors_weights: Path,
                                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from jupyter_flow.models import loaded_models

    project = tmp_path / "project"
    (project / "weights").mkdir(parents=True)
    shutil.copy(torchscript_model, project / "weights" / "mlp.pt")
    shutil.copy(safetensors_weights, project / "weights" / "mlp.safetensors")
    flow_file = project / "two.flow.json"
    flow_file.write_text(json.dumps({"spec_version": 1, "name": "relative", "nodes": [
        {"id": "script", "type": "torch", "config": {"model": "weights/mlp.pt", "inputs": "{{x}}", "device": "cpu"}},
        {"id": "factory", "type": "torch", "config": {"factory": FACTORY, "weights": "./weights/mlp.safetensors",
                                                      "inputs": "{{x}}", "device": "cpu"}}],
        "edges": [{"from": "start", "to": "script"}, {"from": "start", "to": "factory"}]}), encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # not the flow file's folder
    result = Flow.load(flow_file).run({"x": [0.5] * 8})
    expected = reference(torch.full((1, 8), 0.5))[0]
    assert torch.allclose(result.outputs["script"]["output"], expected, atol=1e-5)
    assert torch.allclose(result.outputs["factory"]["output"], expected, atol=1e-5)
    sources = {m["source"] for m in loaded_models()}
    assert sources == {str((project / "weights" / "mlp.pt").resolve()),
                       f"{FACTORY} + {(project / 'weights' / 'mlp.safetensors').resolve()}"}


def test_missing_relative_files_are_named_with_the_flow_files_folder(tmp_path: Path) -> None:
    flow_file = tmp_path / "flows" / "bad.flow.json"
    flow_file.parent.mkdir()
    flow_file.write_text(json.dumps({"spec_version": 1, "name": "bad", "nodes": [
        {"id": "m", "type": "torch", "config": {"factory": FACTORY, "weights": "w/missing.safetensors", "inputs": "{{x}}"}}],
        "edges": [{"from": "start", "to": "m"}]}), encoding="utf-8")
    [problem] = Flow.load(flow_file).problems()
    assert problem.node == "m" and problem.field == "config.weights"
    assert "w/missing.safetensors" in problem.message and str(flow_file.parent.resolve()) in problem.message


# -- errors ---------------------------------------------------------------------------------
def test_a_missing_model_file_is_a_validation_problem(tmp_path: Path) -> None:
    flow = Flow.from_dict(model_flow("torch", {"model": str(tmp_path / "nope.pt"), "inputs": "{{x}}"}))
    with pytest.raises(FlowValidationError) as info:
        flow.validate()
    assert "node 'model'" in str(info.value) and "config.model" in str(info.value) and "nope.pt" in str(info.value)


def test_model_and_factory_together_are_refused() -> None:
    problems = Flow.from_dict(model_flow("torch", {"model": "a.pt", "factory": FACTORY})).problems()
    assert any("either `model`" in p.message and p.node == "model" for p in problems)


def test_a_corrupt_model_file_fails_with_a_clear_message(tmp_path: Path) -> None:
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"PK\x03\x04 this is not a model")
    flow = Flow.from_dict(model_flow("torch", {"model": str(bad), "inputs": "{{x}}", "device": "cpu"}))
    with pytest.raises(FlowRunError) as info:
        flow.run({"x": [0.0] * 8})
    assert "node 'model'" in str(info.value) and "corrupt" in str(info.value) and "broken.pt" in str(info.value)


def test_a_state_dict_given_as_model_says_to_use_factory(tmp_path: Path) -> None:
    weights = make_state_dict_weights(tmp_path / "weights.pt")
    flow = Flow.from_dict(model_flow("torch", {"model": str(weights), "inputs": "{{x}}", "device": "cpu"}))
    with pytest.raises(FlowRunError, match="factory"):
        flow.run({"x": [0.0] * 8})


def test_weights_that_do_not_fit_the_factory_are_reported(tmp_path: Path) -> None:
    from model_fixtures import make_factory_weights

    weights = make_factory_weights(tmp_path / "wide.safetensors", hidden=32)
    flow = Flow.from_dict(model_flow("torch", {"factory": FACTORY, "weights": str(weights), "inputs": "{{x}}",
                                               "device": "cpu"}))
    with pytest.raises(FlowRunError) as info:
        flow.run({"x": [0.0] * 8})
    assert "config.weights" in str(info.value) and "does not fit" in str(info.value)


def test_a_corrupt_safetensors_file_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    flow = Flow.from_dict(model_flow("torch", {"factory": FACTORY, "weights": str(bad), "inputs": "{{x}}", "device": "cpu"}))
    with pytest.raises(FlowRunError, match="corrupt"):
        flow.run({"x": [0.0] * 8})


@pytest.mark.parametrize("kind", ["torchscript", "exported"])
def test_a_shape_mismatch_names_both_nodes_and_both_shapes(kind: str, torchscript_model: Path, exported_model: Path) -> None:
    model = torchscript_model if kind == "torchscript" else exported_model
    flow = Flow.from_dict(model_flow(
        "torch", {"model": str(model), "inputs": "{{ embed.output.result }}", "device": "cpu"},
        extra_nodes=[{"id": "embed", "type": "python", "config": {"function": "torch:zeros", "input_mapping": {"size": [7]}}}],
    ))
    with pytest.raises(FlowRunError) as info:
        flow.run()
    text = str(info.value)
    assert "node 'model'" in text and "'embed'" in text and "[7]" in text
    assert "8" in text  # the size the model wanted, from the model's own message


def test_an_input_that_is_not_a_tensor_names_the_field_and_upstream_node() -> None:
    flow = Flow.from_dict(model_flow(
        "torch", {"factory": FACTORY, "inputs": {"x": "{{ prep.output }}"}, "device": "cpu"},
        extra_nodes=[{"id": "prep", "type": "template", "config": {"template": "hello"}}],
    ))
    with pytest.raises(FlowRunError) as info:
        flow.run()
    text = str(info.value)
    assert "config.inputs.x" in text and "'prep'" in text and "dict" in text


def test_capture_of_an_unknown_module_lists_the_real_ones(safetensors_weights: Path) -> None:
    flow = Flow.from_dict(model_flow("torch", {"factory": FACTORY, "weights": str(safetensors_weights),
                                               "inputs": "{{x}}", "capture": ["encodr"], "device": "cpu"}))
    with pytest.raises(FlowRunError) as info:
        flow.run({"x": [0.0] * 8})
    assert "config.capture" in str(info.value) and "did you mean: encoder" in str(info.value)


def test_capture_on_a_torchscript_model_is_a_validation_problem(torchscript_model: Path) -> None:
    problems = Flow.from_dict(model_flow("torch", {"model": str(torchscript_model), "inputs": "{{x}}",
                                                   "capture": ["head"]})).problems()
    assert [p.field for p in problems] == ["config.capture"]


@pytest.mark.skipif("__import__('torch').cuda.is_available()", reason="checks the message on machines without CUDA")
def test_cuda_requested_without_cuda_fails_with_a_way_out(torchscript_model: Path) -> None:
    flow = Flow.from_dict(model_flow("torch", {"model": str(torchscript_model), "inputs": "{{x}}", "device": "cuda"}))
    with pytest.raises(FlowRunError) as info:
        flow.run({"x": [0.0] * 8})
    text = str(info.value)
    assert "node 'model'" in text and "CUDA is not available" in text and "device: cpu" in text


# -- on a GPU -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["torchscript", "exported", "factory"])
@pytest.mark.gpu
@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA device")
def test_the_same_models_run_on_cuda(kind: str, torchscript_model: Path, exported_model: Path,
                                     safetensors_weights: Path) -> None:
    config: dict = {"inputs": "{{x}}", "device": "cuda", "batch": {"max_size": 8, "max_wait_ms": 5}}
    if kind == "factory":
        config.update(factory=FACTORY, weights=str(safetensors_weights), capture=["encoder"], dtype="float16")
    else:
        config["model"] = str(torchscript_model if kind == "torchscript" else exported_model)
    flow = Flow.from_dict(model_flow("torch", config))
    x = torch.randn(8)
    result = flow.run({"x": x})
    out = result.outputs["model"]["output"]
    assert out.device.type == "cuda"
    assert torch.allclose(out.float().cpu(), reference(x.unsqueeze(0))[0], atol=2e-2)
    extra = result["model"].extra
    assert extra["device"] == "cuda:0" and extra["peak_gpu_memory_mb"] > 0
    if kind == "factory":
        assert tensors(result, "model")["encoder"].device.type == "cuda"
