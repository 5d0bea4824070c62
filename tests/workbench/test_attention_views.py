"""The attention views driven from Python, without a browser: the head view's tokens,
lines and head chips, the focus on one token, the model view's thumbnails and what a
click on one opens, the map of one head or the mean of several, and a 128-token input
kept within its budget of lines."""

from __future__ import annotations

import base64
import re
import struct
import zlib

import numpy as np
import pytest
import torch

pytest.importorskip("bqplot")

from jupyter_flow.workbench.attention import LINE_BUDGET, AttentionView, head_colour  # noqa: E402
from jupyter_flow.workbench.tensor_panel import make_view  # noqa: E402

TOKENS = ["[CLS]", "the", "fee", "is", "due", "[SEP]"]


def _attention(layers: int = 3, heads: int = 4, n: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(layers, heads, n, n, generator=g) * 3, dim=-1)


def _paths(html: str) -> list[tuple[int, int, int]]:
    """(source, target, head) of each line the head view draws."""
    return [(int(s), int(t), int(h)) for s, t, h in re.findall(r"<path class='s(\d+) t(\d+) h(\d+)'", html)]


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    zlib.decompress(png[png.index(b"IDAT") + 4:])  # the image data is whole
    return width, height


def test_attention_tensors_open_in_the_head_view_with_tokens_on_both_sides() -> None:
    att = _attention()
    view = make_view(att, name="attentions", tokens=TOKENS, layer=2, head=1)
    assert isinstance(view, AttentionView) and view.mode.value == "heads"
    html = view.head_view.value
    for i, token in enumerate(TOKENS):  # attending on the left, attended on the right
        assert f"jf-l{i}'" in html and f"jf-r{i}'" in html and f">{token}</label>" in html
    lines = _paths(html)
    assert lines and {h for _, _, h in lines} == {1}
    w = att[2, 1].numpy()
    assert all(w[s, t] >= view.links.floor or t == int(w[s].argmax()) for s, t, _ in lines)
    assert "layer 2, head 1" in html


def test_head_chips_pick_the_heads_each_in_its_colour() -> None:
    view = AttentionView(_attention(), tokens=TOKENS, head=0)
    assert view.chips[0].style.button_color == head_colour(0) and view.chips[1].style.button_color != head_colour(1)
    view.chips[2].click()
    assert view.heads == [0, 2] and {h for _, _, h in _paths(view.head_view.value)} == {0, 2}
    assert f"path.h2 {{stroke:{head_colour(2)}}}" in view.head_view.value
    assert view.chips[2].style.button_color == head_colour(2) and "jf-head-on" in view.chips[2]._dom_classes
    view.chips[0].click()
    assert view.heads == [2]
    view.chips[2].click()  # the last head stays: a head view of no head shows nothing
    assert view.heads == [2]
    view.all_button.click()
    assert view.heads == [0, 1, 2, 3] and {h for _, _, h in _paths(view.head_view.value)} == {0, 1, 2, 3}
    view.layer.value = 1  # the layer slider redraws
    assert "layer 1, heads 0, 1, 2, 3" in view.head_view.value


def test_a_focused_token_starts_checked_and_all_lines_otherwise() -> None:
    view = AttentionView(_attention(), tokens=TOKENS)
    assert "value='all' class='jf-hv-f' hidden checked" in view.head_view.value
    view.show(focus=3)
    html = view.head_view.value
    assert "value='l3' class='jf-hv-f' hidden checked" in html and "value='all' class='jf-hv-f' hidden checked" not in html
    # the style shows a focused token's lines alone: one rule per token and side
    assert ":has(input[value=l3]:checked) path.s3" in html and ":has(.jf-r3:hover) path.t3" in html
    with pytest.raises(ValueError, match="focus 6 is out of range: the input has 6 tokens"):
        view.show(focus=6)


def test_the_model_view_shows_every_layer_and_head_and_opens_one() -> None:
    att = _attention(layers=3, heads=4)
    view = AttentionView(att, tokens=TOKENS)
    view.show(mode="model")
    mv = view.model_view
    assert mv is not None and view.body.children == (mv.widget,)
    assert sorted(mv.thumbs) == [(layer, head) for layer in range(3) for head in range(4)]
    labels = [c.value for c in mv.grid.children if hasattr(c, "value")]
    assert any("layer 2" in v for v in labels) and any("head 3" in v for v in labels)
    style = mv.widget.children[0].value
    found = dict(re.findall(r"jf-mv-(\d+-\d+) \{background-image:url\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", style))
    assert len(found) == 12 and _png_size(base64.b64decode(found["2-3"])) == (6, 6)
    assert view.layer.layout.display == "none"  # the model view has every layer: no slider
    mv.thumbs[2, 3].click()
    assert view.mode.value == "heads" and view.layer.value == 2 and view.heads == [3]
    assert {h for _, _, h in _paths(view.head_view.value)} == {3}
    view.show(mode="model")
    assert "jf-mv-current" in mv.thumbs[2, 3]._dom_classes and "jf-mv-current" not in mv.thumbs[0, 0]._dom_classes


def test_the_map_draws_one_head_or_the_mean_of_several() -> None:
    att = _attention()
    view = AttentionView(att, tokens=TOKENS, layer=1, head=2, mode="map")
    assert view.map is not None
    assert np.allclose(view.map.mark.color, att[1, 2].numpy(), atol=1e-6)
    assert list(view.map.row_axis.tick_labels.values()) == [f"{i} {t}" for i, t in enumerate(TOKENS)]
    view.show(head=[0, 3])
    assert np.allclose(view.map.mark.color, att[1, [0, 3]].mean(0).numpy(), atol=1e-6)
    assert "mean of heads 0, 3" in view.map.figure.title


def test_wrong_layers_heads_and_modes_are_refused_with_the_range() -> None:
    view = AttentionView(_attention(layers=3, heads=4), tokens=TOKENS)
    with pytest.raises(ValueError, match="layer 3 is out of range: the model has 3 layers"):
        view.show(layer=3)
    with pytest.raises(ValueError, match="each layer has 4 heads"):
        view.show(head=9)
    with pytest.raises(ValueError, match="mode 'grid' is not one of heads, model, map"):
        view.show(mode="grid")
    with pytest.raises(ValueError, match=r"attention probabilities are \(layers, heads, tokens, tokens\)"):
        AttentionView(torch.rand(4, 4))


def test_128_tokens_stay_within_the_budget_of_lines_and_every_token_is_labelled() -> None:
    n = 128
    tokens = ["[CLS]", *[f"word{i}" for i in range(n - 2)], "[SEP]"]
    att = _attention(layers=2, heads=4, n=n)
    view = AttentionView(att, tokens=tokens, head="all")
    lines = _paths(view.head_view.value)
    assert len(lines) <= LINE_BUDGET + 4 * n and len(lines) == len(view.links)
    sources = {(h, s) for s, _, h in lines}
    assert len(sources) == 4 * n  # every token keeps its strongest line in every head
    assert all(f">{t}</label>" in view.head_view.value for t in tokens)
    assert f"viewBox='0 0 1000 {16 * n}'" in view.head_view.value  # one 16 px row a token
    assert len(view.head_view.value) < 400_000
