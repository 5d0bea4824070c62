"""The JupyterLab extension in a real JupyterLab in real Chromium: a flow file opens from the
file browser as a graph, "Validate flow" marks a broken node, and "Export to production
notebook" writes and opens the notebook."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import (  # noqa: E402
    FLOW_CY,
    FLOW_VIEW,
    Browser,
    JupyterLab,
    browser_fixture,
    file_browser_menu,
    file_browser_open,
    flow_canvas_box,
    flow_graph,
    lab_serving,
    open_lab,
    wait_for_flow_graph,
)
from lab_server import FLOWS  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[JupyterLab]:
    files = {"flows/greet.flow.yaml": FLOWS / "greet_switch.flow.yaml", "flows/broken.flow.yaml": FLOWS / "broken.flow.yaml"}
    # the jupyter-flow settings leave validation to the command under test
    settings = {"jupyter-flow/plugin.jupyterlab-settings": {"validateOnSave": False}}
    with lab_serving(tmp_path, files, settings=settings) as server:
        yield server


browser = browser_fixture("labextension")


def run_from_palette(page: Any, label: str) -> None:
    page.keyboard.press("Control+Shift+C")
    box = page.locator(".lm-CommandPalette-input")
    box.wait_for(timeout=10_000)
    box.fill(label)
    page.locator(".lm-CommandPalette-item", has_text=re.compile(rf"^{re.escape(label)}")).first.click()


def test_flow_files_open_as_graphs_validate_and_export(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    open_lab(page, lab)
    file_browser_open(page, "flows")
    flow_item = page.locator('.jp-DirListing-item[data-file-type="flow-yaml"]', has_text="greet.flow.yaml")
    flow_item.wait_for(timeout=30_000)
    # the file browser shows the flow icon of the extension for flow files
    assert flow_item.locator("svg[data-icon='jupyter-flow:flow']").count() == 1

    file_browser_open(page, "greet.flow.yaml")
    wait_for_flow_graph(page, 5)  # four nodes and the start node
    drawn = flow_graph(page)
    assert sorted(n["id"] for n in drawn["nodes"]) == ["__start__", "loud_reply", "quiet_reply", "route", "shout"]
    by_id = {n["id"]: n for n in drawn["nodes"]}
    assert "kind-switch" in by_id["route"]["classes"] and by_id["route"]["data"]["colour"] == "#edc948"
    assert sorted(e["label"] for e in drawn["edges"]) == ["", "", "branch: loud", "branch: quiet"]
    assert page.locator(f"{FLOW_VIEW} .jp-FlowGraph-title").inner_text() == "greet: 4 nodes, 4 edges"
    browser.screenshot("graph")

    # a broken flow draws too; its problem shows once "Validate flow" asked the server
    file_browser_open(page, "broken.flow.yaml")
    wait_for_flow_graph(page, 3)
    assert not any("problem" in n["classes"] for n in flow_graph(page)["nodes"])
    run_from_palette(page, "Validate flow")
    page.wait_for_function(f"() => {FLOW_CY}[0]._cyreg.cy.getElementById('echo').hasClass('problem')", timeout=30_000)
    echo = {n["id"]: n for n in flow_graph(page)["nodes"]}["echo"]
    assert "ghost" in echo["data"]["problems"]
    assert "problem" not in {n["id"]: n for n in flow_graph(page)["nodes"]}["shout"]["classes"]
    toast = page.locator(".Toastify__toast", has_text="broken.flow.yaml: 1 problem")
    toast.wait_for(timeout=10_000)
    assert "ghost" in toast.inner_text()
    # hovering the marked node shows the problem next to it
    box = flow_canvas_box(page)
    page.mouse.move(box["x"] + echo["rendered"]["x"], box["y"] + echo["rendered"]["y"])
    tooltip = page.locator(f"{FLOW_VIEW} .jp-FlowGraph-tooltip")
    tooltip.wait_for(state="visible", timeout=5_000)
    assert "ghost" in tooltip.inner_text()
    browser.screenshot("validated")

    # export from the file browser's context menu opens the production notebook
    file_browser_menu(page, "greet.flow.yaml", "Export to production notebook")
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tabLabel", has_text="greet.production.ipynb").wait_for(
        timeout=30_000
    )
    # the exported notebook's title cell names the flow once it has rendered
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-MarkdownOutput h1')]"
        ".some(h => h.textContent.includes('greet'))",
        timeout=30_000,
    )
    assert (lab.root_dir / "flows" / "greet.production.ipynb").is_file()
    browser.screenshot("exported")
    assert browser.page_errors == []
    assert not [line for line in browser.console if line.startswith("error:") and "jupyter-flow" in line]
