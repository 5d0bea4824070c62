"""Attention of a 128-token input in the notebook workbench, in a real JupyterLab in real
Chromium: a tiny BERT made here (its query and key weights widened, so that its heads
attend sharply, as trained ones do) runs on a 128-token text with its attentions
captured, and the Inspect tab shows them.

- Head view: 128 tokens on each side, each on a row of its own at 12 px, none cut; lines
  drawn; hovering an attending token leaves only its lines, clicking an attended one
  keeps only the lines into it; a head chip hides that head's lines.
- Model view: every layer and head as a labelled thumbnail of at least 36 px; a click on
  one opens that head in the head view.
- Map: at least as wide as the panel, no two axis labels overlapping; zooming in labels
  more tokens.
Screenshots go to test-artifacts/ (attention-*); zero page errors."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import (  # noqa: E402
    Browser,
    JupyterLab,
    browser_fixture,
    error_outputs,
    lab_serving,
    open_notebook,
    run_all_cells,
    wait_all_cells_ran,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]
PANEL = ".jf-workbench .jf-tensor-panel"
HEADS = f"{PANEL} .jf-head-view"
LAYERS, HEAD_COUNT, TOKENS = 3, 4, 128

CELLS = [
    f"""import torch
from transformers import AutoModelForSequenceClassification
from jupyter_flow_examples.models import make_tiny_bert
from jupyter_flow.workbench import Workbench

WORDS = ("the customer shall pay each invoice of the supplier within thirty days after receipt ; "
         "late payments bear interest at two percent per month until paid in full").split()
path = make_tiny_bert("models/bert128", words=sorted(set(WORDS)), layers={LAYERS}, heads={HEAD_COUNT}, max_positions=128)
model = AutoModelForSequenceClassification.from_pretrained(path)
g = torch.Generator().manual_seed(0)
with torch.no_grad():  # sharp attention, as a trained model has
    for layer in model.bert.encoder.layer:
        for w in (layer.attention.self.query.weight, layer.attention.self.key.weight):
            w.copy_(torch.randn(w.shape, generator=g) * 0.5)
model.save_pretrained(path)
text = " ".join(WORDS[i % len(WORDS)] for i in range({TOKENS - 2}))""",
    """wb = Workbench()
wb.configure_flow({"name": "attention128", "inputs": {"text": {"type": "text", "default": text}}})
wb.add_node("transformers", "classify", {"model": str(path), "task": "text-classification", "text": "{{text}}",
                                         "capture": ["attentions"]}, position=(120, 120))
wb""",
    """result = await wb.run()
wb.select("classify")
view = wb.inspect("classify", "attentions", layer=2, head="all")
print(result.status, tuple(result.tensors("classify")["attentions"].shape))""",
]


def _notebook() -> str:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    return str(nbformat.writes(nb))


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[JupyterLab]:
    with lab_serving(tmp_path, {"attention.ipynb": _notebook()}) as server:
        yield server


browser = browser_fixture("attention")


def _shot(page: Any, browser: Browser, selector: str, name: str) -> None:
    """Scroll `selector` into view and save the page as the browser sees it."""
    page.locator(selector).first.scroll_into_view_if_needed(timeout=10_000)
    page.wait_for_timeout(400)
    browser.screenshot(name)


def _visible_lines(page: Any) -> list[str]:
    return page.eval_on_selector_all(f"{HEADS} path", "els => els.filter(e => getComputedStyle(e).visibility === 'visible')"
                                                      ".map(e => e.getAttribute('class'))")


def _labels(page: Any, side: str) -> list[dict[str, Any]]:
    return page.eval_on_selector_all(
        f"{HEADS} .jf-hv-{side} .jf-hv-tok",
        """els => els.map(e => { const r = e.getBoundingClientRect(); const s = getComputedStyle(e);
            return {text: e.textContent, top: r.top, height: r.height, font: parseFloat(s.fontSize),
                    cut: e.scrollWidth > e.clientWidth + 1}; })""")


def _ticks(page: Any, selector: str) -> list[dict[str, Any]]:
    return page.eval_on_selector_all(
        f"{selector} .tick text",
        "els => els.filter(e => e.textContent).map(e => { const r = e.getBoundingClientRect();"
        " return {text: e.textContent, left: r.left, top: r.top, right: r.right, bottom: r.bottom,"
        " turned: (e.getAttribute('transform') || '').includes('-60'),"
        " at: (e.parentNode.querySelector('line') || e).getBoundingClientRect().left}; })")


def _overlapping(boxes: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Labels drawn over each other: level ones whose boxes meet, and labels turned by 60
    degrees (the column axis) whose parallel lines of text (through their ticks) are closer
    than 9 px."""
    level = [b for b in boxes if not b["turned"]]
    hits = []
    for i, a in enumerate(level):
        for b in level[i + 1:]:
            if a["left"] < b["right"] - 1 and b["left"] < a["right"] - 1 and a["top"] < b["bottom"] - 1 and b["top"] < a["bottom"] - 1:
                hits.append((a["text"], b["text"]))
    turned = sorted((b for b in boxes if b["turned"]), key=lambda b: b["at"])
    hits += [(a["text"], b["text"]) for a, b in zip(turned, turned[1:]) if (b["at"] - a["at"]) * 0.866 < 9]
    return hits


