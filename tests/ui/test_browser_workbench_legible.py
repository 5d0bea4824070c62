"""A 30-node flow in the notebook workbench, in a real JupyterLab in real Chromium: placed
in layers wrapped into bands (the flow has no saved layout), every label drawn at 11 px or
more on screen in a 900 px wide pane, every node reachable by dragging the background, the
start node with room; in a narrow pane the toolbar wraps instead of cutting its buttons;
a selected node keeps its red problem border; Add node places the new node beside the
selected one, opens its settings and says so under the toolbar; zero page errors."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from harness import (  # noqa: E402
    CY_LIST,
    Browser,
    JupyterLab,
    browser_fixture,
    click_cy_node,
    error_outputs,
    lab_serving,
    open_notebook,
    run_all_cells,
    scroll_to_cytoscape,
    wait_all_cells_ran,
    wait_for_cytoscape,
    workbench_notebook,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

MIN_LABEL_PX = 11
PANE_PX = 900
IDS = ["load_document", "extract_paragraphs_from_contract_pages", "detect_language", "translate", "split_sentences",
       "classify_clauses", "score_risk", "route"] + [f"step_{i:02d}" for i in range(8, 30)]


def thirty_nodes() -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": i, "type": "template", "config": {"template": "x"}} for i in IDS]
    nodes[-1]["config"]["template"] = "{{ ghost.output.text }}"  # a problem: an unknown node
    edges: list[dict[str, Any]] = [{"from": "start", "to": IDS[0]}]
    edges += [{"from": a, "to": b} for a, b in zip(IDS, IDS[1:])]
    edges += [{"from": IDS[2], "to": IDS[10], "when": "{{ detect_language.output.text == 'en' }}"},
              {"from": IDS[7], "to": IDS[15], "label": "high risk"}]
    return {"spec_version": 1, "name": "thirty", "nodes": nodes, "edges": edges}


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[JupyterLab]:
    files = {"thirty.flow.yaml": yaml.safe_dump(thirty_nodes(), sort_keys=False), "thirty.ipynb": workbench_notebook("thirty.flow.yaml")}
    with lab_serving(tmp_path, files) as server:
        yield server


browser = browser_fixture("workbench-legible")


def _graph(page: Any) -> dict[str, Any]:
    """The view's box on the page, its zoom, and each element's rendered label size and box."""
    return page.evaluate(
        f"""() => {{
            const div = {CY_LIST}[0];
            const cy = div._cyreg.cy;
            const box = div.getBoundingClientRect();
            const el = e => ({{id: e.id(), classes: e.classes(), font: parseFloat(e.renderedStyle('font-size')),
                              label: e.data('label') || '', box: e.renderedBoundingBox({{includeLabels: false}}),
                              border: e.style('border-color'), underlay: e.style('underlay-opacity')}});
            return {{box: {{left: box.left, top: box.top, width: box.width, height: box.height}}, zoom: cy.zoom(),
                    minZoom: cy.minZoom(), userPanning: cy.userPanningEnabled(),
                    nodes: cy.nodes().map(el), edges: cy.edges().map(el)}};
        }}"""
    )


def _in_view(graph: dict[str, Any], node: str) -> bool:
    b = next(n for n in graph["nodes"] if n["id"] == node)["box"]
    return b["x1"] >= 0 and b["y1"] >= 0 and b["x2"] <= graph["box"]["width"] and b["y2"] <= graph["box"]["height"]


def _empty_point(graph: dict[str, Any], dx: float, dy: float) -> tuple[float, float] | None:
    """A point of the view's background from which a drag by (dx, dy) stays in the view."""
    w, h = graph["box"]["width"], graph["box"]["height"]
    for fx in (0.5, 0.3, 0.7, 0.15, 0.85, 0.05, 0.95):
        for fy in (0.5, 0.3, 0.7, 0.15, 0.85, 0.05, 0.95):
            x, y = w * fx, h * fy
            if not (5 < x + dx < w - 5 and 5 < y + dy < h - 5):
                continue
            if any(n["box"]["x1"] - 4 <= x <= n["box"]["x2"] + 4 and n["box"]["y1"] - 4 <= y <= n["box"]["y2"] + 4 for n in graph["nodes"]):
                continue
            return x, y
    return None


def _pan_to(page: Any, node: str) -> dict[str, Any]:
    """Drag the background, as a user would, until `node` is wholly in view."""
    for _ in range(8):
        graph = _graph(page)
        if _in_view(graph, node):
            return graph
        b = next(n for n in graph["nodes"] if n["id"] == node)["box"]
        w, h = graph["box"]["width"], graph["box"]["height"]
        dx = max(-w / 2 + 20, min(w / 2 - 20, w / 2 - (b["x1"] + b["x2"]) / 2))
        dy = max(-h / 2 + 20, min(h / 2 - 20, h / 2 - (b["y1"] + b["y2"]) / 2))
        start = _empty_point(graph, dx, dy) or _empty_point(graph, dx / 2, dy / 2)
        assert start is not None, f"no background to drag from in {graph['box']}"
        x0, y0 = graph["box"]["left"] + start[0], graph["box"]["top"] + start[1]
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move(x0 + dx, y0 + dy, steps=8)
        page.mouse.up()
        page.wait_for_timeout(150)
    graph = _graph(page)
    assert _in_view(graph, node), f"{node} could not be panned into view: {graph['box']}"
    return graph


def _clipped(page: Any, selector: str) -> list[str]:
    """The texts of the elements under `selector` that are cut short (wider than shown)."""
    return page.evaluate(
        """(sel) => [...document.querySelectorAll(sel)].filter(e => e.offsetParent !== null)
               .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent.trim())""",
        selector,
    )


