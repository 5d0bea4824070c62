"""Running a flow from its file view, in a real JupyterLab in real Chromium: Run asks for the
flow's declared inputs, the run goes to a process of the server's, each node is coloured by
its state as it goes (running, then ok), a click on a node shows its output, a second run
with the node cache shows cached nodes, a failing node is red with its error, Cancel stops
a long run, and the run history's last run of the file is drawn when the file is opened
again."""

from __future__ import annotations

import json
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
    flow_graph,
    flow_node_point,
    lab_serving,
    open_flow,
    record_cy_classes,
    recorded_cy_classes,
    wait_flow,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]

STEPS = """\
import time


def shout(text):
    if text == "boom":
        raise ValueError("the input asked for a failure")
    return {"text": text.upper()}


def wait(text, seconds):
    time.sleep(float(seconds))
    return {"text": text, "waited_s": seconds}
"""

FLOW = """\
spec_version: 1
name: shout
inputs:
  text: {type: text, default: hi, description: what to shout}
  seconds: {type: number, default: 2}
nodes:
  - id: loud
    type: python
    config: {function: "steps:shout", input_mapping: {text: "{{ text }}"}}
  - id: pause
    type: python
    config: {function: "steps:wait", input_mapping: {text: "{{ loud.output.text }}", seconds: "{{ seconds }}"}}
  - id: reply
    type: template
    config: {template: "{{ pause.output.text }}!"}
edges:
  - {from: start, to: loud}
  - {from: loud, to: pause}
  - {from: pause, to: reply}
layout:
  loud: {x: 100, y: 100}
  pause: {x: 330, y: 100}
  reply: {x: 560, y: 100}
"""
NODES = 4  # and the start node


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    stores = tmp_path_factory.mktemp("stores")
    env = {"JUPYTER_FLOW_HISTORY": str(stores / "history.sqlite"), "JUPYTER_FLOW_CACHE": str(stores / "cache")}
    files = {"steps.py": STEPS, "shout.flow.yaml": FLOW}
    with lab_serving(tmp_path_factory.mktemp("lab"), files, env=env) as server:
        yield server


browser = browser_fixture("file-run", per_test=True)


def run_with(page: Any, inputs: dict[str, str], *, cache: bool = False) -> None:
    """Press Run, fill the inputs dialog and run."""
    page.locator(f"{FLOW_VIEW} .jp-FlowGraph-run").first.click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=10_000)
    for name, value in inputs.items():
        dialog.locator(f"[data-input='{name}']").fill(value)
    if cache:
        dialog.locator("[data-option='cache']").check()
    dialog.locator(".jp-mod-accept").click()


def run_status(page: Any) -> str:
    return str(page.locator(f"{FLOW_VIEW} .jp-FlowGraph-runbar").get_attribute("data-status"))


def wait_run(page: Any, status: str, *, timeout_s: float = 90) -> None:
    page.wait_for_selector(f"{FLOW_VIEW} .jp-FlowGraph-runbar[data-status='{status}']", timeout=timeout_s * 1000)


def classes(page: Any) -> dict[str, list[str]]:
    return {n["id"]: n["classes"] for n in flow_graph(page)["nodes"]}


