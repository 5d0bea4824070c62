"""The quickstart notebook in a real JupyterLab in real Chromium: the notebook starts the
demo model services, makes a tiny BERT and builds its flow in the workbench; the graph is
drawn as built, a click on Run runs the flow while the kernel stays free with the node
colours changing live, clicking a node inspects it, and the last cell stops the services."""

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
    code_cell_output,
    cy_elements,
    error_outputs,
    lab_serving,
    open_notebook,
    record_cy_classes,
    recorded_cy_classes,
    run_menu,
    scroll_to_cytoscape,
    select_code_cell,
    wait_all_cells_ran,
    wait_for_cytoscape,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
NOTEBOOK = "01_quickstart.ipynb"
NODES = ["classify", "clean", "report", "stats"]
EDGES = [("classify", "report"), ("clean", "classify"), ("clean", "stats"), ("stats", "report")]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[JupyterLab]:
    # no models/ folder: the notebook makes its tiny BERT on the spot, as on a fresh checkout
    with lab_serving(tmp_path, {NOTEBOOK: NOTEBOOKS / NOTEBOOK, "flows": NOTEBOOKS / "flows"}) as server:
        yield server


browser = browser_fixture("workbench")


def _timeline_text(page: Any) -> str:
    return page.evaluate("() => (document.querySelector('.jf-workbench .jf-timeline-panel') || {}).textContent || ''")


def test_quickstart_workbench_runs_and_inspects_in_the_browser(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    browser.screenshot_at_end("final")
    open_notebook(page, lab, NOTEBOOK)
    browser.screenshot("opened")
    # Everything but the last cell, which stops the model services the Run button needs
    select_code_cell(page, -1)
    run_menu(page, "Run All Above Selected Cell")
    wait_all_cells_ran(page, skip_last=1)
    assert error_outputs(page) == []
    assert browser.page_errors == [], browser.page_errors
    wait_for_cytoscape(page)
    scroll_to_cytoscape(page)
    browser.screenshot("after-running-the-cells")

    graph = cy_elements(page)
    assert sorted(n["id"] for n in graph["nodes"]) == NODES
    assert sorted((e["source"], e["target"]) for e in graph["edges"]) == EDGES
    # positions come from the flow's layout (preset), not from a layout algorithm
    pos = {n["id"]: n["rendered"] for n in graph["nodes"]}
    assert pos["clean"]["x"] < pos["stats"]["x"] < pos["report"]["x"]
    assert pos["stats"]["x"] == pytest.approx(pos["classify"]["x"]) and pos["stats"]["y"] < pos["classify"]["y"]
    # the notebook's last run re-ran only the report, the rest came from the cache
    classes = {n["id"]: n["classes"] for n in graph["nodes"]}
    assert all("status-ok" in c for c in classes.values()), classes
    assert "cached" in classes["clean"] and "cached" not in classes["report"], classes

    before = _timeline_text(page)
    record_cy_classes(page)
    page.locator(".jf-workbench .jf-run").click()
    page.wait_for_function(
        """([before]) => {
            const t = document.querySelector('.jf-workbench .jf-timeline-panel');
            const cy = [...document.querySelectorAll('div')].filter(d => d._cyreg && d._cyreg.cy)[0]._cyreg.cy;
            return t && t.textContent !== before && t.textContent.includes(': ok')
                && cy.nodes().every(n => n.hasClass('status-ok') && !n.hasClass('cached'));
        }""",
        arg=[before],
        timeout=60_000,
    )
    browser.screenshot("clicked-run")
    seen = recorded_cy_classes(page)
    for node in NODES:
        states = seen.get(node, [])
        # every node was seen waiting or running before it turned green again
        assert any("status-pending" in s or "status-running" in s for s in states), (node, states)
        assert "status-ok" in states[-1], (node, states)
    assert any("status-running" in s for s in seen["classify"] + seen["clean"]), seen
    assert "Run ok" in page.locator(".jf-workbench .jf-message").inner_text()
    assert browser.page_errors == [], browser.page_errors

    click_cy_node(page, "classify")
    page.wait_for_function(
        "() => { const i = document.querySelector('.jf-workbench .jf-inspector');"
        " return i && i.textContent.includes('classify') && i.textContent.includes('bert.pooler'); }",
        timeout=20_000,
    )
    page.locator(".jf-workbench .jf-inspector").scroll_into_view_if_needed()
    browser.screenshot("inspect-classify")
    inspector = page.locator(".jf-workbench .jf-inspector")
    text = inspector.inner_text()
    label = page.evaluate(
        "() => { const cy = [...document.querySelectorAll('div')].filter(d => d._cyreg && d._cyreg.cy)[0]._cyreg.cy;"
        " return cy.getElementById('classify').data('label'); }"
    )
    assert "classify" in label and "ok" in text and "label" in text and "score" in text, text
    # the captured pooler output, summarised with a histogram plot
    assert "Captured activations" in text and "shape 1×32" in text, text
    assert inspector.locator("img, svg").count() >= 1
    assert "chosen" in next(n["classes"] for n in cy_elements(page)["nodes"] if n["id"] == "classify")

    select_code_cell(page, -1)
    page.keyboard.press("Shift+Enter")
    page.wait_for_function(
        "() => { const cells = document.querySelectorAll('.jp-Notebook .jp-CodeCell');"
        " const out = cells[cells.length - 1].querySelector('.jp-OutputArea');"
        " return out && out.textContent.includes('model services stopped'); }",
        timeout=30_000,
    )
    assert code_cell_output(page, -1).strip() == "model services stopped"
    assert error_outputs(page) == []
    assert browser.page_errors == [], browser.page_errors
