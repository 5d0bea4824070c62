"""Tensor views: the pure parts (downsampling with the true shape kept, slices, the
NaN/Inf locator, run-to-run diffs with tokens lined up by text, token labels thinned to
what fits, the lines of a head view, thumbnails) and the widgets built from them, driven
from Python, down to the workbench's `inspect(node, tensor, ...)` on a real tiny BERT.
The attention views themselves are tested in tests/workbench/test_attention_views.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import torch
from model_fixtures import _fresh_models, make_tiny_bert, model_dir, model_flow  # noqa: F401  (fixtures)

from jupyter_flow.tensorview import (
    MAX_CELLS,
    align_tokens,
    attention_links,
    attention_thumbnail,
    axis_names,
    compare,
    downsample,
    histogram,
    nonfinite,
    plane,
    thin_labels,
    token_axes,
    token_axis,
)

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


NOW = "[CLS] late payments bear interest : the customer shall pay each invoice within thirty days of the invoice date . [SEP]".split()
BEFORE = "[CLS] the customer shall pay each invoice within 30 days of the date . [SEP]".split()


def test_tokens_are_aligned_by_text_not_by_position() -> None:
    al = align_tokens(NOW, BEFORE)
    assert (al.now, al.before) == (len(NOW), len(BEFORE)) == (21, 15)
    assert al.summary() == "21 tokens vs 15; aligned by text: 14 match"
    # "customer" is at 7 now and at 2 before: five tokens were put in front of it
    assert (NOW.index("customer"), BEFORE.index("customer")) in al.pairs
    assert all(NOW[i] == BEFORE[j] for i, j in al.pairs)
    assert align_tokens(BEFORE, BEFORE).summary() == "the same 15 tokens"


def test_compare_lines_up_token_axes_by_text() -> None:
    rng = np.random.default_rng(0)
    words = sorted(set(NOW) | set(BEFORE))
    table = {w: rng.normal(size=8) for w in words}  # a token's vector depends on its text alone
    now = np.stack([table[w] for w in NOW])[None]  # (1, tokens, features)
    before = np.stack([table[w] for w in BEFORE])[None]
    by_text = compare(now, before, tokens=NOW, previous_tokens=BEFORE)
    assert by_text.token_axes == (1,) and by_text.alignment is not None and by_text.alignment.matched == 14
    assert by_text.changed == 0 and by_text.difference.shape == (1, 14, 8)
    by_position = compare(now, before)  # what the view did before: the first 15 positions against each other
    assert by_position.changed > 0 and by_position.alignment is None
    # attention: both token axes are lined up
    att_now, att_before = rng.random((2, 3, 21, 21)), rng.random((2, 3, 15, 15))
    at = align_tokens(NOW, BEFORE)
    now_at, before_at = [i for i, _ in at.pairs], [j for _, j in at.pairs]
    att_now[np.ix_(range(2), range(3), now_at, now_at)] = att_before[np.ix_(range(2), range(3), before_at, before_at)]
    d = compare(att_now, att_before, tokens=NOW, previous_tokens=BEFORE)
    assert d.token_axes == (2, 3) and d.changed == 0 and d.difference.shape == (2, 3, 14, 14)
    assert token_axes((4, 32), (4, 32), 9, 9) == () and token_axes((1, 9, 32), (1, 7, 32), 9, 7) == (1,)


def test_axis_names_say_what_each_axis_is() -> None:
    assert axis_names(4, tokens=(2, 3), attention=True) == ["layer", "head", "query token", "key token"]
    assert axis_names(3, tokens=(1,)) == ["axis 0", "token", "axis 2"]


def test_labels_are_thinned_to_what_fits_and_follow_the_zoom() -> None:
    every = thin_labels(20, 400, min_px=12)  # 20 px a position: all fit
    assert every == list(range(20))
    shown = thin_labels(128, 640, min_px=12)  # 5 px a position: every 3rd
    assert shown[:3] == [0, 3, 6] and len(shown) == 43
    gaps = {b - a for a, b in zip(shown, shown[1:])}
    assert gaps == {3} and 640 / 128 * 3 >= 12
    zoomed = thin_labels(128, 640, min_px=12, start=39.5, stop=71.5)  # 20 px a position
    assert zoomed == list(range(40, 72))
    assert thin_labels(0, 100) == [] and thin_labels(3000, 500)[:2] == [0, 100]


def test_head_view_links_keep_the_heaviest_within_a_budget() -> None:
    att = torch.softmax(torch.randn(4, 50, 50) * 3, dim=-1)
    links = attention_links(att, [0, 2], budget=300)
    assert set(links.head) == {0, 2} and len(links) <= 300 + 2 * 50
    assert links.weight == sorted(links.weight)  # the heaviest drawn last, on top
    kept = att[[0, 2]].numpy()
    assert links.hidden == kept.size - len(links)
    assert min(links.weight) >= links.floor or links.floor > 0
    for h in (0, 2):  # every token keeps its strongest link
        for s in range(50):
            t = int(att[h, s].argmax())
            assert any(hh == h and ss == s and tt == t for hh, ss, tt in zip(links.head, links.source, links.target))
    everything = attention_links(att[1])
    assert len(everything) == 2500 and everything.hidden == 0
    with pytest.raises(IndexError, match="head 4 is out of range"):
        attention_links(att, [4])


def test_attention_thumbnail_is_small_and_scaled() -> None:
    weights = np.zeros((128, 128))
    weights[:, 0] = 1.0
    small = attention_thumbnail(weights, 64)
    assert small.shape == (64, 64) and small.max() == pytest.approx(1.0) and small[:, 1:].max() == 0
    assert attention_thumbnail(np.zeros((3, 3))).max() == 0


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
    assert list(two.heatmap.row_axis.tick_labels.values()) == ["0 [CLS]", "1 the", "2 fee", "3 [SEP]"]
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


def test_a_heatmap_of_many_tokens_takes_room_thins_its_labels_and_zooms() -> None:
    from jupyter_flow.workbench.plots import MIN_CELL_PX, Heatmap

    tokens = [f"{i} w{i}" for i in range(128)]
    hm = Heatmap(np.random.default_rng(0).random((128, 128)), row_labels=tokens, col_labels=tokens)
    margin = hm.figure.fig_margin
    assert int(hm.figure.layout.min_width[:-2]) >= 128 * MIN_CELL_PX + margin["left"] + margin["right"]
    height = int(hm.figure.layout.height[:-2]) - margin["top"] - margin["bottom"]
    ticks = [int(t) for t in hm.row_axis.tick_values]
    assert height / 128 * (ticks[1] - ticks[0]) >= 12  # no two labels closer than 12 px
    assert [hm.row_axis.tick_labels[str(t)] for t in ticks[:2]] == [tokens[0], tokens[ticks[1]]]
    assert type(hm.figure.interaction).__name__ == "PanZoom"
    hm.row_scale.min, hm.row_scale.max = 9.5, 29.5  # what zooming in does: every row of the window labelled
    assert [int(t) for t in hm.row_axis.tick_values] == list(range(10, 30))
    hm.reset_zoom()
    assert (hm.row_scale.min, hm.row_scale.max) == (-0.5, 127.5) and [int(t) for t in hm.row_axis.tick_values] == ticks
    hm.zoom_toggle.value = False  # zooming takes the pointer: off, clicks reach the cells
    assert hm.figure.interaction is None and "click a cell" in hm.hint.value
    hm.zoom_toggle.value = True
    assert hm.figure.interaction is hm.zoom


def test_diff_view_shows_the_numbers_and_the_difference() -> None:
    from jupyter_flow.workbench.tensor_diff import DiffView

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


def test_diff_view_of_attention_names_its_axes_and_says_how_tokens_were_aligned() -> None:
    from jupyter_flow.workbench.tensor_diff import DiffView

    att_now, att_before = torch.rand(2, 2, len(NOW), len(NOW)), torch.rand(2, 2, len(BEFORE), len(BEFORE))
    view = DiffView(att_now, att_before, name="attentions", tokens=NOW, previous_tokens=BEFORE)
    text = view.widget.children[0].value
    assert "21 tokens vs 15; aligned by text: 14 match" in text
    assert view.view is not None and [s.description for s in view.view.sliders] == ["layer", "head"]
    heatmap = view.view.heatmap
    assert (heatmap.rows_name, heatmap.cols_name) == ("query token", "key token")
    labels = list(heatmap.row_axis.tick_labels.values())
    assert labels[0] == "0 [CLS]" and all(label.split(" ", 1)[1] in BEFORE for label in labels)


# -- in the workbench -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tv") / "bert", layers=2, heads=2)


def test_workbench_inspect_opens_attention_and_compares_with_the_previous_run(bert: Path) -> None:
    from jupyter_flow.capture import tokens
    from jupyter_flow.workbench import Workbench
    from jupyter_flow.workbench.attention import AttentionView
    from jupyter_flow.workbench.tensor_diff import DiffView

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
        assert view.axis.tokens == toks and view.heads == [0] and view.layer.value == 1
        drawn = view.links
        att = result.tensors("clauses")["attentions"][1, 0].numpy()
        assert drawn is not None and all(abs(att[s, t] - w) < 1e-6 for s, t, w in zip(drawn.source, drawn.target, drawn.weight))
        model = wb.inspect("clauses", "attentions", mode="model")
        assert isinstance(model, AttentionView) and model.model_view is not None and len(model.model_view.thumbs) == 4
        focused = wb.inspect("clauses", "attentions", layer=0, head=[0, 1], focus=2)
        assert focused.heads == [0, 1] and "value='l2' class='jf-hv-f' hidden checked" in focused.head_view.value
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
        now = tokens(again, "clauses")[0]
        # every earlier token is found again, [SEP] too though it moved three places on
        assert longer.alignment is not None and longer.alignment.matched == len(toks)
        assert longer.alignment.pairs[-1] == (len(now) - 1, len(toks) - 1)
        assert f"{len(now)} tokens vs {len(toks)}; aligned by text: {len(toks)} match" in longer.widget.children[0].value

    asyncio.run(scenario())
