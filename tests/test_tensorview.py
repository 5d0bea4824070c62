"""Tensor views: the pure parts (downsampling with the true shape kept, slices, the
NaN/Inf locator, run-to-run diffs, token labels) and the widgets built from them, driven
from Python, down to the workbench's `inspect(node, tensor, ...)` on a real tiny BERT."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import torch
from model_fixtures import _fresh_models, make_tiny_bert, model_dir, model_flow  # noqa: F401  (fixtures)

from jupyter_flow.tensorview import MAX_CELLS, compare, downsample, histogram, nonfinite, plane, token_axis

pytest.importorskip("bqplot")


# -- pure parts -----------------------------------------------------------------------------
def test_downsample_keeps_the_true_shape_and_averages_blocks() -> None:
    a = np.arange(1000 * 300, dtype=float).reshape(1000, 300)
    cut = downsample(a)
    assert cut.shape == (1000, 300) and cut.reduced
    rows, cols = cut.values.shape
    assert rows <= MAX_CELLS and cols <= MAX_CELLS
    sr, sc = cut.step
    assert cut.rows[:2] == [0, sr] and cut.cols[:2] == [0, sc]
    assert cut.values[0, 0] == pytest.approx(a[:sr, :sc].mean())
    # the ragged last block averages only the values that exist
    assert cut.values[-1, -1] == pytest.approx(a[cut.rows[-1]:, cut.cols[-1]:].mean())


def test_small_arrays_are_not_touched_and_a_nan_block_stays_visible() -> None:
    small = torch.randn(7, 5)
    cut = downsample(small)
    assert not cut.reduced and np.array_equal(cut.values, small.double().numpy())
    big = np.zeros((600, 600))
    big[301, 7] = np.inf
    cut = downsample(big)
    bad = np.argwhere(np.isnan(cut.values)).tolist()
    assert bad == [[301 // cut.step[0], 7 // cut.step[1]]]  # the one block holding the Inf


def test_plane_histogram_and_nonfinite_locator() -> None:
    t = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    assert np.array_equal(plane(t, [1, 2]), t[1, 2].double().numpy())
    assert plane(t).shape == (4, 5)
    with pytest.raises(IndexError, match="axis 1 of size 3"):
        plane(t, [0, 3])
    counts, edges = histogram(t, bins=10)
    assert sum(counts) == t.numel() and len(edges) == 11

    x = torch.ones(4, 6)
    x[1, 2], x[3, 0], x[3, 5] = float("nan"), float("inf"), float("-inf")
    found = nonfinite(x)
    assert (found.nan, found.inf) == (1, 2)
    assert found.positions == [(1, 2), (3, 0), (3, 5)]
    assert nonfinite(torch.ones(3)).any is False


def test_compare_numbers_and_where_the_difference_is() -> None:
    a = torch.randn(2, 6, 8)
    b = a.clone()
    b[1, 3] += 0.5
    d = compare(b, a)
    assert d.same_shape and d.max_abs == pytest.approx(0.5) and d.changed == 8
    assert (np.abs(d.difference) > 0).any(axis=-1).tolist() == [[False] * 6, [i == 3 for i in range(6)]]
    assert 0 < d.cosine < 1
    same = compare(a, a.clone())
    assert same.max_abs == 0 and same.changed == 0 and same.cosine == pytest.approx(1.0)
    # a longer input: the common part is compared, both shapes kept
    longer = torch.cat([a, torch.ones(2, 3, 8)], dim=1)
    d = compare(longer, a)
    assert d.shape == (2, 9, 8) and d.previous_shape == (2, 6, 8) and d.changed == 0 and d.compared == a.numel()
    with pytest.raises(ValueError, match="cannot compare a 2-D"):
        compare(a[0], a)


def test_token_axis_labels_positions_and_marks_padding() -> None:
    axis = token_axis(["[CLS]", "pay", "[SEP]"], 5)
    assert axis.labels[:3] == ["0 [CLS]", "1 pay", "2 [SEP]"]
    assert axis.padding == [False, False, False, True, True]
    assert axis.labels[3].startswith("3 ") and "[PAD]" in axis.labels[3]
    assert token_axis(["a", "[PAD]"], 2).padding == [False, True]
    assert token_axis(None, 3).labels == ["0", "1", "2"]


# -- widgets --------------------------------------------------------------------------------
def test_views_are_chosen_by_shape() -> None:
    from jupyter_flow.workbench.tensors import Heatmap, Strip, TensorView

    short = TensorView(torch.randn(16), name="bias")
    assert isinstance(short.heatmap, Strip) and list(short.heatmap.mark.x[:2]) == ["0", "1"]  # histogram + strip
    assert "jf-histogram" in short.widget.children[1]._dom_classes
    long = TensorView(torch.randn(1000), name="big")
    assert long.heatmap is None  # histogram only

    tokens = ["[CLS]", "the", "fee", "[SEP]"]
    hidden = torch.randn(4, 32)
    two = TensorView(hidden, name="hidden", tokens=tokens)
    assert isinstance(two.heatmap, Heatmap)
    assert list(two.heatmap.mark.row) == ["0 [CLS]", "1 the", "2 fee", "3 [SEP]"]
    assert np.allclose(two.heatmap.mark.color, hidden.numpy(), atol=1e-6)

    t = torch.randn(3, 5, 4, 6)
    many = TensorView(t, name="t")
    assert [s.max for s in many.sliders] == [2, 4]
    many.sliders[0].value, many.sliders[1].value = 2, 3
    assert np.allclose(many.heatmap.mark.color, t[2, 3].numpy(), atol=1e-6)


def test_a_large_tensor_sends_at_most_256_by_256_cells_and_shows_its_shape() -> None:
    from jupyter_flow.workbench.tensors import TensorView

    view = TensorView(torch.randn(2, 2048, 768), name="hidden")
    assert view.heatmap is not None
    rows, cols = np.asarray(view.heatmap.mark.color).shape
    assert rows <= MAX_CELLS and cols <= MAX_CELLS
    assert "2\u00d72048\u00d7768" in view.widget.children[0].value


def test_nan_and_inf_are_listed_and_drawn_in_the_highlight_colour() -> None:
    from jupyter_flow.workbench.tensors import NULL_COLOUR, TensorView

    x = torch.zeros(5, 5)
    x[2, 3] = float("nan")
    view = TensorView(x, name="x")
    head = view.widget.children[0].value
    assert "1 NaN, 0 Inf" in head and "[2, 3]=nan" in head
    assert np.isnan(np.asarray(view.heatmap.mark.color)[2, 3]) and view.heatmap.mark.null_color == NULL_COLOUR


def test_attention_view_picks_layer_and_head_and_draws_all_heads() -> None:
    from jupyter_flow.workbench.tensors import AttentionView, make_view

    att = torch.softmax(torch.randn(3, 4, 5, 5), dim=-1)
    tokens = ["[CLS]", "the", "fee", "is", "[SEP]"]
    view = make_view(att, name="attentions", tokens=tokens, layer=2, head=1)
    assert isinstance(view, AttentionView)
    assert list(view.map.mark.row) == list(view.map.mark.column) == [f"{i} {t}" for i, t in enumerate(tokens)]
    assert np.allclose(view.map.mark.color, att[2, 1].numpy(), atol=1e-6)
    view.show(layer=0, head="all")
    assert len(view.grid.children) == 4 and view.body.children == (view.grid,)
    view.show(head=3)
    assert np.allclose(view.map.mark.color, att[0, 3].numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="layer 3 is out of range: the model has 3 layers"):
        view.show(layer=3)
    with pytest.raises(ValueError, match="each layer has 4 heads"):
        view.show(head=9)


def test_diff_view_shows_the_numbers_and_the_difference() -> None:
    from jupyter_flow.workbench.tensors import DiffView

    a = torch.randn(6, 8)
    b = a.clone()
    b[2] += 1.0
    view = DiffView(b, a, name="h")
    text = view.widget.children[0].value
    assert "max |diff|</i> 1" in text and "changed</i> 8 of 48" in text and "cosine similarity" in text
    assert view.view is not None and view.view.heatmap is not None
    drawn = np.asarray(view.view.heatmap.mark.color)
    assert np.allclose(drawn[2], 1.0, atol=1e-5) and np.allclose(np.delete(drawn, 2, axis=0), 0.0)
    assert "identical" in DiffView(a, a.clone()).widget.children[1].value


# -- in the workbench -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tv") / "bert", layers=2, heads=2)


def test_workbench_inspect_opens_attention_and_compares_with_the_previous_run(bert: Path) -> None:
    from jupyter_flow.capture import tokens
    from jupyter_flow.workbench import Workbench
    from jupyter_flow.workbench.tensors import AttentionView, DiffView

    def config(text: str) -> dict[str, object]:
        return {"model": str(bert), "task": "text-classification", "text": text, "device": "cpu",
                "capture": ["attentions", "bert.pooler"]}

    async def scenario() -> None:
        wb = Workbench(model_flow("transformers", config("{{t}}"), node_id="clauses",
                                  inputs={"t": {"type": "text", "default": "the fee is due"}}))
        result = await wb.run()
        assert result is not None and result.ok
        assert isinstance(wb.inspect("clauses"), str)  # the node's page, as before
        toks = tokens(result, "clauses")[0]
        view = wb.inspect("clauses", "attentions", layer=1, head=0)
        assert isinstance(view, AttentionView) and wb.tensor_panel.view is view
        assert list(view.map.mark.row) == [f"{i} {t}" for i, t in enumerate(toks)]
        assert np.allclose(view.map.mark.color, result.tensors("clauses")["attentions"][1, 0].numpy(), atol=1e-6)
        assert wb.tensor_panel.picker.options[:2] == ("attentions", "bert.pooler")
        assert wb.tensor_panel.widget.layout.display != "none"
        assert wb.inspect("clauses", "attentions", compare=True) is None  # nothing to compare with yet
        with pytest.raises(KeyError, match="no tensor 'nope'.*attentions"):
            wb.inspect("clauses", "nope")

        wb.configure("clauses", {"type": "transformers", "config": config("{{t}} within thirty days")})
        again = await wb.run_from("clauses")
        assert again is not None and again.ok
        diff = wb.inspect("clauses", "bert.pooler", compare=True)
        assert isinstance(diff, DiffView) and diff.diff.max_abs > 0 and diff.diff.same_shape
        longer = wb.inspect("clauses", "attentions", compare=True)
        assert isinstance(longer, DiffView) and not longer.diff.same_shape  # more tokens now

    asyncio.run(scenario())
