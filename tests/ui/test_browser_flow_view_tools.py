"""The flow file's view as a person works in it, in a real JupyterLab in real Chromium:
undo and redo (Ctrl+Z, Ctrl+Shift+Z and the Edit menu) of adding, connecting, a form edit,
a move and a delete, with the file on disk checked after a save each time; three nodes
box-selected, copied and pasted under new ids; the graph's context menu; Ctrl+F search;
a 30-node chain opened whole with its minimap; an edge label that nothing hides, whole in
its tooltip; and the dark theme."""

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
    FLOW_CY,
    FLOW_VIEW,
    Browser,
    JupyterLab,
    browser_fixture,
    drag_flow_handle,
    flow_canvas_box,
    flow_graph,
    flow_keys,
    flow_node_point,
    lab_serving,
    menu_bar,
    open_flow,
    save_flow,
    wait_flow,
)
from test_browser_flow_editor import COMMENTED  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]

PIPELINE = """\
# copied nodes keep their settings; this comment stays where it is
spec_version: 1
name: pipeline
inputs: {text: {type: text, default: hi}}
nodes:
  - id: clean
    type: template
    title: Tidy
    config: {template: "{{ text | trim }}"}
  - id: shout
    type: template
    config: {template: "{{ clean.output.text | upper }}"}
  - id: reply
    type: template
    config: {template: "{{ shout.output.text }}!"}
  - id: audit
    type: template
    config: {template: "lease {{ text }}"}
edges:
  - {from: start, to: clean}
  - {from: clean, to: shout}
  - {from: shout, to: reply}
  - {from: start, to: audit}
"""

LONG_LABEL = "escalate to the human reviewer when the risk score is high"
LABELLED = f"""\
spec_version: 1
name: labelled
nodes:
  - {{id: score, type: template, config: {{template: "{{{{ 1 }}}}"}}}}
  - {{id: review, type: template, config: {{template: "review"}}}}
  - {{id: done, type: template, config: {{template: "done"}}}}
edges:
  - {{from: start, to: score}}
  - {{from: score, to: review, label: "{LONG_LABEL}"}}
  - {{from: review, to: done, label: ok}}
"""


def chain(n: int) -> str:
    """A chain of `n` template nodes from `start`, without a saved layout."""
    nodes = [{"id": f"step_{i:02d}", "type": "template", "config": {"template": f"step {i}"}} for i in range(n)]
    edges = [{"from": "start", "to": "step_00"}] + [{"from": f"step_{i - 1:02d}", "to": f"step_{i:02d}"} for i in range(1, n)]
    return yaml.safe_dump({"spec_version": 1, "name": "chain", "nodes": nodes, "edges": edges}, sort_keys=False)


def tree(n: int) -> str:
    """A branching flow of `n` nodes (each node feeds two), too tall to show whole legibly."""
    nodes = [{"id": f"n{i:02d}", "type": "template", "config": {"template": "x"}} for i in range(n)]
    edges = [{"from": "start", "to": "n00"}] + [{"from": f"n{(i - 1) // 2:02d}", "to": f"n{i:02d}"} for i in range(1, n)]
    return yaml.safe_dump({"spec_version": 1, "name": "tree", "nodes": nodes, "edges": edges}, sort_keys=False)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    files = {"undo.flow.yaml": COMMENTED, "paste.flow.yaml": PIPELINE, "menu.flow.yaml": PIPELINE, "find.flow.yaml": PIPELINE,
             "chain.flow.yaml": chain(30), "tree.flow.yaml": tree(30), "labels.flow.yaml": LABELLED, "dark.flow.yaml": PIPELINE}
    with lab_serving(tmp_path_factory.mktemp("lab"), files) as server:
        yield server


browser = browser_fixture("flow-tools", per_test=True)


def on_disk(lab: JupyterLab, name: str) -> dict[str, Any]:
    return yaml.safe_load((lab.root_dir / name).read_text())


def on_disk_later(lab: JupyterLab, name: str, page: Any) -> dict[str, Any]:
    """The flow file after saving the document in front."""
    save_flow(page)
    return on_disk(lab, name)


def node_ids(flow: dict[str, Any]) -> list[str]:
    return [n["id"] for n in flow["nodes"]]


