from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import torch
from model_fixtures import (  # noqa: F401  (fixtures)
    TOKEN_LABELS,
    _fresh_models,
    make_clause_classifier,
    model_dir,
    model_flow,
    tiny_bert,
    tiny_encoder,
    tiny_ner,
)

from jupyter_flow import Flow, FlowRunError, FlowValidationError
from jupyter_flow.capture import tensors


def classify(model: Path, **extra: object) -> Flow:
    return Flow.from_dict(model_flow("transformers", {"model": str(model), "task": "text-classification",
                                                      "text": "{{text}}", "device": "cpu", **extra}, node_id="clauses"))


def direct_logits(model: Path, texts: list[str]) -> torch.Tensor:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    net = AutoModelForSequenceClassification.from_pretrained(model).eval()
    with torch.no_grad():
        return torch.cat([net(**tok([t], return_tensors="pt")).logits for t in texts])


def test_text_classification_gives_label_score_scores_and_logits(tiny_bert: Path) -> None:
    out = classify(tiny_bert).run({"text": "The fee is due within thirty days."}).outputs["clauses"]
    assert set(out) == {"label", "score", "scores", "logits"}
    assert set(out["scores"]) == {"negative", "positive"}
    assert out["label"] == max(out["scores"], key=out["scores"].get)
    assert out["score"] == pytest.approx(max(out["scores"].values()))
    assert torch.allclose(out["logits"], direct_logits(tiny_bert, ["The fee is due within thirty days."])[0], atol=1e-5)


def test_a_list_gives_a_list_in_order_equal_to_one_at_a_time(tiny_bert: Path) -> None:
    texts = ["pay", "the customer shall pay the invoice within thirty days", "terminate with notice", "x"]
    out = classify(tiny_bert, batch={"max_size": 3, "max_wait_ms": 2}).run({"text": texts})
    items = out.outputs["clauses"]
    assert isinstance(items, list) and len(items) == 4
    expected = direct_logits(tiny_bert, texts)  # padding in a batch must not change any item's result
    for item, logits in zip(items, expected):
        assert torch.allclose(item["logits"], logits, atol=1e-5)
    assert out["clauses"].extra["forward_passes"] == 2 and out["clauses"].extra["items"] == 4


def test_sixty_four_concurrent_runs_are_gathered_and_match_unbatched(tiny_bert: Path) -> None:
    texts = [f"payment {i} of the invoice is due in {i % 7} days" for i in range(64)]
    flow = classify(tiny_bert, batch={"max_size": 32, "max_wait_ms": 20})

    async def main() -> list:
        return await asyncio.gather(*(flow.arun({"text": t}) for t in texts))

    results = asyncio.run(main())
    sizes = [r["clauses"].extra["batch_size"] for r in results]
    assert sum(1 for s in sizes if s > 1) > 48
    [entry] = [m for m in __import__("jupyter_flow.models", fromlist=["x"]).default_cache().entries()]
    batcher = next(iter(entry.batchers.values()))
    assert batcher.items == 64 and batcher.calls <= 16  # far fewer forward passes than runs
    expected = direct_logits(tiny_bert, texts)
    for r, logits in zip(results, expected):
        assert torch.allclose(r.outputs["clauses"]["logits"], logits, atol=1e-5)
        assert r["clauses"].extra["queue_wait_ms"] >= 0


def test_token_classification_gives_spans_with_character_offsets(tiny_ner: Path) -> None:
    text = "Acme pays 100 euro to Globex."
    flow = Flow.from_dict(model_flow("transformers", {"model": str(tiny_ner), "task": "token-classification",
                                                      "text": "{{text}}", "device": "cpu"}))
    out = flow.run({"text": [text, "nothing"]}).outputs["model"]
    entities = out[0]["entities"]
    assert entities, "an untrained tagger still tags every token with some label; O is only one of five"
    for span in entities:
        assert span["label"] in {"ORG", "MONEY"}
        assert 0 <= span["start"] < span["end"] <= len(text)
        assert span["text"] == text[span["start"]:span["end"]]
        assert 0 < span["score"] <= 1
    assert [s["start"] for s in entities] == sorted(s["start"] for s in entities)