def test_attention_of_128_tokens_is_legible_in_head_model_and_map_views(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    page.set_viewport_size({"width": 1500, "height": 1300})
    browser.screenshot_at_end("final")
    open_notebook(page, lab, "attention.ipynb")
    run_all_cells(page)
    wait_all_cells_ran(page, timeout_s=300)
    assert error_outputs(page) == []
    out = page.locator(".jp-Notebook .jp-CodeCell").nth(2).locator(".jp-OutputArea").inner_text()
    assert out.startswith(f"ok ({LAYERS}, {HEAD_COUNT}, {TOKENS}, {TOKENS})"), out

    # -- head view: every token on a row of its own, legible, lines drawn ----------------------
    page.wait_for_function(f"() => document.querySelectorAll('{HEADS} .jf-hv-tok').length === {2 * TOKENS}", timeout=60_000)
    for side in ("left", "right"):
        labels = _labels(page, side)
        assert len(labels) == TOKENS
        assert labels[0]["text"] == "[CLS]" and labels[-1]["text"] == "[SEP]"
        assert min(lab["font"] for lab in labels) >= 12 and min(lab["height"] for lab in labels) >= 15
        assert all(b["top"] - a["top"] >= 15 for a, b in zip(labels, labels[1:]))  # no two rows overlap
        assert not [lab["text"] for lab in labels if lab["cut"]]
    lines = page.locator(f"{HEADS} path").count()
    assert lines > TOKENS, lines
    assert len(_visible_lines(page)) == lines
    _shot(page, browser, HEADS, "head-view")

    # hovering an attending token leaves its lines alone
    page.locator(f"{HEADS} .jf-l5").hover()
    shown = _visible_lines(page)
    assert shown and all(c.split()[0] == "s5" for c in shown), shown[:5]
    assert {c.split()[2] for c in shown} == {f"h{h}" for h in range(HEAD_COUNT)}  # a line per head at least
    _shot(page, browser, f"{HEADS} .jf-l5", "head-view-hover")

    # clicking an attended token keeps the lines into it, after the pointer leaves
    page.locator(f"{HEADS} .jf-r9").click()
    page.mouse.move(5, 5)
    shown = _visible_lines(page)
    assert shown and all(c.split()[1] == "t9" for c in shown), shown[:5]
    _shot(page, browser, f"{HEADS} .jf-r9", "head-view-focus")
    page.locator(f"{HEADS} .jf-hv-all").click()
    assert len(_visible_lines(page)) == lines

    # a head chip hides that head's lines
    page.locator(f"{PANEL} .jf-head-chip", has_text="1").first.click()
    page.wait_for_function(f"() => document.querySelectorAll('{HEADS} path.h1').length === 0"
                           f" && document.querySelectorAll('{HEADS} path.h0').length > 0", timeout=15_000)

    # -- model view: every layer and head, labelled; a click opens one ------------------------
    page.locator(f"{PANEL} .jf-attention-mode button", has_text="model view").click()
    page.wait_for_function(f"() => document.querySelectorAll('{PANEL} .jf-mv-thumb').length === {LAYERS * HEAD_COUNT}",
                           timeout=30_000)
    page.wait_for_timeout(500)
    thumbs = page.eval_on_selector_all(
        f"{PANEL} .jf-mv-thumb",
        "els => els.map(e => { const r = e.getBoundingClientRect();"
        " return {w: r.width, h: r.height, image: getComputedStyle(e).backgroundImage.slice(0, 27)}; })")
    assert all(t["w"] >= 36 and abs(t["w"] - t["h"]) <= 2 for t in thumbs), thumbs[:3]
    assert all(t["image"] == 'url("data:image/png;base64,' for t in thumbs), thumbs[:3]
    mv_text = page.locator(f"{PANEL} .jf-model-view").inner_text()
    assert all(f"layer {i}" in mv_text for i in range(LAYERS)) and all(f"head {h}" in mv_text for h in range(HEAD_COUNT))
    _shot(page, browser, f"{PANEL} .jf-model-view", "model-view")
    page.locator(f"{PANEL} .jf-mv-1-3").click()
    page.wait_for_function(f"() => document.querySelector('{HEADS}') && document.querySelector('{HEADS}').offsetParent"
                           f" && document.querySelectorAll('{HEADS} path.h3').length > 0"
                           f" && document.querySelectorAll('{HEADS} path:not(.h3)').length === 0", timeout=15_000)
    assert "layer 1, head 3" in page.locator(HEADS).inner_text()
    _shot(page, browser, HEADS, "model-view-opened")

    # -- map: as wide as the panel or wider, labels apart, more of them when zoomed ----------
    page.locator(f"{PANEL} .jf-attention-mode button", has_text="map").click()
    amap = f"{PANEL} .jf-attention-map"
    page.wait_for_function(f"() => document.querySelectorAll('{amap} .heatmapcell').length >= {TOKENS * TOKENS}", timeout=30_000)
    page.wait_for_timeout(800)
    panel_width = page.evaluate(f"() => document.querySelector('{PANEL}').getBoundingClientRect().width")
    map_width = page.evaluate(f"() => document.querySelector('{amap}').getBoundingClientRect().width")
    assert map_width >= panel_width - 30, (map_width, panel_width)
    ticks = _ticks(page, amap)
    assert len([t for t in ticks if t["turned"]]) >= 20 and len([t for t in ticks if not t["turned"]]) >= 20, ticks
    assert not _overlapping(ticks), _overlapping(ticks)[:5]
    _shot(page, browser, amap, "map")
    box = page.locator(f"{amap} .heatmapcell").nth(TOKENS * 20 + 20).bounding_box()
    page.mouse.move(box["x"] + 1, box["y"] + 1)
    for _ in range(6):
        page.mouse.wheel(0, -300)
        page.wait_for_timeout(150)
    # the kernel labels the part in view again: every position of it, each with its token
    page.wait_for_function(
        f"""() => {{
            const t = [...document.querySelectorAll('{amap} .tick text')].map(e => e.textContent).filter(s => / /.test(s));
            const rows = [...new Set(t.map(s => parseInt(s)))].sort((a, b) => a - b);
            return rows.length >= 8 && rows.every((r, i) => i === 0 || r - rows[i - 1] <= 2);
        }}""", timeout=30_000)
    page.wait_for_timeout(800)
    zoomed = _ticks(page, amap)
    assert not _overlapping(zoomed), _overlapping(zoomed)[:5]
    rows = sorted({int(t["text"].split()[0]) for t in zoomed if " " in t["text"]})
    assert len(rows) >= 8 and max(b - a for a, b in zip(rows, rows[1:])) < 3, rows  # denser than on the whole map
    _shot(page, browser, amap, "map-zoomed")
    assert browser.page_errors == [], browser.page_errors
