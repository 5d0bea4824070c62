"""Editing a flow file in its own JupyterLab view, in a real JupyterLab in real Chromium:
a node dragged from the palette, two nodes connected by dragging from a node's handle, a
field set in the node's form, an edge deleted with the Delete key, Ctrl+S, and the file
on disk has every change with its comments kept. Also: a 30-node flow is drawn with
labels at least 11 px on screen, every node stays in view when the pane is resized, the
header's problem count is the length of the problem list, and closing a flow's tab (its
side panel open) raises no page error."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from harness import (  # noqa: E402
    FLOW_VIEW,
    Browser,
    JupyterLab,
    browser_fixture,
    drag_flow_handle,
    file_browser_open,
    flow_canvas_box,
    flow_dirty,
    flow_graph,
    flow_node_point,
    lab_serving,
    open_flow,
    save_flow,
    wait_flow,
    wait_for_flow_graph,
)
from lab_server import flow_with  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

COMMENTED = """\
# A flow kept under version control: these comments must survive edits in the view.
spec_version: 1
name: greet
inputs: {text: {type: text, default: hi}}
nodes:
  # shouts the input back
  - id: shout
    type: template
    config: {template: "{{ text | upper }}"}
  - id: route  # picks a reply
    type: switch
    config: {cases: {loud: "{{ shout.output.text | length > 3 }}"}, default: quiet}
  - id: loud_reply
    type: template
    config: {template: "LOUD"}
  - id: quiet_reply
    type: template
    config: {template: "quiet"}
edges:
  - {from: start, to: shout}
  - {from: shout, to: route}
  - {from: route, to: loud_reply, branch: loud}
  - {from: route, to: quiet_reply, branch: quiet}  # the quiet branch