def test_feature_extraction_pools_over_real_tokens_only(tiny_encoder: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    flow = Flow.from_dict(model_flow("transformers", {"model": str(tiny_encoder), "task": "feature-extraction",
                                                      "text": "{{text}}", "device": "cpu"}))
    texts = ["short", "a much longer text that needs padding for the short one"]
    out = flow.run({"text": texts}).outputs["model"]
    tok, net = AutoTokenizer.from_pretrained(tiny_encoder), AutoModel.from_pretrained(tiny_encoder).eval()
    with torch.no_grad():
        alone = net(**tok(["short"], return_tensors="pt")).last_hidden_state.mean(dim=1)[0]
    assert out[0]["embedding"].shape == (32,)
    assert torch.allclose(out[0]["embedding"], alone, atol=1e-5)


def test_a_notebook_user_gets_captured_activations_back(tiny_bert: Path) -> None:
    flow = classify(tiny_bert, capture=["bert.pooler", "bert.encoder.layer.1"])
    result = flow.run({"text": "Confidential information shall not be disclosed."})
    pooled = result.outputs["clauses"]["captured"]["bert.pooler"]
    assert isinstance(pooled, torch.Tensor) and pooled.shape == (1, 32)
    assert torch.equal(tensors(result, "clauses")["bert.pooler"], pooled)
    layer = tensors(result, "clauses")["bert.encoder.layer.1"]
    assert layer.shape[0] == 1 and layer.shape[2] == 32
    summary = json.loads(result.to_json())["nodes"][0]["outputs"]["captured"]["bert.pooler"]["__summary__"]
    assert summary["shape"] == [1, 32] and summary["nan"] == 0 and -1 <= summary["min"] <= summary["max"] <= 1  # tanh


def test_captured_activations_of_a_list_are_joined_per_item(tiny_bert: Path) -> None:
    flow = classify(tiny_bert, capture=["bert.pooler", "bert.embeddings"], batch={"max_size": 8, "max_wait_ms": 1})
    texts = ["pay", "pay the invoice in thirty days please"]
    result = flow.run({"text": texts})
    captured = tensors(result, "clauses")
    assert captured["bert.pooler"].shape == (2, 32)
    embeddings = captured["bert.embeddings"]  # token-level: cut to each item's own tokens
    assert isinstance(embeddings, list) and embeddings[0].shape[1] < embeddings[1].shape[1]


def test_warm_up_makes_the_first_run_a_cache_hit(tiny_bert: Path) -> None:
    from jupyter_flow.models import default_cache

    flow = classify(tiny_bert)
    flow.plan.nodes["clauses"].node.ensure_warm()
    loads = default_cache().loads
    flow.run({"text": "hello"})
    assert default_cache().loads == loads


def test_the_demo_clause_classifier_separates_clause_types(tmp_path: Path) -> None:
    from jupyter_flow_examples.models import clause_sentences

    # a generous time budget: training stops by itself once the training set is separated
    path = make_clause_classifier(tmp_path / "clause-bert", seconds=120)
    held_out = clause_sentences(per_label=10, seed=99)
    out = classify(path).run({"text": [s for s, _ in held_out]}).outputs["clauses"]
    right = sum(o["label"] == label for o, (_, label) in zip(out, held_out))
    assert right / len(held_out) >= 0.8


# -- paths ----------------------------------------------------------------------------------
def write_flow(path: Path, model: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"spec_version": 1, "name": "relative", "nodes": [
        {"id": "clauses", "type": "transformers",
         "config": {"model": model, "task": "text-classification", "text": "{{text}}", "device": "cpu"}}],
        "edges": [{"from": "start", "to": "clauses"}]}), encoding="utf-8")
    return path


