"""Tensor views in a real JupyterLab in real Chromium: after the quickstart's cells and a
contract review run, a click on the transformers node opens its tensors under the
inspector; the attention map is labelled with the input's tokens, its layer slider and
head picker redraw it, "all" shows every head, and another tensor draws as a heatmap
with a colour scale. Screenshots go to test-artifacts/."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import (  # noqa: E402
    NOTEBOOKS,
    Browser,
    JupyterLab,
    browser_fixture,
    click_cy_node,
    error_outputs,
    lab_serving,
    open_notebook,
    run_all_cells,
    run_menu,
    scroll_to_cytoscape,
    select_code_cell,
    wait_all_cells_ran,
    wait_for_cytoscape,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]
PANEL = ".jf-workbench .jf-tensor-panel"

# A contract review with the attention probabilities captured too: the flow file as
# shipped, its `clauses` node given `attentions` from the notebook.
CONTRACT_CELLS = [
    """from jupyter_flow_examples.models import CLAUSE_LABELS, make_tiny_bert
from jupyter_flow_examples.samples import make_samples
from jupyter_flow.spec import spec_to_dict
from jupyter_flow.workbench import Workbench

make_tiny_bert("models/clause-bert", labels=CLAUSE_LABELS)
make_samples("samples")
wb = Workbench("flows/contract-review.flow.yaml")
node = next(n for n in spec_to_dict(wb.spec)["nodes"] if n["id"] == "clauses")
node["config"]["capture"] = ["attentions", "bert.pooler"]
wb.configure("clauses", {k: v for k, v in node.items() if k != "id"})
wb""",
    """result = await wb.run({"document": "samples/contract.pdf"})
