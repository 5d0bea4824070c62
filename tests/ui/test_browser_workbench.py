"""The quickstart notebook in a real JupyterLab in real Chromium: the workbench draws the
flow, runs it from its Run button while the kernel stays free, and inspects a node."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import (  # noqa: E402
    Browser,
    JupyterLab,
    browser_available,
    click_cy_node,
    cy_elements,
    error_outputs,
    open_notebook,
    run_all_cells,
    scroll_to_cytoscape,
    wait_all_cells_ran,
    wait_for_cytoscape,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[JupyterLab]:
    why = browser_available()
    if why:
        pytest.skip(why)
    shutil.copy(NOTEBOOKS / "quickstart.ipynb", tmp_path / "quickstart.ipynb")
    shutil.copytree(NOTEBOOKS / "flows", tmp_path / "flows")
    with JupyterLab(tmp_path) as server:
        yield server


@pytest.fixture
def browser() -> Iterator[Browser]:
    with Browser(prefix="workbench") as b:
        yield b


def _timeline_title(page: Any) -> str:
    return page.evaluate("() => (document.querySelector('.jf-workbench .jf-timeline-panel') || {}).textContent || ''")


def test_quickstart_workbench_runs_and_inspects_in_the_browser(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    try:
        _check_quickstart(page, lab, browser)
    finally:
        browser.screenshot("final")


def _check_quickstart(page: Any, lab: JupyterLab, browser: Browser) -> None:
    open_notebook(page, lab, "quickstart.ipynb")
    browser.screenshot("opened")
    run_all_cells(page)
    wait_all_cells_ran(page)
    assert error_outputs(page) == []
    wait_for_cytoscape(page)
    scroll_to_cytoscape(page)
    browser.screenshot("after-run-all")

    graph = cy_elements(page)
    assert sorted(n["id"] for n in graph["nodes"]) == ["prompt", "report", "stats"]
    assert sorted((e["source"], e["target"]) for e in graph["edges"]) == [("prompt", "stats"), ("stats", "report")]
    # positions come from the flow's layout (preset), not from a layout algorithm
    xs = {n["id"]: n["rendered"]["x"] for n in graph["nodes"]}
    assert xs["prompt"] < xs["stats"] < xs["report"]

    before = _timeline_title(page)
    page.locator(".jf-workbench .jf-run").click()
    page.wait_for_function(
        """([before]) => {
            const t = document.querySelector('.jf-workbench .jf-timeline-panel');
            const cy = [...document.querySelectorAll('div')].filter(d => d._cyreg && d._cyreg.cy)[0]._cyreg.cy;
            return t && t.textContent !== before && t.textContent.includes(': ok')
                && cy.nodes().every(n => n.hasClass('status-ok'));
        }""",
        arg=[before],
        timeout=30_000,
    )
    browser.screenshot("clicked-run")
    graph = cy_elements(page)
    assert all("status-ok" in n["classes"] for n in graph["nodes"]), graph["nodes"]

    click_cy_node(page, "stats")
    page.wait_for_function(
        "() => { const i = document.querySelector('.jf-workbench .jf-inspector');"
        " return i && i.textContent.includes('stats') && i.textContent.includes('distinct'); }",
        timeout=20_000,
    )
    browser.screenshot("inspect-stats")
    inspector = page.locator(".jf-workbench .jf-inspector").inner_text()
    assert "ok" in inspector and "words" in inspector
    assert page.locator(".jf-workbench .jf-inspector table").count() >= 1  # the top words as a table
    assert "chosen" in next(n["classes"] for n in cy_elements(page)["nodes"] if n["id"] == "stats")

    assert browser.page_errors == [], browser.page_errors