def test_a_relative_model_directory_is_read_from_the_flow_files_folder(tiny_bert: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from jupyter_flow.models import loaded_models

    project = tmp_path / "project"
    shutil.copytree(tiny_bert, project / "models" / "clf")
    flow_file = write_flow(project / "flows" / "review.flow.json", "../models/clf")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the current directory must not matter
    result = Flow.load(flow_file).run({"text": "The fee is due within thirty days."})
    assert set(result.outputs["clauses"]["scores"]) == {"negative", "positive"}
    assert [m["source"] for m in loaded_models()] == [str((project / "models" / "clf").resolve())]


def test_a_missing_relative_model_directory_names_the_flow_files_folder(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "models" / "clf").mkdir(parents=True)  # beside the current directory, not the flow file
    (tmp_path / "models" / "clf" / "config.json").write_text("{}", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    flow_file = write_flow(tmp_path / "flows" / "review.flow.json", "models/clf")
    [problem] = Flow.load(flow_file).problems()
    assert problem.node == "clauses" and problem.field == "config.model"
    assert "models/clf" in problem.message and str((tmp_path / "flows").resolve()) in problem.message


def test_a_flow_without_a_file_reads_relative_paths_from_the_current_directory(tiny_bert: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tiny_bert.parent)
    flow = classify(Path(tiny_bert.name))
    assert flow.problems() == []
    assert set(flow.run({"text": "pay"}).outputs["clauses"]["scores"]) == {"negative", "positive"}


# -- errors ---------------------------------------------------------------------------------
def test_a_missing_model_directory_is_a_validation_problem(tmp_path: Path) -> None:
    with pytest.raises(FlowValidationError) as info:
        classify(tmp_path / "no-such-model").validate()
    assert "node 'clauses'" in str(info.value) and "config.model" in str(info.value)


def test_an_unknown_task_lists_the_known_ones(tiny_bert: Path) -> None:
    problems = Flow.from_dict(model_flow("transformers", {"model": str(tiny_bert), "task": "summarization",
                                                          "text": "x"})).problems()
    [p] = problems
    assert p.field == "config.task" and "text-classification" in p.message


def test_a_task_the_model_does_not_do_says_which_task_fits(tiny_ner: Path) -> None:
    with pytest.raises(FlowRunError) as info:
        classify(tiny_ner).run({"text": "hello"})
    text = str(info.value)
    assert "node 'clauses'" in text and "BertForTokenClassification" in text and "token-classification" in text


def test_corrupt_weights_are_reported(tiny_bert: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_bert, broken)
    (broken / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(FlowRunError) as info:
        classify(broken).run({"text": "hello"})
    assert "corrupt" in str(info.value) and "node 'clauses'" in str(info.value)


def test_text_that_is_not_text_names_the_upstream_node(tiny_bert: Path) -> None:
    flow = Flow.from_dict(model_flow(
        "transformers", {"model": str(tiny_bert), "task": "text-classification", "text": "{{ prep.output.result }}",
                         "device": "cpu"},
        extra_nodes=[{"id": "prep", "type": "python", "config": {"function": "builtins:list", "input_mapping": {}}}],
    ))
    result = flow.run(raise_on_error=False)
    assert result.outputs["prep"] == {"result": []}  # an empty list: an empty list out
    flow2 = Flow.from_dict(model_flow(
        "transformers", {"model": str(tiny_bert), "task": "text-classification", "text": "{{ prep.output }}",
                         "device": "cpu"},
        extra_nodes=[{"id": "prep", "type": "template", "config": {"template": "x"}}],
    ))
    with pytest.raises(FlowRunError) as info:
        flow2.run()
    assert "config.text" in str(info.value) and "'prep'" in str(info.value) and "dict" in str(info.value)


def test_too_long_text_without_truncation_is_a_clear_error(tiny_bert: Path) -> None:
    flow = classify(tiny_bert, truncation=False)
    with pytest.raises(FlowRunError) as info:
        flow.run({"text": "pay " * 300})
    assert "config.text" in str(info.value) and "128" in str(info.value)


# -- on a GPU -------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA device")
def test_the_same_node_runs_on_cuda_with_capture_and_peak_memory(tiny_bert: Path) -> None:
    flow = classify(tiny_bert, device="cuda", dtype="float16", capture=["bert.pooler"],
                    batch={"max_size": 16, "max_wait_ms": 2})
    texts = ["pay the invoice", "terminate with notice"]
    result = flow.run({"text": texts})
    extra = result["clauses"].extra
    assert extra["device"] == "cuda:0" and extra["dtype"] == "float16" and extra["peak_gpu_memory_mb"] > 0
    assert tensors(result, "clauses")["bert.pooler"].device.type == "cuda"
    expected = direct_logits(tiny_bert, texts)
    for item, logits in zip(result.outputs["clauses"], expected):
        assert torch.allclose(item["logits"], logits, atol=5e-2)


@pytest.mark.gpu
@pytest.mark.skipif("__import__('torch').cuda.device_count() < 2", reason="needs two or more CUDA devices")
def test_with_several_gpus_auto_runs_one_replica_per_gpu(tiny_bert: Path) -> None:
    from jupyter_flow.models import loaded_models

    flow = classify(tiny_bert, device="auto", batch={"max_size": 4, "max_wait_ms": 1})
    flow.plan.nodes["clauses"].node.ensure_warm()
    count = torch.cuda.device_count()
    assert sorted(m["device"] for m in loaded_models()) == [f"cuda:{i}" for i in range(count)]
    texts = [f"payment {i} of the invoice is due in {i % 7} days" for i in range(64)]

    async def main() -> list:
        return await asyncio.gather(*(flow.arun({"text": t}) for t in texts))

    results = asyncio.run(main())
    used = {d for r in results for d in r["clauses"].extra["device"].split(", ")}
    assert len(used) >= 2, "batches should be taken in turn by more than one replica"
    assert all(r["clauses"].extra["replicas"] == count for r in results)
    expected = direct_logits(tiny_bert, texts)
    for r, logits in zip(results, expected):
        assert torch.allclose(r.outputs["clauses"]["logits"], logits, atol=1e-4)
