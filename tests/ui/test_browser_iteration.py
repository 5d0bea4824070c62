"""Change, run, compare in a real JupyterLab in real Chromium: the customer-service flow in
the workbench with a node cache and a run history, its services on loopback. Run is clicked,
one node is changed from a cell, Run is clicked again: the three unchanged nodes wear the
cached badge (graph and inspector). The History tab's Compare marks the changed node on the
graph; Evaluate in the Evaluation tab runs both versions over six messages and fills its
table. Screenshots go to
test-artifacts/iteration-*.png."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import (  # noqa: E402
    CY_LIST,
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
    scroll_to_cytoscape,
    select_code_cell,
    wait_for_cytoscape,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]
NOTEBOOK = "iteration.ipynb"
NODES = ("cleaner", "intent", "slots", "answer")
WB = ".jf-workbench"

CELLS = [
    # 0: the services and the workbench
    """import contextlib, json
from jupyter_flow.workbench import Workbench
from jupyter_flow_examples.services import start_demo_services

stack = contextlib.ExitStack()
urls = stack.enter_context(start_demo_services())
wb = Workbench("flows/customer-service.flow.json", cache="build/cache", history="build/history.sqlite")
wb.state.set_input("user_input", "Please cancel order 55512, I was billed 40 EUR")
wb""",
    # 1: one node changed, as its settings would be edited
    """settings = next(n for n in wb.spec.nodes if n.id == "answer").model_dump(mode="json", by_alias=True, exclude_defaults=True)
settings["config"]["input_mapping"]["language"] = "en"
wb.configure("answer", settings)
print("changed:", wb.message_text)""",
    # 2: the items to evaluate both versions over
    """messages = ["Where is my order 884512?", "Please cancel order 55512.", "我要退货，订单编号：A77881，咖啡机坏了",
            "My keyboard is broken, can you help?", "你好，我的订单20240315-889还没收到", "I was charged twice for order A1234-5678"]
with open("build/messages.jsonl", "w", encoding="utf-8") as fh:
    for i, text in enumerate(messages):
        fh.write(json.dumps({"id": f"m{i}", "user_input": text}, ensure_ascii=False) + "\\n")
print("items written:", len(messages))""",
    # 3: the services stop
    """stack.close()
