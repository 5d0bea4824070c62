"""The JupyterLab commands of flow files, in a real JupyterLab in real Chromium: "Open in
notebook workbench" opens the companion notebook and runs its cell, so the workbench shows
without another click; a red Validate message of one flow goes away when another document
comes to the front; the palette of node kinds offers no internal kind (`placeholder`); the
settings page is titled "Model flows"."""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import (  # noqa: E402
    Browser,
    JupyterLab,
    browser_fixture,
    error_outputs,
    file_browser_menu,
    file_browser_open,
    lab_serving,
    open_lab,
)
from lab_server import FLOWS  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[JupyterLab]:
    files = {"greet.flow.yaml": FLOWS / "greet_chain.flow.yaml", "broken.flow.yaml": FLOWS / "broken.flow.yaml"}
    with lab_serving(tmp_path, files) as server:
        yield server


browser = browser_fixture("lab-commands")


def _tab(page: Any, name: str) -> Any:
    return page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=name).first


def test_lab_commands_open_and_run_the_workbench_and_keep_messages_to_their_file(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    browser.screenshot_at_end("final")
    with urllib.request.urlopen(f"{lab.url}/lab/api/settings/jupyter-flow:plugin?token={lab.token}", timeout=30) as reply:
        schema = json.loads(reply.read())["schema"]
    assert schema["title"] == "Model flows"

    open_lab(page, lab)
    page.locator(".jp-DirListing-item", has_text="greet.flow.yaml").first.wait_for(timeout=30_000)

    # the commands' names say which notebook each one makes
    page.locator(".jp-DirListing-item", has_text="greet.flow.yaml").first.click(button="right")
    labels = page.locator(".lm-Menu-itemLabel").all_inner_texts()
    page.keyboard.press("Escape")
    assert "Open in notebook workbench" in labels and "Export to production notebook" in labels, labels
    assert "Open in workbench" not in labels

    file_browser_menu(page, "greet.flow.yaml", "Open in notebook workbench")
    _tab(page, "greet.ipynb").wait_for(timeout=30_000)
    # its cell ran by itself: the workbench is drawn with the flow's nodes
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) div')]"
        ".some(d => d._cyreg && d._cyreg.cy && d._cyreg.cy.nodes().length === 3)",
        timeout=90_000,
    )
    assert page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jf-workbench").count() == 1
    assert error_outputs(page) == []
    browser.screenshot("workbench-opened-and-run")

    # a red Validate message of one flow does not stay up over another document
    file_browser_open(page, "broken.flow.yaml")
    page.locator(".jp-FlowGraphDocument:not(.lm-mod-hidden) .jp-FlowGraph-kinds").wait_for(timeout=30_000)
    kinds = page.locator(".jp-FlowGraphDocument:not(.lm-mod-hidden) .jp-FlowGraph-kinds").inner_text()
    assert "template" in kinds and "placeholder" not in kinds, kinds
    file_browser_menu(page, "broken.flow.yaml", "Validate flow")
    toast = page.locator(".Toastify__toast", has_text="broken.flow.yaml: 1 problem")
    toast.wait_for(timeout=20_000)
    browser.screenshot("validated-broken")
    _tab(page, "greet.ipynb").click()
    toast.wait_for(state="detached", timeout=10_000)
    browser.screenshot("message-gone-on-another-document")
    assert browser.page_errors == [], browser.page_errors
