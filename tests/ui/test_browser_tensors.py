"""Tensor views in a real JupyterLab in real Chromium: after the quickstart's cells and a
contract review run, a click on the transformers node opens its tensors under the
inspector. Attention opens in the head view, the input's tokens on both sides; the layer
slider redraws it; the map names the cell clicked by its tokens; the model view shows
every layer and head; the comparison with the previous run lines tokens up by text; and
another tensor draws as a heatmap with a colour scale. Screenshots go to test-artifacts/
(the 128-token case is tests/ui/test_browser_attention.py)."""

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


def _head_tokens(page: Any) -> list[str]:
    return page.eval_on_selector_all(f"{PANEL} .jf-head-view .jf-hv-left .jf-hv-tok", "els => els.map(e => e.textContent)")


def _mode(page: Any, label: str) -> None:
    page.locator(f"{PANEL} .jf-attention-mode button", has_text=label).click()


def _open_node(page: Any, browser: Browser, node: str, shot: str) -> None:
    wait_for_cytoscape(page)
    scroll_to_cytoscape(page)
    click_cy_node(page, node)
    page.wait_for_function(
        f"() => {{ const p = document.querySelector('{PANEL}'); return p && p.offsetParent !== null; }}", timeout=60_000)
    # the panel keeps what the notebook's cells last opened in it: back to the attention
    compare = page.locator(f"{PANEL} .jf-tensor-compare input")
    if compare.is_checked():
        compare.uncheck()
    page.locator(f"{PANEL} .jf-tensor-picker select").select_option(label="attentions")
    page.wait_for_function(f"() => document.querySelector('{PANEL} .jf-attention-view')", timeout=30_000)
    if page.locator(f"{PANEL} .jf-head-view .jf-hv-tok").count() == 0:
        _mode(page, "head view")
    page.wait_for_function(f"() => document.querySelector('{PANEL} .jf-head-view .jf-hv-tok')", timeout=30_000)
    _scroll(page, f"{PANEL} .jf-head-view")
    page.wait_for_timeout(500)
    browser.screenshot(shot)


def _check_attention(page: Any, browser: Browser, tokens: list[str], prefix: str) -> None:
    """The head view's tokens and layer slider, the map's labels and readout, the model view."""
    shown = _head_tokens(page)
    assert shown[0] == "[CLS]" and shown[-1] == "[SEP]", shown
    for token in tokens:
        assert token in shown, (token, shown)
    assert page.locator(f"{PANEL} .jf-head-view path").count() >= len(shown)  # a line from every token at least

    # the layer slider redraws the head view
    note = page.locator(f"{PANEL} .jf-hv-note").inner_text()
    handle = page.locator(f"{PANEL} .jf-attention-layer .noUi-handle, {PANEL} .jf-attention-layer .ui-slider-handle").first
    handle.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"([before]) => (document.querySelector('{PANEL} .jf-hv-note') || {{}}).textContent !== before",
                           arg=[note], timeout=15_000)
    browser.screenshot(f"{prefix}-last-layer")

    # the map: token labels, and a click on a cell names both tokens and the value
    _mode(page, "map")
    amap = f"{PANEL} .jf-attention-map"
    page.wait_for_function(f"() => document.querySelectorAll('{amap} .heatmapcell').length >= 9", timeout=30_000)
    ticks = _tick_texts(page, amap)
    assert any(t.endswith("[CLS]") for t in ticks) and any(t.endswith("[SEP]") for t in ticks), ticks
    _scroll(page, amap)
    page.locator(f"{PANEL} .jf-heatmap-zoom").click()  # zooming off: the pointer names cells
    page.wait_for_function(f"() => (document.querySelector('{PANEL} .jf-attention-view') || {{}}).textContent.includes('click a cell')",
                           timeout=15_000)
    box = page.locator(f"{amap} .heatmapcell").nth(1).bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function(
        f"() => ((document.querySelector('{PANEL} .jf-tensor-readout') || {{}}).textContent || '').includes('attending token')",
        timeout=15_000,
    )
    readout = page.locator(f"{PANEL} .jf-tensor-readout").first.inner_text()
    assert "attending token 0 [CLS]" in readout and "attended token 1 " in readout, readout
    browser.screenshot(f"{prefix}-map")

    # the model view: every layer and head of the tiny model (2 x 2)
    _mode(page, "model view")
    page.wait_for_function(f"() => document.querySelectorAll('{PANEL} .jf-mv-thumb').length === 4", timeout=15_000)
    _scroll(page, f"{PANEL} .jf-model-view")
    page.wait_for_timeout(500)
    browser.screenshot(f"{prefix}-model-view")
    _mode(page, "head view")
    page.wait_for_function(f"() => document.querySelector('{PANEL} .jf-head-view .jf-hv-tok')", timeout=15_000)


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
    assert page.locator(".jp-OutputArea .jf-attention-view .jf-hv-tok").count() >= 6
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
    # the last run's text has one sentence more: its tokens are lined up with the earlier ones by text
    diff_text = page.locator(f"{PANEL} .jf-diff-view").inner_text()
    assert "aligned by text" in diff_text, diff_text
    sliders = page.eval_on_selector_all(f"{PANEL} .jf-diff-view .jf-tensor-slider .widget-label", "els => els.map(e => e.textContent)")
    assert sliders == ["layer", "head"], sliders  # axes named by what they are, not "axis 0"
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
    before = _head_tokens(page)
    item.locator(".noUi-handle, .ui-slider-handle").first.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function(
        f"""([before]) => {{
            const t = [...document.querySelectorAll('{PANEL} .jf-head-view .jf-hv-left .jf-hv-tok')].map(e => e.textContent);
            return t.length && t.join() !== before.join();
        }}""",
        arg=[before],
        timeout=15_000,
    )
    _scroll(page, f"{PANEL} .jf-head-view")
    browser.screenshot("contract-next-clause")
    _check_other_tensor(page, browser, "bert.pooler", "contract")
    assert browser.page_errors == [], browser.page_errors
