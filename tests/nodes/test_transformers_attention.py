"""`capture: [attentions]` on a real tiny BERT (built and saved by the test, loaded back
through the node): per input a (layers, heads, tokens, tokens) tensor, the input's tokens
kept for labels, rows that sum to 1, and run-to-run diffs that change where the input did."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from model_fixtures import _fresh_models, make_tiny_bert, model_dir, model_flow  # noqa: F401  (fixtures)

from jupyter_flow import Flow
from jupyter_flow.capture import tokens
from jupyter_flow.tensorview import compare, token_axis

LAYERS, HEADS = 3, 2
SHORT = "the customer shall pay"
TOL = 1e-6
LONG = "the supplier shall deliver the goods within thirty days of the order"


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("attn") / "bert", layers=LAYERS, heads=HEADS, seed=3)


def flow(model: Path, **extra: object) -> Flow:
    config = {"model": str(model), "task": "text-classification", "text": "{{text}}", "device": "cpu",
              "capture": ["attentions", "bert.encoder.layer.1"], **extra}
    return Flow.from_dict(model_flow("transformers", config, node_id="clauses", inputs={"text": {"type": "any"}}))


def expected_tokens(model: Path, text: str) -> list[str]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    return tok.convert_ids_to_tokens(tok(text)["input_ids"])


@pytest.mark.parametrize("batch", [None, {"max_size": 8, "max_wait_ms": 5}], ids=["direct", "micro-batched"])
def test_attentions_and_a_module_output_for_two_texts_of_different_lengths(bert: Path, batch: object) -> None:
    extra = {"batch": batch} if batch else {}
    result = flow(bert, **extra).run({"text": [SHORT, LONG]})
    captured = result.tensors("clauses")
    want = [expected_tokens(bert, SHORT), expected_tokens(bert, LONG)]
    assert len(want[0]) < len(want[1])
    assert tokens(result, "clauses") == want  # kept per input, without padding

    attentions = captured["attentions"]
    assert isinstance(attentions, list) and len(attentions) == 2  # one per input, never joined
    for att, toks in zip(attentions, want):
        assert tuple(att.shape) == (LAYERS, HEADS, len(toks), len(toks))
        # each query's attention over the input's own keys sums to 1: padding got none
        torch.testing.assert_close(att.sum(dim=-1), torch.ones(LAYERS, HEADS, len(toks)), atol=1e-5, rtol=0)
        assert bool((att >= 0).all())
    layer = captured["bert.encoder.layer.1"]
    assert [tuple(t.shape) for t in layer] == [(1, len(want[0]), 32), (1, len(want[1]), 32)]

    # the short text padded in a batch sees what it would see alone
    alone = flow(bert).run({"text": [SHORT]}).tensors("clauses")["attentions"][0]
    torch.testing.assert_close(attentions[0], alone, atol=1e-5, rtol=1e-4)


def test_a_single_text_gives_one_attention_tensor_and_token_labels(bert: Path) -> None:
    result = flow(bert).run({"text": LONG})
    att = result.tensors("clauses")["attentions"]
    toks = expected_tokens(bert, LONG)
    assert tuple(att.shape) == (LAYERS, HEADS, len(toks), len(toks))
    axis = token_axis(tokens(result, "clauses")[0], len(toks) + 2)  # an axis padded by two
    assert axis.labels[:3] == [f"0 {toks[0]}", f"1 {toks[1]}", f"2 {toks[2]}"]
    assert axis.padding == [False] * len(toks) + [True, True]
    # the trace summarises the tensor (shape and statistics), it does not dump it
    record = next(r for r in result.to_dict()["nodes"] if r["node"] == "clauses")
    summary = record["outputs"]["captured"]["attentions"]
    assert summary["__summary__"]["shape"] == [LAYERS, HEADS, len(toks), len(toks)]


def test_attentions_match_the_model_run_by_hand(bert: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bert)
    net = AutoModelForSequenceClassification.from_pretrained(bert, attn_implementation="eager").eval()
    with torch.no_grad():
        out = net(**tok([SHORT], return_tensors="pt"), output_attentions=True)
    want = torch.stack([a[0] for a in out.attentions])
    got = flow(bert).run({"text": SHORT}).tensors("clauses")["attentions"]
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_run_to_run_diff_is_non_zero_where_the_input_changed_and_zero_elsewhere(bert: Path) -> None:
    f = flow(bert)
    first = f.run({"text": ["the customer shall pay", "the supplier shall terminate"]})
    second = f.run({"text": ["the customer shall pay", "the supplier shall pay"]})  # only input 1, its last word
    a, b = first.tensors("clauses"), second.tensors("clauses")

    # float sums in a batch may differ in the last bits when the batch's other items change
    same = compare(b["attentions"][0], a["attentions"][0], atol=TOL)
    assert same.max_abs <= TOL and same.changed == 0 and same.cosine == pytest.approx(1.0)

    changed = compare(b["attentions"][1], a["attentions"][1], atol=TOL)
    assert changed.same_shape and changed.max_abs > 100 * TOL and changed.changed > 0
    assert changed.cosine is not None and changed.cosine < 1.0
    # the first layer's hidden state differs at the changed token ("terminate" -> "pay") only:
    # before attention mixes the tokens, nothing else moved
    layer = compare(b["bert.encoder.layer.1"][1], a["bert.encoder.layer.1"][1], atol=TOL)
    assert layer.changed > 0
    toks = tokens(second, "clauses")[1]
    where = toks.index("pay")
    first_layer = _embeddings(bert, ["the supplier shall terminate", "the supplier shall pay"])
    d = compare(first_layer[1], first_layer[0]).difference
    rows = (abs(d) > TOL).any(axis=-1)  # (tokens, hidden): same lengths, so the items were joined
    assert rows.tolist() == [i == where for i in range(len(toks))]


def _embeddings(model: Path, texts: list[str]) -> list[torch.Tensor]:
    """Embedding outputs (before any attention), through the node's capture."""
    config = {"model": str(model), "task": "text-classification", "text": "{{text}}", "device": "cpu",
              "capture": ["bert.embeddings"]}
    f = Flow.from_dict(model_flow("transformers", config, node_id="emb", inputs={"text": {"type": "any"}}))
    return list(f.run({"text": texts}).tensors("emb")["bert.embeddings"])


@pytest.mark.gpu
@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA device")
def test_attentions_captured_on_cuda_match_the_cpu_and_come_back_on_the_cpu(bert: Path) -> None:
    texts = [SHORT, LONG]
    on_gpu = flow(bert, device="cuda").run({"text": texts}).tensors("clauses")["attentions"]
    on_cpu = flow(bert).run({"text": texts}).tensors("clauses")["attentions"]
    for g, c in zip(on_gpu, on_cpu):
        assert g.device.type == "cpu"
        torch.testing.assert_close(g, c, atol=1e-4, rtol=1e-3)
