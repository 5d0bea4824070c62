"""The JupyterLab extension in a real JupyterLab in real Chromium: a flow file opens from the
file browser as a graph, "Validate flow" marks a broken node, and "Export to production
notebook" writes and opens the notebook."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import GREET_FLOW, Browser, JupyterLab, browser_available  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]


# `echo` reads a node that does not exist.
BROKEN = """\
spec_version: 1
name: broken
nodes:
  - id: shout
    type: template
    config: {template: "hi"}
  - id: echo
    type: template
    config: {template: "{{ ghost.output.text }}"}
edges:
  - {from: start, to: shout}
  - {from: shout, to: echo}
"""

FLOW_VIEW = ".jp-FlowGraphDocument:not(.lm-mod-hidden)"
CY = f"[...document.querySelectorAll('{FLOW_VIEW} div')].filter(d => d._cyreg && d._cyreg.cy)"


class Lab(JupyterLab):
    """JupyterLab whose jupyter-flow settings leave validation to the command under test."""

    def env(self) -> dict[str, str]:
        env = super().env()
        target = Path(env["JUPYTERLAB_SETTINGS_DIR"]) / "jupyter-flow" / "plugin.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"validateOnSave": False}))
        return env


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[JupyterLab]:
    why = browser_available()
    if why:
        pytest.skip(why)
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "greet.flow.yaml").write_text(GREET_FLOW)
    (tmp_path / "flows" / "broken.flow.yaml").write_text(BROKEN)
    with Lab(tmp_path) as server:
        yield server


@pytest.fixture
def browser() -> Iterator[Browser]:
    with Browser(prefix="labextension") as b:
        yield b


def graph(page: Any) -> dict[str, Any]:
    """Nodes (id, classes, data) and edges of the flow view in front."""
    return page.evaluate(
        f"""() => {{
            const cy = {CY}[0]._cyreg.cy;
            return {{
                nodes: cy.nodes().map(n => ({{id: n.id(), classes: n.classes(), data: n.data(),
                                              rendered: n.renderedPosition()}})),
                edges: cy.edges().map(e => ({{source: e.source().id(), target: e.target().id(),
                                              label: e.data('label')}})),
            }};
        }}"""
    )


def open_from_file_browser(page: Any, name: str) -> None:
    page.locator(".jp-DirListing-item", has_text=re.compile(rf"^{re.escape(name)}")).first.dblclick()


def wait_for_graph(page: Any, nodes: int) -> None:
    page.wait_for_function(f"() => {CY}.length > 0 && {CY}[0]._cyreg.cy.nodes().length === {nodes}", timeout=30_000)
    page.wait_for_timeout(400)  # the first fit after the panel has its size


def run_from_palette(page: Any, label: str) -> None:
    page.keyboard.press("Control+Shift+C")
    box = page.locator(".lm-CommandPalette-input")
    box.wait_for(timeout=10_000)
    box.fill(label)
    page.locator(".lm-CommandPalette-item", has_text=re.compile(rf"^{re.escape(label)}")).first.click()


def test_flow_files_open_as_graphs_validate_and_export(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    page.goto(f"{lab.url}/lab?token={lab.token}&reset", timeout=90_000)
    open_from_file_browser(page, "flows")
    flow_item = page.locator('.jp-DirListing-item[data-file-type="flow-yaml"]', has_text="greet.flow.yaml")
    flow_item.wait_for(timeout=30_000)
    # the file browser shows the flow icon of the extension for flow files
    assert flow_item.locator("svg[data-icon='jupyter-flow:flow']").count() == 1

    open_from_file_browser(page, "greet.flow.yaml")
    wait_for_graph(page, 5)  # four nodes and the start node
    drawn = graph(page)
    assert sorted(n["id"] for n in drawn["nodes"]) == ["__start__", "loud_reply", "quiet_reply", "route", "shout"]
    by_id = {n["id"]: n for n in drawn["nodes"]}
    assert "kind-switch" in by_id["route"]["classes"] and by_id["route"]["data"]["colour"] == "#edc948"
    assert sorted(e["label"] for e in drawn["edges"]) == ["", "", "branch: loud", "branch: quiet"]
    assert page.locator(f"{FLOW_VIEW} .jp-FlowGraph-title").inner_text() == "greet: 4 nodes, 4 edges"
    browser.screenshot("graph")

    # a broken flow draws too; its problem shows once "Validate flow" asked the server
    open_from_file_browser(page, "broken.flow.yaml")
    wait_for_graph(page, 3)
    assert not any("problem" in n["classes"] for n in graph(page)["nodes"])
    run_from_palette(page, "Validate flow")
    page.wait_for_function(f"() => {CY}[0]._cyreg.cy.getElementById('echo').hasClass('problem')", timeout=30_000)
    echo = {n["id"]: n for n in graph(page)["nodes"]}["echo"]
    assert "ghost" in echo["data"]["problems"]
    assert "problem" not in {n["id"]: n for n in graph(page)["nodes"]}["shout"]["classes"]
    toast = page.locator(".Toastify__toast", has_text="broken.flow.yaml: 1 problem")
    toast.wait_for(timeout=10_000)
    assert "ghost" in toast.inner_text()
    # hovering the marked node shows the problem next to it
    box = page.evaluate(f"() => {{ const r = {CY}[0].getBoundingClientRect(); return {{x: r.left, y: r.top}}; }}")
    page.mouse.move(box["x"] + echo["rendered"]["x"], box["y"] + echo["rendered"]["y"])
    tooltip = page.locator(f"{FLOW_VIEW} .jp-FlowGraph-tooltip")
    tooltip.wait_for(state="visible", timeout=5_000)
    assert "ghost" in tooltip.inner_text()
    browser.screenshot("validated")

    # export from the file browser's context menu opens the production notebook
    page.locator(".jp-DirListing-item", has_text="greet.flow.yaml").first.click(button="right")
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Export to production notebook$")).click()
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