def test_a_thirty_node_flow_stays_legible_and_reachable(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    browser.screenshot_at_end("final")
    page.set_viewport_size({"width": PANE_PX + 60, "height": 1000})
    open_notebook(page, lab, "thirty.ipynb")
    # only the notebook: the side bar closed, so its pane is the window less the tab strip
    if page.locator("#jp-left-stack:visible").count():
        page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current").first.click()
    run_all_cells(page)
    wait_all_cells_ran(page)
    wait_for_cytoscape(page)
    assert error_outputs(page) == []
    page.wait_for_function(f"() => {CY_LIST}[0]._cyreg.cy.nodes().length === {len(IDS) + 1}", timeout=20_000)
    page.wait_for_timeout(1200)  # the late refit
    scroll_to_cytoscape(page)
    pane = page.evaluate("() => document.querySelector('.jp-NotebookPanel').getBoundingClientRect().width")
    assert pane <= PANE_PX, pane
    browser.screenshot("thirty-nodes-900px")

    graph = _graph(page)
    assert graph["userPanning"]
    assert graph["zoom"] >= graph["minZoom"] - 1e-6
    small = [(e["id"], e["font"]) for e in graph["nodes"] + graph["edges"] if e["label"] and e["font"] < MIN_LABEL_PX - 0.05]
    assert not small, small
    # placed in bands, not as one long line: the drawing is no more than twice as wide as tall
    xs = [(n["box"]["x1"], n["box"]["x2"]) for n in graph["nodes"]]
    ys = [(n["box"]["y1"], n["box"]["y2"]) for n in graph["nodes"]]
    width = max(x2 for _, x2 in xs) - min(x1 for x1, _ in xs)
    height = max(y2 for _, y2 in ys) - min(y1 for y1, _ in ys)
    assert width < 2 * height, (width, height)
    # the start node has room before the first node
    by_id = {n["id"]: n for n in graph["nodes"]}
    assert by_id["__start__"]["box"]["x2"] + 30 * graph["zoom"] < by_id[IDS[0]]["box"]["x1"], (by_id["__start__"], by_id[IDS[0]])
    # a long id is shortened, not drawn past its node
    assert "\u2026" in by_id["extract_paragraphs_from_contract_pages"]["label"]

    # every node can be brought into view by dragging the background
    for node in (IDS[-1], "__start__", IDS[len(IDS) // 2], IDS[-1]):
        graph = _pan_to(page, node)
        assert graph["zoom"] >= graph["minZoom"] - 1e-6
    browser.screenshot("panned-to-the-last-node")
    assert browser.page_errors == [], browser.page_errors

    # a selected node with a problem keeps its red dashed border; the selection is a halo
    click_cy_node(page, IDS[-1])
    page.wait_for_function(f"() => {CY_LIST}[0]._cyreg.cy.getElementById('{IDS[-1]}').hasClass('chosen')", timeout=10_000)
    chosen = next(n for n in _graph(page)["nodes"] if n["id"] == IDS[-1])
    assert "problem" in chosen["classes"] and chosen["border"] in ("rgb(224,0,0)", "#e00000"), chosen
    assert float(chosen["underlay"]) > 0, chosen
    browser.screenshot("selected-node-with-a-problem")

    # Fit shows the whole flow as far as the smallest legible zoom allows
    page.locator(".jf-workbench .jf-fit").click()
    page.wait_for_timeout(600)
    assert _graph(page)["zoom"] >= _graph(page)["minZoom"] - 1e-6

    # Add node: beside the selected node, its settings open, the message by the toolbar
    _pan_to(page, "score_risk")
    click_cy_node(page, "score_risk")
    page.wait_for_function(f"() => {CY_LIST}[0]._cyreg.cy.getElementById('score_risk').hasClass('chosen')", timeout=10_000)
    page.locator(".jf-workbench .jf-add").click()
    page.wait_for_function(f"() => {CY_LIST}[0]._cyreg.cy.getElementById('python_1').length === 1", timeout=20_000)
    page.wait_for_timeout(800)
    added = page.evaluate(
        f"""() => {{ const cy = {CY_LIST}[0]._cyreg.cy;
            return [cy.getElementById('score_risk').position(), cy.getElementById('python_1').position()]; }}"""
    )
    assert added[1]["x"] > added[0]["x"] and abs(added[1]["y"] - added[0]["y"]) < 250, added
    current_tab = page.locator(".jf-workbench .lm-TabBar-tab.lm-mod-current").first.inner_text()
    assert "Settings" in current_tab, current_tab
    assert "python_1" in page.locator(".jf-workbench .jf-yaml textarea").input_value()
    assert "Applied" in page.locator(".jf-workbench .jf-edit-feedback").inner_text()
    assert page.locator(".jf-workbench .jf-message").inner_text().strip() == ""
    browser.screenshot("added-beside-the-selected-node")

    # a narrow pane: the toolbar and the tabs wrap, no button or tab title is cut short
    page.set_viewport_size({"width": 560, "height": 1000})
    page.wait_for_timeout(800)
    page.locator(".jf-workbench .jf-toolbar").scroll_into_view_if_needed()
    clipped = _clipped(page, ".jf-workbench button, .jf-workbench .lm-TabBar-tabLabel")
    assert not clipped, clipped
    page.locator(".jf-workbench .jf-fit").click()
    page.wait_for_timeout(600)
    graph = _graph(page)
    assert not [(e["id"], e["font"]) for e in graph["nodes"] + graph["edges"] if e["label"] and e["font"] < MIN_LABEL_PX - 0.05]
    browser.screenshot("narrow-pane")
    assert browser.page_errors == [], browser.page_errors