print("services stopped")""",
]


def _notebook() -> str:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return str(nbformat.writes(nb))


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[JupyterLab]:
    with lab_serving(tmp_path, {NOTEBOOK: _notebook(), "flows": NOTEBOOKS / "flows", "build/.keep": ""}) as server:
        yield server


browser = browser_fixture("iteration")


def _run_cell(page: Any, index: int, marker: str, *, timeout_s: float = 90.0) -> str:
    """Run one code cell and wait until its output shows `marker`; returns the output."""
    select_code_cell(page, index)
    page.keyboard.press("Shift+Enter")
    page.wait_for_function(
        """([index, marker]) => {
            const cell = document.querySelectorAll('.jp-Notebook .jp-CodeCell')[index];
            const out = cell && cell.querySelector('.jp-OutputArea');
            return out && (out.textContent.includes(marker) || out.textContent.includes('Traceback'));
        }""",
        arg=[index, marker],
        timeout=timeout_s * 1000,
    )
    return code_cell_output(page, index)


def _graph_waits(page: Any, condition: str, *, timeout_s: float = 60.0) -> None:
    """Wait until `condition` (JavaScript over `cy`, the workbench's graph) holds."""
    page.wait_for_function(f"() => {{ const cy = {CY_LIST}[0]._cyreg.cy; return {condition}; }}", timeout=timeout_s * 1000)


def _tab(page: Any, title: str) -> None:
    page.locator(f"{WB} .lm-TabBar-tab", has_text=title).first.click()
    page.wait_for_timeout(300)


def _click_run(page: Any) -> None:
    page.locator(f"{WB} .jf-run").click()
    _graph_waits(page, "cy.nodes().filter(n => n.id() !== '__start__').every(n => n.hasClass('status-ok'))"
                       " && !document.querySelector('.jf-workbench .jf-run').disabled")


def _badges(page: Any) -> dict[str, str]:
    """Each node's badge image as cytoscape draws it ("none" for no badge)."""
    return page.evaluate(f"() => Object.fromEntries({CY_LIST}[0]._cyreg.cy.nodes().map(n => [n.id(), String(n.style('background-image'))]))")


def test_run_twice_cached_badges_compare_on_the_graph_and_the_evaluation_table(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    page.set_viewport_size({"width": 1700, "height": 1150})
    browser.screenshot_at_end("final")
    open_notebook(page, lab, NOTEBOOK)
    _run_cell(page, 0, "", timeout_s=120)
    wait_for_cytoscape(page)
    page.wait_for_timeout(1000)
    scroll_to_cytoscape(page)
    assert error_outputs(page) == []

    _click_run(page)  # the first run: every node runs
    classes = {n["id"]: n["classes"] for n in cy_elements(page)["nodes"]}
    assert not any("cached" in classes[n] for n in NODES), classes
    assert all(_badges(page)[n] in ("none", "") for n in NODES), _badges(page)

    assert "changed: Applied: edit node answer." in _run_cell(page, 1, "changed:")
    scroll_to_cytoscape(page)
    _click_run(page)  # the second run: only the changed node runs
    _graph_waits(page, "['cleaner', 'intent', 'slots'].every(id => cy.getElementById(id).hasClass('cached'))")
    classes = {n["id"]: n["classes"] for n in cy_elements(page)["nodes"]}
    assert "cached" not in classes["answer"], classes
    badges = _badges(page)
    assert all("svg" in badges[n] and "cached" in badges[n] for n in ("cleaner", "intent", "slots")), badges
    assert badges["answer"] in ("none", ""), badges
    assert "3 node(s) cached" in page.locator(f"{WB} .jf-message").inner_text()
    click_cy_node(page, "cleaner")
    page.wait_for_function("() => { const i = document.querySelector('.jf-workbench .jf-inspector');"
                           " return i && i.textContent.includes('from the node cache'); }", timeout=20_000)
    assert page.locator(f"{WB} .jf-inspector .jf-badge-cached").count() == 1
    assert not page.locator(f"{WB} .jf-clear-cache").is_disabled()
    scroll_to_cytoscape(page)
    browser.screenshot("cache-badges-after-the-second-run")
    assert browser.page_errors == [], browser.page_errors

    _tab(page, "History")
    page.wait_for_function("() => document.querySelectorAll('.jf-workbench .jf-history-runs tbody tr').length === 2",
                           timeout=20_000)
    page.locator(f"{WB} .jf-compare").click()
    page.wait_for_function("() => { const d = document.querySelector('.jf-workbench .jf-history-diff');"
                           " return d && d.textContent.includes('node(s) changed'); }", timeout=20_000)
    _graph_waits(page, "cy.getElementById('answer').hasClass('diff-edited')")
    diff = page.locator(f"{WB} .jf-history-diff").inner_text()
    assert "config.input_mapping.language" in diff and "answer" in diff, diff
    marked = {n["id"]: n["classes"] for n in cy_elements(page)["nodes"]}
    assert not any("diff-" in marked[n] for n in ("cleaner", "intent", "slots")), marked
    badges = _badges(page)
    assert "edited" in badges["answer"] and "cached" in badges["cleaner"], badges
    scroll_to_cytoscape(page)
    page.locator(f"{WB} .jf-history-diff").scroll_into_view_if_needed()  # inside the tab: the graph stays in sight
    browser.screenshot("history-compare-marked-on-the-graph")
    assert browser.page_errors == [], browser.page_errors

    assert "items written: 6" in _run_cell(page, 2, "items written:")
    scroll_to_cytoscape(page)
    _tab(page, "Evaluation")
    page.locator(f"{WB} .jf-eval-data input").fill("build/messages.jsonl")
    page.locator(f"{WB} .jf-evaluate").click()  # the flow as saved against the flow as edited, in a thread
    page.wait_for_function("() => document.querySelectorAll('.jf-workbench .jf-eval-view tr.jf-eval-changed').length === 2",
                           timeout=90_000)  # the two Chinese messages now get English answers
    assert page.locator(f"{WB} .jf-eval-view tr.jf-eval-same").count() == 4
    scroll_to_cytoscape(page)
    page.locator(f"{WB} .jf-eval-view").scroll_into_view_if_needed()
    browser.screenshot("evaluation-table")
    page.locator(f"{WB} .jf-eval-only-changed input").check()
    page.wait_for_function("() => !document.querySelector('.jf-workbench .jf-eval-view tr.jf-eval-same')", timeout=20_000)
    assert "Evaluation of 6 items: 2 changed." in page.locator(f"{WB} .jf-evaluation-feedback").inner_text()
    written = list((lab.root_dir / "flows" / ".jupyter-flow" / "evaluations").glob("*/summary.json"))
    assert len(written) == 1 and json.loads(written[0].read_text(encoding="utf-8"))["changed"] == 2

    # a narrow pane (the side bar closed): the five tab titles are shown whole
    if page.locator("#jp-left-stack:visible").count():
        page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current").first.click()
    page.set_viewport_size({"width": 620, "height": 1000})
    page.wait_for_timeout(800)
    page.locator(f"{WB} .jf-tabs").scroll_into_view_if_needed()
    titles = page.evaluate("""() => {
        const bar = document.querySelector('.jf-workbench .jf-tabs > .lm-TabBar').getBoundingClientRect();
        return [...document.querySelectorAll('.jf-workbench .jf-tabs .lm-TabBar-tabLabel')].map(e => {
            const box = e.getBoundingClientRect();
            return {title: e.textContent, whole: e.scrollWidth <= e.clientWidth + 1 && box.right <= bar.right + 1 && box.width > 0};
        });
    }""")
    assert [t["title"] for t in titles] == ["Settings", "Inspect", "Timeline", "History", "Evaluation"], titles
    assert all(t["whole"] for t in titles), titles
    browser.screenshot("narrow-pane-tabs")

    assert _run_cell(page, 3, "services stopped").strip() == "services stopped"
    assert error_outputs(page) == []
    assert browser.page_errors == [], browser.page_errors
