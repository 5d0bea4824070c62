"""The plots of the Inspect tab go into the page only while that tab shows: a bqplot
figure laid out in a hidden tab has no size and draws its plot area with negative sizes
(the browser logs an error for each), so a view drawn behind another tab waits, built,
until the Inspect tab comes to the front (the browser side: tests/ui/test_browser_plots_in_tabs.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("ipycytoscape")
bq = pytest.importorskip("bqplot")

from jupyter_flow.workbench import Workbench  # noqa: E402

INSPECT = 1


def make(n: int) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(n)
    return {"strip": rng.normal(size=(1, n)), "grid": rng.normal(size=(6, 8))}


def workbench() -> Workbench:
    flow = {"name": "plots", "nodes": [{"id": "make", "type": "python",
                                        "config": {"function": "pt_make", "input_mapping": {"n": 32}}}]}
    return Workbench(flow, functions={"pt_make": make})


def figures(widget: Any) -> list[Any]:
    """The bqplot figures in a widget tree."""
    if isinstance(widget, bq.Figure):
        return [widget]
    return [f for child in getattr(widget, "children", ()) for f in figures(child)]


def test_a_run_behind_another_tab_draws_its_plots_when_the_inspect_tab_opens() -> None:
    async def main() -> None:
        wb = workbench()
        await wb.run()
        wb.select("make")
        assert wb.tabs.selected_index == INSPECT
        panel = wb.tensor_panel
        first = panel.view
        assert first is not None and figures(panel.body) == figures(first.widget) != []

        wb.show_tab("Timeline")
        await wb.run()
        again = panel.view
        assert again is not None and again is not first and figures(again.widget)  # drawn in the kernel
        assert figures(panel.body) == []  # but not in the page, where it would have no size

        wb.show_tab("Inspect")
        assert panel.body.children == (again.widget,)
        wb.show_tab("Settings")
        assert panel.body.children == (again.widget,)  # a view laid out already stays

    asyncio.run(main())


def test_plots_go_into_the_page_only_after_their_tab_comes_to_the_front() -> None:
    async def main() -> None:
        wb = workbench()
        await wb.run()
        seen: list[tuple[int | None, int]] = []  # the tab in front each time the panel's body changes
        wb.tensor_panel.body.observe(lambda c: seen.append((wb.tabs.selected_index, len(figures(c["owner"])))), names="children")

        wb.show_tab("Timeline")
        wb.select("make")  # the panel draws first, then the workbench switches to Inspect
        grid = wb.inspect("make", "grid")  # from the Timeline tab too
        wb.show_tab("History")
        wb.inspect("make", "strip")
        assert wb.tabs.selected_index == INSPECT and wb.tensor_panel.view is not grid
        assert seen and all(tab == INSPECT for tab, count in seen if count), seen

    asyncio.run(main())