def test_run_colours_nodes_shows_outputs_uses_the_cache_and_cancels(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    browser.screenshot_at_end("final")
    open_flow(page, lab, "shout.flow.yaml", NODES)
    assert page.locator(f"{FLOW_VIEW} .jp-FlowGraph-runbar").is_hidden()  # no run yet, none in the history
    record_cy_classes(page)

    # 1. Run asks for the declared inputs, defaults filled in
    page.locator(f"{FLOW_VIEW} .jp-FlowGraph-run").first.click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=10_000)
    assert dialog.locator("[data-input='text']").input_value() == "hi"
    assert dialog.locator("[data-input='seconds']").input_value() == "2"
    browser.screenshot("inputs-dialog")
    dialog.locator("[data-input='text']").fill("hello")
    dialog.locator("[data-option='cache']").check()
    dialog.locator(".jp-mod-accept").click()

    # 2. the nodes take their states as the run goes: pause is seen running, then all ok
    wait_flow(page, "cy.getElementById('pause').hasClass('run-running')", timeout_s=60)
    browser.screenshot("running")
    assert "run-ok" in classes(page)["loud"]
    wait_run(page, "ok")
    assert all("run-ok" in classes(page)[n] for n in ("loud", "pause", "reply")), classes(page)
    seen = recorded_cy_classes(page)
    assert any("run-running" in c for c in seen["pause"]) and any("run-ok" in c for c in seen["pause"]), seen["pause"]
    assert "3 ok" in page.locator(f"{FLOW_VIEW} .jp-FlowGraph-runText").inner_text()

    # 3. a click on a node shows its output beside the graph
    page.mouse.click(*flow_node_point(page, "reply"))
    output = page.locator(f"{FLOW_VIEW} .jp-FlowGraph-output")
    output.wait_for(timeout=10_000)
    assert json.loads(output.locator(".jp-FlowGraph-outputValue").inner_text()) == {"text": "HELLO!"}
    assert "reply ok" in output.locator(".jp-FlowGraph-outputTitle").inner_text()
    browser.screenshot("done-with-output")

    # 4. the same run again through the node cache: every node is cached
    run_with(page, {"text": "hello"}, cache=True)
    wait_flow(page, "cy.getElementById('reply').hasClass('run-cached')", timeout_s=60)
    wait_run(page, "ok")
    assert all("run-cached" in classes(page)[n] for n in ("loud", "pause", "reply")), classes(page)
    assert "3 cached" in page.locator(f"{FLOW_VIEW} .jp-FlowGraph-runText").inner_text()
    browser.screenshot("cached")

    # 5. a long run is cancelled from the run bar: the running node ends cancelled
    run_with(page, {"text": "slow", "seconds": "60"})
    wait_flow(page, "cy.getElementById('pause').hasClass('run-running')", timeout_s=60)
    page.locator(f"{FLOW_VIEW} .jp-FlowGraph-cancelRun").click()
    wait_run(page, "cancelled", timeout_s=30)
    assert "run-cancelled" in classes(page)["pause"] and "run-ok" in classes(page)["loud"], classes(page)
    browser.screenshot("cancelled")


def test_a_failing_node_is_red_and_the_last_run_shows_when_reopened(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    browser.screenshot_at_end("final")
    open_flow(page, lab, "shout.flow.yaml", NODES)
    run_with(page, {"text": "boom", "seconds": "0"})
    wait_run(page, "error")
    assert "run-error" in classes(page)["loud"], classes(page)
    assert "node 'loud'" in page.locator(f"{FLOW_VIEW} .jp-FlowGraph-runText").inner_text()
    page.mouse.click(*flow_node_point(page, "loud"))
    error = page.locator(f"{FLOW_VIEW} .jp-FlowGraph-outputError")
    error.wait_for(timeout=10_000)
    assert "the input asked for a failure" in error.inner_text()
    browser.screenshot("failed")

    # opened again (a fresh page): the run history's last run is drawn
    open_flow(page, lab, "shout.flow.yaml", NODES)
    page.wait_for_selector(f"{FLOW_VIEW} .jp-FlowGraph-runbar[data-source='history']", timeout=30_000)
    assert run_status(page) == "error"
    wait_flow(page, "cy.getElementById('loud').hasClass('run-error')")
    assert "Last run" in page.locator(f"{FLOW_VIEW} .jp-FlowGraph-runText").inner_text()
    browser.screenshot("last-run-reopened")

    # in the dark theme the states keep their colours, and labels stay light on them
    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel", has_text="Theme").first.hover()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^JupyterLab Dark$")).click()
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=20_000)
    wait_flow(page, "(cy.getElementById('loud').style('color').match(/\\d+/g) || []).map(Number).reduce((a, b) => a + b, 0) > 450")
    page.wait_for_timeout(600)
    style = page.evaluate(f"() => {{ const n = {FLOW_CY}[0]._cyreg.cy.getElementById('loud');"
                          f" return {{fill: n.style('background-color'), label: n.style('color')}}; }}")
    assert style["fill"] == "rgb(214,69,65)", style  # the error colour of the run statuses
    browser.screenshot("last-run-dark")
    page.locator(f"{FLOW_VIEW} .jp-FlowGraph-clearRun").click()
    wait_flow(page, "!cy.getElementById('loud').hasClass('run')")
    assert page.locator(f"{FLOW_VIEW} .jp-FlowGraph-runbar").is_hidden()
