from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from model_fixtures import (  # noqa: F401  (fixtures)
    _fresh_models,
    exported_model,
    model_dir,
    model_flow,
    tiny_bert,
    torchscript_model,
)

from jupyter_flow import Flow, NodeError
from jupyter_flow.models import default_cache, loaded_models, release_models, resolve_device, resolve_dtype


def test_a_model_is_loaded_once_and_shared_by_flows_and_runs(tiny_bert: Path) -> None:
    config = {"model": str(tiny_bert), "task": "text-classification", "text": "{{text}}", "device": "cpu"}
    first = Flow.from_dict(model_flow("transformers", config))
    second = Flow.from_dict(model_flow("transformers", config, node_id="other"))
    loads = default_cache().loads
    first.run({"text": "pay the invoice"})
    first.run({"text": "pay the fee"})
    second.run({"text": "terminate"})
    assert default_cache().loads == loads + 1
    [entry] = loaded_models()
    assert entry["source"] == str(tiny_bert.resolve())
    assert entry["device"] == "cpu" and entry["dtype"] == "float32"
    assert entry["hits"] >= 2
    assert entry["memory_mb"] > 0


def test_warm_up_loads_so_that_the_first_run_is_a_cache_hit(tiny_bert: Path) -> None:
    flow = Flow.from_dict(model_flow("transformers", {"model": str(tiny_bert), "task": "text-classification",
                                                      "text": "{{text}}", "device": "cpu"}))
    node = flow.plan.nodes["model"].node
    node.ensure_warm()
    loads = default_cache().loads
    assert len(loaded_models()) == 1
    flow.run({"text": "hello"})
    assert default_cache().loads == loads


def test_concurrent_first_loads_load_once(torchscript_model: Path) -> None:
    flow = Flow.from_dict(model_flow("torch", {"model": str(torchscript_model), "inputs": "{{x}}", "device": "cpu"}))
    node = flow.plan.nodes["model"].node
    loads = default_cache().loads
    threads = [threading.Thread(target=node.entry, args=("cpu", None)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert default_cache().loads == loads + 1


def test_release_drops_models_and_the_next_run_loads_again(torchscript_model: Path, exported_model: Path) -> None:
    a = Flow.from_dict(model_flow("torch", {"model": str(torchscript_model), "inputs": "{{x}}", "device": "cpu"}))
    b = Flow.from_dict(model_flow("torch", {"model": str(exported_model), "inputs": "{{x}}", "device": "cpu"}))
    a.run({"x": [0.0] * 8})
    b.run({"x": [0.0] * 8})
    assert {m["source"] for m in loaded_models()} == {str(torchscript_model.resolve()), str(exported_model.resolve())}
    assert release_models(torchscript_model) == 1
    assert [m["source"] for m in loaded_models()] == [str(exported_model.resolve())]
    loads = default_cache().loads
    a.run({"x": [0.0] * 8})
    assert default_cache().loads == loads + 1
    assert release_models() == 2
    assert loaded_models() == []
    assert "no models loaded" in loaded_models()._repr_markdown_()


def test_a_model_saved_again_at_the_same_path_is_reloaded(tmp_path: Path) -> None:
    from model_fixtures import make_torchscript_model

    path = make_torchscript_model(tmp_path / "m.pt", seed=1)
    flow = Flow.from_dict(model_flow("torch", {"model": str(path), "inputs": "{{x}}", "device": "cpu"}))
    before = flow.run({"x": [1.0] * 8}).outputs["model"]["output"]
    make_torchscript_model(path, seed=2)
    os.utime(path, ns=(1, os.stat(path).st_mtime_ns + 1_000_000))
    after = flow.run({"x": [1.0] * 8}).outputs["model"]["output"]
    assert not before.equal(after)
    assert len(loaded_models()) == 1


def test_the_listing_shows_as_a_table_in_a_notebook(torchscript_model: Path) -> None:
    Flow.from_dict(model_flow("torch", {"model": str(torchscript_model), "inputs": "{{x}}", "device": "cpu"})).run(
        {"x": [0.0] * 8})
    table = loaded_models()._repr_markdown_()
    assert "| torch |" in table and str(torchscript_model.resolve()) in table and "| cpu |" in table


def test_device_resolution() -> None:
    import torch

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda:0" if torch.cuda.is_available() else "cpu")
    with pytest.raises(NodeError, match="not a device"):
        resolve_device("tpu", node="n")
    assert resolve_dtype(None) is None
    assert resolve_dtype("bfloat16") is torch.bfloat16
    with pytest.raises(NodeError, match="not a dtype"):
        resolve_dtype("int8", node="n")


@pytest.mark.skipif("__import__('torch').cuda.is_available()", reason="checks the message on machines without CUDA")
def test_cuda_without_cuda_says_so_and_how_to_fall_back() -> None:
    with pytest.raises(NodeError) as info:
        resolve_device("cuda", node="clf")
    text = str(info.value)
    assert "clf" in text and "config.device" in text and "CUDA is not available" in text
    assert "device: cpu" in text


def test_release_frees_the_model_even_while_a_batched_flow_still_exists(tiny_bert: Path) -> None:
    import gc
    import weakref

    flow = Flow.from_dict(model_flow("transformers", {"model": str(tiny_bert), "task": "text-classification",
                                                      "text": "{{text}}", "device": "cpu",
                                                      "batch": {"max_size": 4, "max_wait_ms": 1}}))
    flow.run({"text": ["pay the invoice", "terminate"]})
    [entry] = default_cache().entries()
    model = weakref.ref(entry.obj.model)
    del entry
    assert release_models() == 1
    gc.collect()
    assert model() is None, "a released model must not stay reachable from the flow, its node or its batcher"
    assert flow.run({"text": "pay"}).outputs["model"]["label"] in {"negative", "positive"}  # loads again


def test_loaded_models_are_kept_out_of_full_collections_until_released(torchscript_model: Path) -> None:
    import gc

    flow = Flow.from_dict(model_flow("torch", {"model": str(torchscript_model), "inputs": "{{x}}", "device": "cpu"}))
    flow.run({"x": [0.0] * 8})
    # the libraries and the model are long-lived: a full collection should not walk them every time
    assert gc.get_freeze_count() > 10_000
    release_models()
    assert gc.get_freeze_count() == 0  # handed back, so what the released model leaves is collected
