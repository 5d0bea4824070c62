"""The agent-tools notebook in a real JupyterLab in real Chromium: it trains a tiny BERT,
builds the sentiment flow around it and an agent flow whose model (a scripted
OpenAI-compatible server) reads a served web page and calls the classifier flow as a tool;
every cell runs without an error. A click on the agent node in the workbench shows its
steps; rows open to the page the tool read, a classification and the final answer."""

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
    run_all_cells,
    scroll_to_cytoscape,
    wait_all_cells_ran,
    wait_for_cytoscape,
)

pytest.importorskip("mcp")
pytestmark = [pytest.mark.browser, pytest.mark.timeout(480)]
NOTEBOOK = "agent_tools.ipynb"
STEPS = ".jf-workbench .jf-agent-view"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[JupyterLab]:
    with lab_serving(tmp_path, {NOTEBOOK: NOTEBOOKS / NOTEBOOK}) as server:
        yield server


browser = browser_fixture("agent-tools")


def open_row(page: Any, key: str) -> str:
    """Open the step row `key` with a click on its line; the text it shows."""
    row = page.locator(f"{STEPS} details.jf-agent-row[data-key='{key}']")
    row.locator("summary").click()
    page.wait_for_function(f"() => document.querySelector(\"{STEPS} details.jf-agent-row[data-key='{key}']\").open")
    return str(row.inner_text())


def test_the_agent_tools_notebook_runs_and_the_agents_steps_open_in_the_workbench(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    browser.screenshot_at_end("final")
    open_notebook(page, lab, NOTEBOOK)
    run_all_cells(page)
    wait_all_cells_ran(page, timeout_s=400)
    assert error_outputs(page) == []
    assert browser.page_errors == [], browser.page_errors
    outputs = "\n".join(code_cell_output(page, i) for i in range(page.locator(".jp-Notebook .jp-CodeCell").count()))
    assert "training accuracy" in outputs and "Of 5 reviews: 3 positive, 1 mixed, 1 negative." in outputs
    assert "workbench run: ok | 3 model calls, 6 tool calls" in outputs and "servers stopped" in outputs

    wait_for_cytoscape(page)
    scroll_to_cytoscape(page)
    assert [n["id"] for n in cy_elements(page)["nodes"]] == ["agent"]
    assert "status-ok" in cy_elements(page)["nodes"][0]["classes"]
    assert not page.locator(STEPS).is_visible()  # nothing is selected yet
    browser.screenshot("ran-all-cells")

    click_cy_node(page, "agent")
    page.wait_for_selector(f"{STEPS} .jf-agent-head", state="visible", timeout=20_000)
    steps = page.locator(STEPS)
    head = steps.locator(".jf-agent-head").inner_text()
    assert "3 model calls" in head and "6 tool calls" in head and "failed" not in head, head
    rows = steps.locator("details.jf-agent-row")
    assert rows.count() == 15
    assert page.eval_on_selector_all(f"{STEPS} details.jf-agent-row", "els => els.filter(e => e.open).length") == 0
    lines = [rows.nth(i).locator("summary").inner_text() for i in range(rows.count())]
    assert lines[0].startswith("model") and "step 1: the model" in lines[0] and "I will read the page first." in lines[0]
    assert "1.1 web_page_text(url=" in lines[1] and "/kettle" in lines[1]
    assert sum("sentiment(review=" in line for line in lines) == 5
    assert lines[-1].startswith("final answer") and "Of 5 reviews" in lines[-1]
    steps.scroll_into_view_if_needed()
    browser.screenshot("agent-steps")

    page_text = open_row(page, "1.1 result")
    assert "Aurora kettle: what buyers say" in page_text and "It leaks from the lid" in page_text and " ms" in page_text
    arguments = open_row(page, "2.4")
    assert '"review": "Great design, but it is noisy when it boils."' in arguments and "flow/sentiment" in arguments
    assert '"label": "mixed"' in open_row(page, "2.4 result")
    answer = open_row(page, "3")
    assert "- negative: It leaks from the lid" in answer and "finish" in answer
    page.locator(f"{STEPS} details.jf-agent-row[data-key='2.4']").scroll_into_view_if_needed()
    browser.screenshot("agent-steps-opened")
    assert browser.page_errors == [], browser.page_errors