print(result.status, len(result.tensors("clauses")["attentions"]), "inputs")""",
]


def _scroll(page: Any, selector: str) -> None:
    """Scroll a view into sight; a view the kernel redraws meanwhile is looked up again."""
    for attempt in range(5):
        try:
            page.locator(selector).first.scroll_into_view_if_needed(timeout=10_000)
            return
        except Exception as exc:  # playwright: "Element is not attached to the DOM" while bqplot redraws
            if "not attached" not in str(exc) or attempt == 4:
                raise
            page.wait_for_timeout(300)


def _review_notebook() -> str:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in CONTRACT_CELLS]
    return str(nbformat.writes(nb))


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[JupyterLab]:
    files = {"01_quickstart.ipynb": NOTEBOOKS / "01_quickstart.ipynb", "review.ipynb": _review_notebook(), "flows": NOTEBOOKS / "flows"}
    with lab_serving(tmp_path, files) as server:
        yield server


browser = browser_fixture("tensors")


def _tick_texts(page: Any, selector: str) -> list[str]:
    return page.eval_on_selector_all(f"{selector} .tick text", "els => els.map(e => e.textContent)")


def _heatmap_cells(page: Any, selector: str) -> int:
    return int(page.eval_on_selector_all(f"{selector} rect.heatmapcell, {selector} .heatmapcell", "els => els.length"))


def _colours(page: Any, selector: str) -> list[str]:
    return page.eval_on_selector_all(f"{selector} .heatmapcell", "els => els.slice(0, 40).map(e => e.style.fill || e.getAttribute('fill'))")


def _open_node(page: Any, browser: Browser, node: str, shot: str) -> None:
    wait_for_cytoscape(page)
    scroll_to_cytoscape(page)
    click_cy_node(page, node)
    page.wait_for_function(
        f"() => {{ const p = document.querySelector('{PANEL}'); return p && p.offsetParent !== null; }}", timeout=60_000)
    # the panel keeps what the notebook's cells last opened in it: back to the attention map
    compare = page.locator(f"{PANEL} .jf-tensor-compare input")
    if compare.is_checked():
        compare.uncheck()
    page.locator(f"{PANEL} .jf-tensor-picker select").select_option(label="attentions")
    page.wait_for_function(f"() => document.querySelector('{PANEL} .jf-attention-map .heatmapcell')", timeout=30_000)
    _scroll(page, f"{PANEL} .jf-attention-map")
    page.wait_for_timeout(500)
    browser.screenshot(shot)


def _check_attention(page: Any, browser: Browser, tokens: list[str], prefix: str) -> None:
    """Token labels, hover, the layer slider and the all-heads grid of the attention view."""
    amap = f"{PANEL} .jf-attention-map"
    ticks = _tick_texts(page, amap)
    assert any(t.endswith("[CLS]") for t in ticks) and any(t.endswith("[SEP]") for t in ticks), ticks
    for token in tokens:
        assert any(t.endswith(" " + token) for t in ticks), (token, ticks)
    n = len([t for t in ticks if t.startswith("0 ")])
    assert n >= 1
    cells = _heatmap_cells(page, amap)
    assert cells >= 9, cells  # a token-by-token map

    # point at one cell (grid cells report clicks): the readout names both tokens, positions and the value
    box = page.locator(f"{amap} .heatmapcell").nth(1).bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function(
        f"() => (document.querySelector('{PANEL} .jf-tensor-readout') || {{}}).textContent"
        " && document.querySelector('" + PANEL + " .jf-tensor-readout').textContent.includes('query token')",
        timeout=15_000,
    )
    readout = page.locator(f"{PANEL} .jf-tensor-readout").first.inner_text()
    assert "query token 0 [CLS]" in readout and "key token 1 " in readout, readout
    browser.screenshot(f"{prefix}-hover")

    # the layer slider redraws the map
    before = _colours(page, amap)
    handle = page.locator(f"{PANEL} .jf-attention-layer .noUi-handle, {PANEL} .jf-attention-layer .ui-slider-handle").first
    handle.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function(
        f"""([before]) => {{
            const els = [...document.querySelectorAll('{amap} .heatmapcell')].slice(0, 40);
            return els.map(e => e.style.fill || e.getAttribute('fill')).join() !== before.join();
        }}""",
        arg=[before],
        timeout=15_000,
    )
    browser.screenshot(f"{prefix}-last-layer")

    # "all" heads: one small map per head
    page.locator(f"{PANEL} .jf-attention-head select").select_option(label="all")
    page.wait_for_function(f"() => document.querySelectorAll('{PANEL} .jf-attention-grid .jf-heatmap').length >= 2",
                           timeout=15_000)
    _scroll(page, f"{PANEL} .jf-attention-grid")
    page.wait_for_timeout(500)
    browser.screenshot(f"{prefix}-all-heads")


def _check_other_tensor(page: Any, browser: Browser, name: str, prefix: str) -> None:
    page.locator(f"{PANEL} .jf-tensor-picker select").select_option(label=name)
    page.wait_for_function(
        f"() => {{ const v = document.querySelector('{PANEL} .jf-tensor-view');"
        f" return v && v.textContent.includes('{name}') && v.querySelector('.jf-heatmap, .jf-strip'); }}",
        timeout=15_000,
    )
    _scroll(page, f"{PANEL} .jf-tensor-view")
    page.wait_for_timeout(500)
    browser.screenshot(f"{prefix}-{name}")


def test_quickstart_attention_map_and_diff_in_the_browser(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    browser.screenshot_at_end("quickstart-final")
    open_notebook(page, lab, "01_quickstart.ipynb")
    select_code_cell(page, -1)  # all but the last cell, which stops the model services
    run_menu(page, "Run All Above Selected Cell")
    wait_all_cells_ran(page, skip_last=1, timeout_s=240)
    assert error_outputs(page) == []
    assert browser.page_errors == [], browser.page_errors
    # the notebook's own views: the attention map and the diff, drawn in cell outputs
    assert page.locator(".jp-OutputArea .jf-attention-view .heatmapcell").count() >= 9
    assert page.locator(".jp-OutputArea .jf-diff-view").count() >= 1
    cell_diff = page.locator(".jp-OutputArea .jf-diff-view").last  # the cell's own output (the panel holds one too)
    diff_text = cell_diff.inner_text()
    assert "cosine similarity" in diff_text and "max |diff|" in diff_text, diff_text
    cell_diff.scroll_into_view_if_needed()
    browser.screenshot("quickstart-diff-cell")

    _open_node(page, browser, "classify", "quickstart-attention")
    _check_attention(page, browser, ["customer", "shall", "pay"], "quickstart")
    page.locator(f"{PANEL} .jf-tensor-compare input").check()
    page.wait_for_function(f"() => document.querySelector('{PANEL} .jf-diff-view')", timeout=15_000)
    _scroll(page, f"{PANEL} .jf-diff-view")
    page.wait_for_timeout(500)
    browser.screenshot("quickstart-compare-attentions")
    page.locator(f"{PANEL} .jf-tensor-compare input").uncheck()
    _check_other_tensor(page, browser, "bert.pooler", "quickstart")
    assert browser.page_errors == [], browser.page_errors


def test_contract_review_attention_per_clause_in_the_browser(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    browser.screenshot_at_end("contract-final")
    open_notebook(page, lab, "review.ipynb")
    run_all_cells(page)
    wait_all_cells_ran(page, timeout_s=240)
    assert error_outputs(page) == []
    out = page.locator(".jp-Notebook .jp-CodeCell").nth(1).locator(".jp-OutputArea").inner_text()
    assert out.startswith("ok ") and "inputs" in out, out

    _open_node(page, browser, "clauses", "contract-attention")
    # one attention map per paragraph: the input slider picks the clause
    item = page.locator(f"{PANEL} .jf-tensor-item")
    assert item.is_visible()
    _check_attention(page, browser, [], "contract")
    page.locator(f"{PANEL} .jf-attention-head select").select_option(label="0")
    before = _tick_texts(page, f"{PANEL} .jf-attention-map")
    item.locator(".noUi-handle, .ui-slider-handle").first.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function(
        f"""([before]) => {{
            const t = [...document.querySelectorAll('{PANEL} .jf-attention-map .tick text')].map(e => e.textContent);
            return t.length && t.join() !== before.join();
        }}""",
        arg=[before],
        timeout=15_000,
    )
    _scroll(page, f"{PANEL} .jf-attention-map")
    browser.screenshot("contract-next-clause")
    _check_other_tensor(page, browser, "bert.pooler", "contract")
    assert browser.page_errors == [], browser.page_errors
