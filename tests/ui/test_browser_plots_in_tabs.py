"""Plots drawn behind another tab of the workbench, in a real JupyterLab in real Chromium:
a run while the Timeline tab shows redraws the selected node's tensor plot, which goes
into the page only when the Inspect tab is opened, and is then drawn whole (a bqplot
figure laid out in a hidden tab has no size: it would draw its plot area with negative
sizes, which the browser logs as errors, and stay blank). The harness fails the test on
any console error."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import (  # noqa: E402
    Browser,
    JupyterLab,
    browser_fixture,
    error_outputs,
    lab_serving,
    open_notebook,
    run_all_cells,
    wait_all_cells_ran,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
PANEL = ".jf-workbench .jf-tensor-panel"

CELLS = [
    """import numpy as np
from jupyter_flow.workbench import Workbench

def make(n: float) -> dict:
    rng = np.random.default_rng(int(n))
    return {"strip": rng.normal(size=(1, int(n))), "grid": rng.normal(size=(6, 8))}

wb = Workbench({"name": "plots", "inputs": {"n": {"type": "number", "default": 32}},
                "nodes": [{"id": "make", "type": "python", "config": {"function": "make", "input_mapping": {"n": "{{n}}"}}}]},
               functions={"make": make})
wb""",
    """result = await wb.run()
wb.show_tab("Timeline")
wb.select("make")  # the panel draws, then the Inspect tab comes to the front""",
    """import asyncio
await asyncio.sleep(2)  # the plot in place, as a user would look at it
wb.show_tab("Timeline")
result = await wb.run({"n": 24})  # redrawn while the Inspect tab is hidden
print(result.status)""",
]


def _notebook() -> str:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return str(nbformat.writes(nb))


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[JupyterLab]:
    with lab_serving(tmp_path, {"plots.ipynb": _notebook()}) as server:
        yield server


browser = browser_fixture("plots-in-tabs")


def test_a_plot_redrawn_behind_another_tab_is_drawn_whole_when_its_tab_opens(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    browser.screenshot_at_end("final")
    open_notebook(page, lab, "plots.ipynb")
    run_all_cells(page)
    wait_all_cells_ran(page)
    assert error_outputs(page) == []
    # the run's plot is built in the kernel but kept out of the hidden tab
    assert page.locator(f"{PANEL} .bqplot").count() == 0
    assert browser.problems() == [], browser.problems()
    browser.screenshot("timeline-in-front")

    page.locator(".jf-workbench .lm-TabBar-tab", has_text="Inspect").click()
    page.wait_for_function(f"() => document.querySelectorAll('{PANEL} .bqplot.jf-strip').length === 1", timeout=30_000)
    page.locator(f"{PANEL} .bqplot").scroll_into_view_if_needed()
    # drawn at its size: 24 bars over a plot area of positive width and height
    page.wait_for_function(
        f"""() => {{ const f = document.querySelector('{PANEL} .bqplot.jf-strip');
            const bg = f && f.querySelector('rect.plotarea_background');
            return bg && f.style.visibility !== 'hidden' && +bg.getAttribute('width') > 100 && +bg.getAttribute('height') > 50
                && f.querySelectorAll('rect.bar').length === 24; }}""",
        timeout=30_000,
    )
    browser.screenshot("inspect-opened")
    assert browser.problems() == [], browser.problems()
