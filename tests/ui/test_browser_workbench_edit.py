"""Editing a flow that has an edge from `start` in the notebook workbench, in a real
JupyterLab in real Chromium: Add node, Wire, Undo and Delete change the graph in place, the
start node and its edge stay drawn through every edit, and the page reports no error (the
front end once tried to add the start node a second time on each edit)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import (  # noqa: E402
    CY_LIST,
    Browser,
    JupyterLab,
    browser_fixture,
    click_cy_node,
    cy_elements,
    error_outputs,
    lab_serving,
    open_notebook,
    run_all_cells,
    scroll_to_cytoscape,
    wait_all_cells_ran,
    wait_for_cytoscape,
    workbench_notebook,
)
from lab_server import FLOWS  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

START_EDGE = ("__start__", "shout")
EDGES = {START_EDGE, ("shout", "route"), ("route", "loud_reply"), ("route", "quiet_reply")}
NODES = {"__start__", "shout", "route", "loud_reply", "quiet_reply"}


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[JupyterLab]:
    files = {"greet.flow.yaml": FLOWS / "greet_switch.flow.yaml", "edit.ipynb": workbench_notebook("greet.flow.yaml")}
    with lab_serving(tmp_path, files) as server:
        yield server


browser = browser_fixture("workbench-edit")


def _wait_drawn(page: Any, nodes: set[str], edges: set[tuple[str, str]]) -> None:
    """Wait until the drawing has exactly these nodes and edges, and each once."""
    page.wait_for_function(
        f"""([nodes, edges]) => {{
            const cy = {CY_LIST}[0]._cyreg.cy;
            const n = cy.nodes().map(x => x.id()).sort();
            const e = cy.edges().map(x => x.source().id() + '>' + x.target().id()).sort();
            return JSON.stringify(n) === JSON.stringify(nodes) && JSON.stringify(e) === JSON.stringify(edges);
        }}""",
        arg=[sorted(nodes), sorted(f"{a}>{b}" for a, b in edges)],
        timeout=20_000,
    )
    page.wait_for_timeout(600)  # the late refit, and any error it would raise


def _button(page: Any, css: str) -> Any:
    return page.locator(f".jf-workbench .{css}")


def test_add_wire_undo_delete_keep_the_start_node(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    browser.screenshot_at_end("final")
    open_notebook(page, lab, "edit.ipynb")
    run_all_cells(page)
    wait_all_cells_ran(page)
    wait_for_cytoscape(page)
    scroll_to_cytoscape(page)
    assert error_outputs(page) == []
    _wait_drawn(page, NODES, EDGES)
    browser.screenshot("opened")

    # Add node: a python node joins, the start node and its edge stay
    _button(page, "jf-add").click()
    _wait_drawn(page, NODES | {"python_1"}, EDGES)
    assert browser.page_errors == [], browser.page_errors

    # Wire: shout -> python_1
    _button(page, "jf-wire").click()
    click_cy_node(page, "shout")
    page.wait_for_timeout(500)
    click_cy_node(page, "python_1")
    _wait_drawn(page, NODES | {"python_1"}, EDGES | {("shout", "python_1")})
    _button(page, "jf-wire").click()
    browser.screenshot("added-and-wired")
    assert browser.page_errors == [], browser.page_errors

    # Undo the wire, then the node
    _button(page, "jf-undo").click()
    _wait_drawn(page, NODES | {"python_1"}, EDGES)
    _button(page, "jf-undo").click()
    _wait_drawn(page, NODES, EDGES)
    assert browser.page_errors == [], browser.page_errors

    # Delete a node in the middle of the list: the nodes after it are drawn once each
    click_cy_node(page, "route")
    page.wait_for_timeout(500)
    _button(page, "jf-delete").click()
    _wait_drawn(page, NODES - {"route"}, {START_EDGE})
    browser.screenshot("deleted-route")
    _button(page, "jf-undo").click()
    _wait_drawn(page, NODES, EDGES)
    browser.screenshot("undone")

    # the start node keeps room before the first node
    graph = {n["id"]: n["rendered"] for n in cy_elements(page)["nodes"]}
    assert graph["__start__"]["x"] < graph["shout"]["x"] - 60, graph
    assert browser.page_errors == [], browser.page_errors
    assert not [line for line in browser.console if "second element" in line], browser.console