def drag_node(page: Any, node_id: str, dx: float, dy: float) -> None:
    x, y = flow_node_point(page, node_id)
    box = flow_canvas_box(page)
    assert box["x"] < x < box["x"] + box["w"] and box["y"] < y < box["y"] + box["h"], (node_id, x, y, box)
    page.mouse.move(x, y)
    page.wait_for_timeout(100)
    page.mouse.down()
    for i in range(1, 9):
        page.mouse.move(x + dx * i / 8, y + dy * i / 8)
        page.wait_for_timeout(30)
    page.mouse.up()


def test_undo_and_redo_each_edit_with_the_file_on_disk(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    browser.screenshot_at_end("final")
    name = "undo.flow.yaml"
    original = (lab.root_dir / name).read_text()
    open_flow(page, lab, name, 5)

    # add: a template node dragged from the palette; undone, the file is byte for byte as it was
    box = flow_canvas_box(page)
    page.locator(f"{FLOW_VIEW} .jp-FlowGraph-kind[data-kind='template']").drag_to(
        page.locator(f"{FLOW_VIEW} .jp-FlowGraph-canvas"), target_position={"x": box["w"] / 2, "y": box["h"] - 60}
    )
    wait_flow(page, "cy.getElementById('template_1').nonempty()")
    flow_keys(page, "Control+z")
    wait_flow(page, "cy.getElementById('template_1').empty()")
    save_flow(page)
    assert (lab.root_dir / name).read_text() == original
    flow_keys(page, "Control+Shift+z")
    wait_flow(page, "cy.getElementById('template_1').nonempty()")
    save_flow(page)
    assert "template_1" in node_ids(on_disk(lab, name))

    # connect: undone from the Edit menu, redone with Ctrl+Shift+Z
    drag_flow_handle(page, "shout", "template_1")
    wait_flow(page, "cy.edges().some(e => e.source().id() === 'shout' && e.target().id() === 'template_1')")
    save_flow(page)
    assert {"from": "shout", "to": "template_1"} in on_disk(lab, name)["edges"]
    menu_bar(page, "Edit", "Undo")
    wait_flow(page, "!cy.edges().some(e => e.target().id() === 'template_1')")
    save_flow(page)
    assert not any(e["to"] == "template_1" for e in on_disk(lab, name)["edges"])
    flow_keys(page, "Control+Shift+z")
    wait_flow(page, "cy.edges().some(e => e.target().id() === 'template_1')")
    save_flow(page)
    assert {"from": "shout", "to": "template_1"} in on_disk(lab, name)["edges"]
    browser.screenshot("connected-again")

    # a form edit
    x, y = flow_node_point(page, "template_1")
    page.mouse.click(x, y)
    field = page.locator(f"{FLOW_VIEW} .jp-FlowGraph-panel #jp-FlowForm_template")
    field.wait_for(timeout=10_000)
    before = next(n for n in on_disk(lab, name)["nodes"] if n["id"] == "template_1")["config"].get("template")
    field.fill("hello {{ shout.output.text }}")
    page.locator(f"{FLOW_VIEW} .jp-FlowGraph-apply").click()
    page.locator(f"{FLOW_VIEW} .jp-FlowGraph-applyRow .jp-FlowGraph-feedback", has_text="Applied").wait_for(timeout=10_000)
    save_flow(page)
    template = lambda: next(n for n in on_disk(lab, name)["nodes"] if n["id"] == "template_1")["config"].get("template")  # noqa: E731
    assert template() == "hello {{ shout.output.text }}"
    flow_keys(page, "Control+z")
    page.wait_for_function(f"() => document.querySelector('{FLOW_VIEW} #jp-FlowForm_template').value !== 'hello {{{{ shout.output.text }}}}'",
                           timeout=10_000)
    save_flow(page)
    assert template() == before
    flow_keys(page, "Control+Shift+z")
    page.locator(f"{FLOW_VIEW} .jp-FlowGraph-header .jp-FlowGraph-feedback", has_text="redo").wait_for(timeout=10_000)
    save_flow(page)
    assert template() == "hello {{ shout.output.text }}"

    # a move
    start = on_disk(lab, name).get("layout", {}).get("loud_reply")
    drag_node(page, "loud_reply", 0, 90)
    page.wait_for_function(f"() => /move|layout|position/.test(document.querySelector('{FLOW_VIEW} .jp-FlowGraph-header .jp-FlowGraph-feedback').textContent)",
                           timeout=10_000)
    save_flow(page)
    moved = on_disk(lab, name)["layout"]["loud_reply"]
    assert moved != start
    flow_keys(page, "Control+z")
    page.locator(f"{FLOW_VIEW} .jp-FlowGraph-header .jp-FlowGraph-feedback", has_text="undo").wait_for(timeout=10_000)
    save_flow(page)
    assert on_disk(lab, name).get("layout", {}).get("loud_reply") == start
    flow_keys(page, "Control+Shift+z")
    page.locator(f"{FLOW_VIEW} .jp-FlowGraph-header .jp-FlowGraph-feedback", has_text="redo").wait_for(timeout=10_000)
    save_flow(page)
    assert on_disk(lab, name)["layout"]["loud_reply"] == moved

    # a delete: undone, the node comes back with its comment
    x, y = flow_node_point(page, "route")
    page.mouse.click(x, y)
    wait_flow(page, "cy.getElementById('route').selected()")
    page.keyboard.press("Delete")
    wait_flow(page, "cy.getElementById('route').empty()")
    save_flow(page)
    assert "route" not in node_ids(on_disk(lab, name))
    flow_keys(page, "Control+z")
    wait_flow(page, "cy.getElementById('route').nonempty()")
    save_flow(page)
    text = (lab.root_dir / name).read_text()
    assert "route" in node_ids(yaml.safe_load(text))
    assert "- id: route  # picks a reply" in text, text
    assert {"from": "route", "to": "loud_reply", "branch": "loud"} in yaml.safe_load(text)["edges"]
    flow_keys(page, "Control+Shift+z")
    wait_flow(page, "cy.getElementById('route').empty()")
    save_flow(page)
    assert "route" not in node_ids(on_disk(lab, name))
    browser.screenshot("after-redo")
    for comment in ("# A flow kept under version control", "# shouts the input back"):
        assert comment in (lab.root_dir / name).read_text()
    assert browser.page_errors == [], browser.page_errors


def test_copy_and_paste_three_nodes(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    browser.screenshot_at_end("final")
    name = "paste.flow.yaml"
    open_flow(page, lab, name, 5)
    graph = flow_graph(page)
    chosen = [n for n in graph["nodes"] if n["id"] in ("clean", "shout", "reply")]
    assert len(chosen) == 3
    # shift-drag a box around the three nodes of the chain (not `audit`, in the row below)
    box = flow_canvas_box(page)
    x1 = min(n["box"]["x1"] for n in chosen) - 12
    y1 = min(n["box"]["y1"] for n in chosen) - 12
    x2 = max(n["box"]["x2"] for n in chosen) + 12
    y2 = max(n["box"]["y2"] for n in chosen) + 12
    page.keyboard.down("Shift")
    page.mouse.move(box["x"] + x1, box["y"] + y1)
    page.mouse.down()
    for i in range(1, 11):
        page.mouse.move(box["x"] + x1 + (x2 - x1) * i / 10, box["y"] + y1 + (y2 - y1) * i / 10)
        page.wait_for_timeout(30)
    page.mouse.up()
    page.keyboard.up("Shift")
    wait_flow(page, "cy.nodes(':selected').length === 3")
    assert sorted(page.evaluate(f"() => {FLOW_CY}[0]._cyreg.cy.nodes(':selected').map(n => n.id())")) == ["clean", "reply", "shout"]
    browser.screenshot("box-selected")

    flow_keys(page, "Control+c")
    flow_keys(page, "Control+v")
    wait_flow(page, "['clean_2', 'shout_2', 'reply_2'].every(id => cy.getElementById(id).nonempty())")
    wait_flow(page, "cy.nodes(':selected').map(n => n.id()).sort().join() === 'clean_2,reply_2,shout_2'")
    browser.screenshot("pasted")
    # under the drawing: the copies cover no node
    boxes = [n["box"] for n in flow_graph(page)["nodes"]]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a["x2"] <= b["x1"] or b["x2"] <= a["x1"] or a["y2"] <= b["y1"] or b["y2"] <= a["y1"], (a, b)
    save_flow(page)
    flow = on_disk(lab, name)
    assert node_ids(flow) == ["clean", "shout", "reply", "audit", "clean_2", "shout_2", "reply_2"]
    pasted = {n["id"]: n for n in flow["nodes"]}
    assert pasted["clean_2"]["title"] == "Tidy"
    assert pasted["shout_2"]["config"]["template"] == "{{ clean_2.output.text | upper }}"
    assert pasted["reply_2"]["config"]["template"] == "{{ shout_2.output.text }}!"
    assert {"from": "clean_2", "to": "shout_2"} in flow["edges"]
    assert {"from": "shout_2", "to": "reply_2"} in flow["edges"]
    assert len(flow["edges"]) == 6
    assert all(flow["layout"][f"{n}_2"] for n in ("clean", "shout", "reply"))
    assert "# copied nodes keep their settings" in (lab.root_dir / name).read_text()

    # one undo takes the whole paste back
    flow_keys(page, "Control+z")
    wait_flow(page, "cy.getElementById('clean_2').empty() && cy.getElementById('reply_2').empty()")
    save_flow(page)
    assert node_ids(on_disk(lab, name)) == ["clean", "shout", "reply", "audit"]
    assert browser.page_errors == [], browser.page_errors


def context_menu(page: Any, x: float, y: float, item: str, submenu: str | None = None) -> None:
    page.mouse.click(x, y, button="right")
    menu = page.locator(".lm-Menu.lm-MenuBar-menu, .lm-Menu").last
    menu.wait_for(timeout=5_000)
    if submenu:
        page.locator(".lm-Menu-itemLabel", has_text=submenu).first.hover()
        page.wait_for_timeout(400)
    page.locator(".lm-Menu-itemLabel", has_text=item).last.click()


def test_the_graphs_context_menu(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    browser.screenshot_at_end("final")
    name = "menu.flow.yaml"
    open_flow(page, lab, name, 5)
    box = flow_canvas_box(page)
    ax, ay = box["x"] + box["w"] * 0.7, box["y"] + box["h"] * 0.8

    # on the background: add a node of a kind where the menu was opened
    at = page.evaluate(f"""() => {{
        const cy = {FLOW_CY}[0]._cyreg.cy, pan = cy.pan(), zoom = cy.zoom();
        return {{x: ({ax - box["x"]} - pan.x) / zoom, y: ({ay - box["y"]} - pan.y) / zoom}};
    }}""")
    page.mouse.click(ax, ay, button="right")
    labels = page.locator(".lm-Menu-itemLabel").all_inner_texts()
    assert {"Add Node Here", "Paste Nodes", "Fit Whole Flow", "Lay Out Flow"} <= set(labels), labels
    browser.screenshot("background-menu")
    page.locator(".lm-Menu-itemLabel", has_text="Add Node Here").first.hover()
    page.locator(".lm-Menu-itemLabel", has_text="template").last.click()
    wait_flow(page, "cy.getElementById('template_1').nonempty()")
    placed = page.evaluate(f"() => {FLOW_CY}[0]._cyreg.cy.getElementById('template_1').position()")
    assert abs(placed["x"] - at["x"]) <= 1 and abs(placed["y"] - at["y"]) <= 1, (placed, at)
    saved = on_disk_later(lab, name, page)["layout"]["template_1"]
    assert abs(saved["x"] - at["x"]) <= 1.5 and abs(saved["y"] - at["y"]) <= 1.5, (saved, at)

    # on a node: duplicate it, then delete the copy
    page.mouse.click(*flow_node_point(page, "audit"), button="right")
    labels = page.locator(".lm-Menu-itemLabel").all_inner_texts()
    assert {"Open Form", "Duplicate", "Copy Nodes", "Cut Nodes", "Delete"} <= set(labels), labels
    assert "Add Node Here" not in labels
    browser.screenshot("node-menu")
    page.locator(".lm-Menu-itemLabel", has_text="Duplicate").first.click()
    wait_flow(page, "cy.getElementById('audit_2').nonempty()")
    context_menu(page, *flow_node_point(page, "audit_2"), "Delete")
    wait_flow(page, "cy.getElementById('audit_2').empty()")

    # Lay Out keeps a layered placement of every node in the file
    context_menu(page, box["x"] + 20, box["y"] + 20, "Lay Out Flow")
    page.locator(f"{FLOW_VIEW} .jp-FlowGraph-header .jp-FlowGraph-feedback", has_text="move").wait_for(timeout=10_000)
    save_flow(page)
    flow = on_disk(lab, name)
    assert set(flow["layout"]) == {"clean", "shout", "reply", "audit", "template_1"}
    assert flow["layout"]["clean"]["x"] < flow["layout"]["shout"]["x"] < flow["layout"]["reply"]["x"]
    assert browser.page_errors == [], browser.page_errors


def test_find_a_node(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    browser.screenshot_at_end("final")
    open_flow(page, lab, "find.flow.yaml", 5)
    flow_keys(page, "Control+f")
    search = page.locator(f"{FLOW_VIEW} .jp-FlowGraph-searchInput")
    search.wait_for(state="visible", timeout=5_000)
    assert page.evaluate("() => document.activeElement.classList.contains('jp-FlowGraph-searchInput')")

    # config text: one match, selected and brought to the middle on Enter
    search.fill("lease")
    page.locator(f"{FLOW_VIEW} .jp-FlowGraph-searchCount", has_text="1 match").wait_for(timeout=5_000)
    wait_flow(page, "cy.nodes('.search-match').map(n => n.id()).join() === 'audit'")
    search.press("Enter")
    wait_flow(page, "cy.getElementById('audit').selected()")
    page.wait_for_timeout(500)
    box = flow_canvas_box(page)
    x, y = flow_node_point(page, "audit")
    assert abs(x - (box["x"] + box["w"] / 2)) < 30 and abs(y - (box["y"] + box["h"] / 2)) < 30, (x, y, box)
    page.locator(f"{FLOW_VIEW} .jp-FlowGraph-panelTitle", has_text="Node audit").wait_for(timeout=10_000)
    browser.screenshot("found-audit")

    # a kind matches every node of it; Enter goes from one to the next
    search.fill("TEMPLATE")
    page.locator(f"{FLOW_VIEW} .jp-FlowGraph-searchCount", has_text="4 matches").wait_for(timeout=5_000)
    search.press("Enter")
    wait_flow(page, "cy.getElementById('clean').selected()")
    search.press("Enter")
    wait_flow(page, "cy.getElementById('shout').selected()")
    page.locator(f"{FLOW_VIEW} .jp-FlowGraph-searchCount", has_text="2 of 4").wait_for(timeout=5_000)
    search.fill("nothing of the sort")
    page.locator(f"{FLOW_VIEW} .jp-FlowGraph-searchCount", has_text="0 matches").wait_for(timeout=5_000)

    # Escape closes the box, takes the marks away and gives the graph the keys again
    search.press("Escape")
    search.wait_for(state="hidden", timeout=5_000)
    wait_flow(page, "cy.nodes('.search-match').length === 0")
    assert page.evaluate("() => document.activeElement.classList.contains('jp-FlowGraph-canvas')")
    assert browser.page_errors == [], browser.page_errors


def test_thirty_nodes_open_whole_with_a_minimap(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    browser.screenshot_at_end("final")
    open_flow(page, lab, "chain.flow.yaml", 31)
    drawn = flow_graph(page)
    box = flow_canvas_box(page)
    shot = browser.screenshot("chain-whole")
    # whole: every node inside the canvas, at a legible size; wrapped into bands to fit
    for node in drawn["nodes"]:
        b = node["box"]
        assert b["x1"] >= 0 and b["y1"] >= 0 and b["x2"] <= box["w"] and b["y2"] <= box["h"], (node["id"], b, box)
    assert min(n["font"] * drawn["zoom"] for n in drawn["nodes"]) >= 11 - 1e-6, drawn["zoom"]
    assert len({round(n["rendered"]["y"]) for n in drawn["nodes"] if n["id"] != "__start__"}) >= 3
    # the minimap shows the whole flow, and the part in view; it hides no node
    minimap = page.locator(f"{FLOW_VIEW} .jp-FlowGraph-map")
    assert minimap.is_visible()
    m = minimap.bounding_box()
    for node in drawn["nodes"]:
        b = {k: v + (box["x"] if k.startswith("x") else box["y"]) for k, v in node["box"].items() if k in ("x1", "x2", "y1", "y2")}
        assert b["x2"] <= m["x"] or b["y2"] <= m["y"], (node["id"], b, m)
    page.wait_for_function(f"() => (document.querySelector('{FLOW_VIEW} .jp-FlowGraph-map img').getAttribute('src') || '').startsWith('data:image/png')",
                           timeout=10_000)
    frame = page.locator(f"{FLOW_VIEW} .jp-FlowGraph-map .cytoscape-navigatorView").bounding_box()
    assert frame and frame["width"] > 20 and frame["height"] > 10, frame
    assert shot.exists()

    # a flow too tall to show whole legibly opens legibly; Fit then shows all of it, and
    # the user can zoom out further still
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab .lm-TabBar-tabCloseIcon").first.click()
    open_flow(page, lab, "tree.flow.yaml", 31)
    assert flow_graph(page)["zoom"] >= 11 / 13 - 1e-6
    page.locator(f"{FLOW_VIEW} .jp-FlowGraph-fit").click()
    page.wait_for_timeout(400)
    drawn = flow_graph(page)
    box = flow_canvas_box(page)
    for node in drawn["nodes"]:
        b = node["box"]
        assert b["x1"] >= -1 and b["y1"] >= -1 and b["x2"] <= box["w"] + 1 and b["y2"] <= box["h"] + 1, (node["id"], b, box)
    assert page.evaluate(f"() => {FLOW_CY}[0]._cyreg.cy.minZoom()") <= 0.1
    browser.screenshot("tree-fit")
    assert browser.page_errors == [], browser.page_errors


def test_edge_labels_are_not_clipped(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    browser.screenshot_at_end("final")
    open_flow(page, lab, "labels.flow.yaml", 4)
    labels = page.evaluate(
        f"""() => {{
            const cy = {FLOW_CY}[0]._cyreg.cy;
            const nodes = cy.nodes().map(n => n.renderedBoundingBox({{includeLabels: false}}));
            return cy.edges('[label != ""]').map(e => ({{
                id: e.id(), label: e.data('label'), full: e.data('fullLabel'), mid: e.renderedMidpoint(),
                box: e.renderedBoundingBox({{includeLabels: true, includeMainLabels: true, includeEdges: false,
                                             includeNodes: false, includeOverlays: false, includeUnderlays: false}}),
                nodes,
            }}));
        }}"""
    )
    browser.screenshot("labels")
    long = next(e for e in labels if e["full"] == LONG_LABEL)
    assert len(long["label"]) == 24 and "\u2026" in long["label"], long["label"]
    box = flow_canvas_box(page)
    for edge in labels:
        b = edge["box"]
        assert b["w"] > 10, edge
        # inside the canvas, and over no node
        assert b["x1"] >= 0 and b["y1"] >= 0 and b["x2"] <= box["w"] and b["y2"] <= box["h"], edge
        for n in edge["nodes"]:
            assert b["x2"] <= n["x1"] or n["x2"] <= b["x1"] or b["y2"] <= n["y1"] or n["y2"] <= b["y1"], (edge["label"], b, n)

    # the whole label on hover
    page.mouse.move(box["x"] + long["mid"]["x"], box["y"] + long["mid"]["y"])
    tooltip = page.locator(f"{FLOW_VIEW} .jp-FlowGraph-tooltip")
    tooltip.wait_for(state="visible", timeout=5_000)
    assert tooltip.inner_text() == LONG_LABEL
    browser.screenshot("label-tooltip")
    assert browser.page_errors == [], browser.page_errors


def luminance(colour: str) -> float:
    """How light a CSS `rgb(...)` or `#rrggbb` colour is, 0 to 255."""
    if colour.startswith("#"):
        parts = [float(int(colour[i:i + 2], 16)) for i in (1, 3, 5)]
    else:
        parts = [float(p) for p in colour[colour.index("(") + 1:colour.index(")")].split(",")[:3]]
    return 0.299 * parts[0] + 0.587 * parts[1] + 0.114 * parts[2]


def test_the_dark_theme(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    browser.screenshot_at_end("final")
    open_flow(page, lab, "dark.flow.yaml", 5)
    colours = f"""() => {{
        const cy = {FLOW_CY}[0]._cyreg.cy;
        const canvas = {FLOW_CY}[0];
        const edge = cy.edges('[label != ""]').first();
        return {{canvas: getComputedStyle(canvas).backgroundColor, label: cy.getElementById('clean').style('color'),
                 edge: cy.edges().first().style('line-color'),
                 map: getComputedStyle(document.querySelector('{FLOW_VIEW} .jp-FlowGraph-map')).backgroundColor}};
    }}"""
    light = page.evaluate(colours)
    assert luminance(light["canvas"]) > 200 and luminance(light["label"]) < 80, light

    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel", has_text="Theme").first.hover()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^JupyterLab Dark$")).click()
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=20_000)
    page.wait_for_function(f"() => {{ const c = {FLOW_CY}[0]._cyreg.cy.getElementById('clean').style('color');"
                           " const m = c.match(/\\d+/g).map(Number); return m[0] + m[1] + m[2] > 450; }", timeout=20_000)
    page.wait_for_timeout(600)
    dark = page.evaluate(colours)
    browser.screenshot("dark")
    assert luminance(dark["canvas"]) < 60, dark
    assert luminance(dark["label"]) > 170, dark
    assert luminance(dark["map"]) < 80, dark
    assert luminance(dark["edge"]) > 60, dark

    # the lab's settings outlive the page: the next test meets the light theme again
    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel", has_text="Theme").first.hover()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^JupyterLab Light$")).click()
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'true'", timeout=20_000)
    assert browser.page_errors == [], browser.page_errors