"""

# `echo` reads a node that does not exist, and an edge names a missing node.
BROKEN = flow_with("broken.flow.yaml", edges="  - {from: echo, to: nowhere}\n")


def big_flow(n: int = 30) -> str:
    """A layered flow of `n` template nodes: a spine with side branches, no saved layout."""
    nodes = [{"id": f"step_{i:02d}", "type": "template", "config": {"template": f"step {i}"}} for i in range(n)]
    edges: list[dict[str, Any]] = [{"from": "start", "to": "step_00"}]
    for i in range(1, n):
        edges.append({"from": f"step_{(i - 1) // 2:02d}", "to": f"step_{i:02d}"})
    return yaml.safe_dump({"spec_version": 1, "name": "big", "nodes": nodes, "edges": edges}, sort_keys=False)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    files = {"greet.flow.yaml": COMMENTED, "resize.flow.yaml": COMMENTED, "broken.flow.yaml": BROKEN, "big.flow.yaml": big_flow(),
             "close.flow.yaml": COMMENTED}
    with lab_serving(tmp_path_factory.mktemp("lab"), files) as server:
        yield server


browser = browser_fixture("flow-editor", per_test=True)


def test_edit_in_the_file_view_and_save_keeps_comments(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    browser.screenshot_at_end("final")
    open_flow(page, lab, "greet.flow.yaml", 5)
    assert not flow_dirty(page)
    browser.screenshot("opened")

    # 1. a template node dragged from the palette onto the canvas
    box = flow_canvas_box(page)
    page.locator(f"{FLOW_VIEW} .jp-FlowGraph-kind[data-kind='template']").drag_to(
        page.locator(f"{FLOW_VIEW} .jp-FlowGraph-canvas"), target_position={"x": box["w"] / 2, "y": box["h"] - 40}
    )
    wait_flow(page, "cy.getElementById('template_1').nonempty()")
    page.wait_for_function("() => !!document.querySelector('.lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current.jp-mod-dirty')",
                           timeout=10_000)
    # the new node is selected: its settings open beside the graph
    page.locator(f"{FLOW_VIEW} .jp-FlowGraph-panelTitle", has_text="Node template_1").wait_for(timeout=10_000)
    page.wait_for_timeout(400)

    # 2. connect shout -> template_1 by dragging from shout's handle
    drag_flow_handle(page, "shout", "template_1")
    wait_flow(page, "cy.edges().some(e => e.id().startsWith('edge-') && e.source().id() === 'shout' && e.target().id() === 'template_1')")
    browser.screenshot("added-and-connected")

    # 3. set the new node's template in its form
    x, y = flow_node_point(page, "template_1")
    page.mouse.click(x, y)
    field = page.locator(f"{FLOW_VIEW} .jp-FlowGraph-panel #jp-FlowForm_template")
    field.wait_for(timeout=10_000)
    field.fill("hello {{ shout.output.text }}")
    page.locator(f"{FLOW_VIEW} .jp-FlowGraph-apply").click()
    page.locator(f"{FLOW_VIEW} .jp-FlowGraph-applyRow .jp-FlowGraph-feedback", has_text="Applied").wait_for(timeout=10_000)
    browser.screenshot("form-applied")

    # 4. delete the quiet branch's edge with the Delete key
    edge = next(e for e in flow_graph(page)["edges"] if e["target"] == "quiet_reply")
    box = flow_canvas_box(page)
    page.mouse.click(box["x"] + edge["mid"]["x"], box["y"] + edge["mid"]["y"])
    wait_flow(page, "cy.edges(':selected').length === 1")
    page.keyboard.press("Delete")
    wait_flow(page, "!cy.edges().some(e => e.target().id() === 'quiet_reply')")
    assert flow_dirty(page)
    browser.screenshot("edge-deleted")

    # 5. Ctrl+S saves through the contents API
    save_flow(page)
    text = (lab.root_dir / "greet.flow.yaml").read_text()
    saved = yaml.safe_load(text)
    node = next(n for n in saved["nodes"] if n["id"] == "template_1")
    assert node["config"]["template"] == "hello {{ shout.output.text }}"
    assert {"from": "shout", "to": "template_1"} in saved["edges"]
    assert not any(e["to"] == "quiet_reply" for e in saved["edges"])
    assert "template_1" in saved["layout"]
    for comment in ("# A flow kept under version control", "# shouts the input back", "# picks a reply"):
        assert comment in text, text
    # the header's note of the last edit no longer says it is unsaved
    page.locator(f"{FLOW_VIEW} .jp-FlowGraph-header .jp-FlowGraph-feedback", has_text="(saved)").wait_for(timeout=10_000)
    browser.screenshot("saved")
    assert browser.page_errors == [], browser.page_errors


def test_thirty_nodes_are_legible_in_a_900px_pane(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    open_flow(page, lab, "big.flow.yaml", 31)
    # the pane is the viewport less the side bars: size the viewport for a 900 px pane
    pane = f"() => document.querySelector('{FLOW_VIEW}').getBoundingClientRect().width"
    page.set_viewport_size({"width": int(1500 + 900 - page.evaluate(pane)), "height": 900})
    page.wait_for_timeout(900)
    width = page.evaluate(pane)
    assert 895 <= width <= 905, width
    drawn = flow_graph(page)
    browser.screenshot("thirty-nodes")
    assert len(drawn["nodes"]) == 31
    smallest = min(n["font"] * drawn["zoom"] for n in drawn["nodes"])
    assert smallest >= 11 - 1e-6, (smallest, drawn["zoom"])
    # nodes do not overlap (a layered placement, sized to their labels)
    boxes = [n["box"] for n in drawn["nodes"]]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a["x2"] <= b["x1"] or b["x2"] <= a["x1"] or a["y2"] <= b["y1"] or b["y2"] <= a["y1"], (a, b)
    assert browser.page_errors == [], browser.page_errors


def test_resizing_the_pane_keeps_every_node_in_view(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    open_flow(page, lab, "resize.flow.yaml", 5)
    for width, height in ((1500, 1000), (1150, 700), (1400, 900)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(900)
        box = flow_canvas_box(page)
        for node in flow_graph(page)["nodes"]:
            b = node["box"]
            assert b["x1"] >= -1 and b["y1"] >= -1 and b["x2"] <= box["w"] + 1 and b["y2"] <= box["h"] + 1, (width, node)
    browser.screenshot("resized")
    assert browser.page_errors == [], browser.page_errors


def test_closing_the_tab_raises_no_page_error(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    browser.screenshot_at_end("final")
    open_flow(page, lab, "close.flow.yaml", 5)
    # a node's settings open in the side panel, then the tab closed
    x, y = flow_node_point(page, "shout")
    page.mouse.click(x, y)
    page.locator(f"{FLOW_VIEW} .jp-FlowGraph-panelTitle", has_text="Node shout").wait_for(timeout=10_000)
    browser.screenshot("panel-open")
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="close.flow.yaml")
    tab.locator(".lm-TabBar-tabCloseIcon").click()
    tab.wait_for(state="detached", timeout=10_000)
    page.wait_for_timeout(500)
    browser.screenshot("closed")
    assert page.locator(".jp-FlowGraphDocument").count() == 0
    assert browser.page_errors == [], browser.page_errors

    # opened again in the same page, it draws and selects as before
    file_browser_open(page, "close.flow.yaml")
    wait_for_flow_graph(page, 5)
    x, y = flow_node_point(page, "route")
    page.mouse.click(x, y)
    page.locator(f"{FLOW_VIEW} .jp-FlowGraph-panelTitle", has_text="Node route").wait_for(timeout=10_000)
    assert browser.page_errors == [], browser.page_errors


def test_problem_count_matches_the_list(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    open_flow(page, lab, "broken.flow.yaml", 3)
    page.wait_for_function(f"() => /problem/.test(document.querySelector('{FLOW_VIEW} .jp-FlowGraph-title').textContent)",
                           timeout=30_000)
    header = page.locator(f"{FLOW_VIEW} .jp-FlowGraph-title").inner_text()
    items = page.locator(f"{FLOW_VIEW} .jp-FlowGraph-problems li").count()
    count = int(re.search(r"(\d+) problems?", header).group(1))  # type: ignore[union-attr]
    browser.screenshot("problems")
    assert count == items >= 2, (header, items)
    assert browser.page_errors == [], browser.page_errors
