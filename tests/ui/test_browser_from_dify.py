"""The from-Dify notebook in a real JupyterLab in real Chromium: it makes a tiny GPT-2,
starts a local OpenAI-compatible server on it, imports a Dify app with an llm node, runs
it both ways through its if-else and exports it back; every cell runs with no error."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import (  # noqa: E402
    NOTEBOOKS,
    Browser,
    JupyterLab,
    browser_fixture,
    code_cell_output,
    error_outputs,
    lab_serving,
    open_notebook,
    run_all_cells,
    wait_all_cells_ran,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]
NOTEBOOK = "from_dify.ipynb"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[JupyterLab]:
    with lab_serving(tmp_path, {NOTEBOOK: NOTEBOOKS / NOTEBOOK, "flows": NOTEBOOKS / "flows"}) as server:
        yield server


browser = browser_fixture("from-dify")


def test_the_from_dify_notebook_runs_in_the_browser(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    browser.screenshot_at_end("final")
    open_notebook(page, lab, NOTEBOOK)
    run_all_cells(page)
    wait_all_cells_ran(page, timeout_s=360)
    assert error_outputs(page) == []
    assert browser.page_errors == [], browser.page_errors
    outputs = "\n".join(code_cell_output(page, i) for i in range(page.locator(".jp-Notebook .jp-CodeCell").count()))
    assert "status: ok" in outputs and "time to first token" in outputs
    assert "same flow after" in outputs
