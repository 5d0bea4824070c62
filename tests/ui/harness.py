"""A real JupyterLab server and a real Chromium driven by Playwright, for browser tests.

`JupyterLab` (from tests/lab_server.py) serves a folder; `lab_serving` fills the folder,
skips the test where no browser can run, and serves it. `Browser` launches Debian's Chromium
headless, records console messages and page errors, and saves screenshots under
`test-artifacts/`; `browser_fixture` makes a test module's `browser` fixture. Helpers open
a notebook, run all cells, and reach the cytoscape graphs drawn by ipycytoscape, in the
notebook workbench and in the flow file's own view.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from lab_server import JupyterLab

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def browser_available() -> str | None:
    """None when a browser test can run here, else why not."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing"
    return None


@contextmanager
def lab_serving(root: Path, files: Mapping[str, str | Path], **options: Any) -> Iterator[JupyterLab]:
    """Skip the test where no browser can run; else put `files` under `root` (a relative
    path -> a text to write, or a file or folder to copy) and serve `root` with JupyterLab
    (`options` go to `JupyterLab`)."""
    why = browser_available()
    if why:
        pytest.skip(why)
    for rel, content in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            target.write_text(content)
        elif content.is_dir():
            shutil.copytree(content, target)
        else:
            shutil.copy(content, target)
    with JupyterLab(root, **options) as server:
        yield server


def workbench_notebook(flow_path: str) -> str:
    """A notebook whose one cell shows the workbench of `flow_path`."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"from jupyter_flow.workbench import Workbench\n\nwb = Workbench('{flow_path}')\nwb")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return str(nbformat.writes(nb))


class Browser:
    """Headless Chromium with one page; console messages and page errors are collected.

    `problems()` lists the page errors and the console errors seen (a request answered
    with an error status is one: Chromium logs it); `browser_fixture` fails the test when
    there is any. A test that provokes a console error on purpose says so first with
    `expect_console_error(pattern)`."""

    def __init__(self, *, artifacts: Path = ARTIFACTS, prefix: str = "ui") -> None:
        self.artifacts = artifacts
        self.prefix = prefix
        self.console: list[str] = []
        self.page_errors: list[str] = []
        self._expected: list[re.Pattern[str]] = []
        self.screenshots: list[Path] = []
        self._last_shot: str | None = None
        self._pw: Any = None
        self._browser: Any = None
        self.page: Any = None

    def start(self, *, width: int = 1500, height: int = 1000) -> Browser:
        from playwright.sync_api import sync_playwright

        self.artifacts.mkdir(parents=True, exist_ok=True)
        self._pw = sync_playwright().start()
        self._browser = self._pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS  # a fresh profile of its own
        )
        self.page = self._browser.new_page(viewport={"width": width, "height": height})
        self.page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))
        self.page.on("pageerror", lambda err: self.page_errors.append(str(err)))
        return self

    @property
    def console_errors(self) -> list[str]:
        """The console's error messages, but those a test expects (`expect_console_error`)."""
        errors = [line for line in self.console if line.startswith("error:")]
        return [line for line in errors if not any(p.search(line) for p in self._expected)]

    def expect_console_error(self, pattern: str) -> None:
        """A console error matching `pattern` (a regular expression) is part of the test."""
        self._expected.append(re.compile(pattern))

    def problems(self) -> list[str]:
        """Page errors and unexpected console errors, each once, in the order seen."""
        return list(dict.fromkeys([f"page error: {e}" for e in self.page_errors] + [f"console {e}" for e in self.console_errors]))

    def screenshot(self, name: str) -> Path:
        path = self.artifacts / f"{self.prefix}-{len(self.screenshots) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(path))
        self.screenshots.append(path)
        return path

    def screenshot_at_end(self, name: str) -> None:
        """Save a screenshot named `name` when the browser stops, however the test ended."""
        self._last_shot = name

    def stop(self) -> None:
        """Take the screenshot asked for at the end, close the browser (its processes end
        with it) and Playwright's driver."""
        try:
            if self._last_shot and self.page is not None:
                name, self._last_shot = self._last_shot, None
                self.screenshot(name)
        finally:
            if self._browser is not None:
                try:
                    self._browser.close()
                finally:
                    self._browser = None
        if self._pw is not None:
            self._pw.stop()
            self._pw = None

    def __enter__(self) -> Browser:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def browser_fixture(prefix: str, *, per_test: bool = False) -> Callable[..., Iterator[Browser]]:
    """A test module's `browser` fixture: a fresh `Browser` for each test, its screenshots
    named `<prefix>-NN-...`, or `<prefix>-<test name>-NN-...` with `per_test`. Take it after
    `lab`, so that a screenshot asked for at the end still sees the lab. A test that passed
    fails when the page logged an error or a console error it did not expect
    (`Browser.problems`)."""

    @pytest.fixture
    def browser(request: pytest.FixtureRequest) -> Iterator[Browser]:
        name = f"{prefix}-{request.node.name.removeprefix('test_')[:30]}" if per_test else prefix
        with Browser(prefix=name) as b:
            yield b
            problems = b.problems()
        if problems:
            pytest.fail(f"{len(problems)} error(s) in the browser:\n" + "\n".join(p[:1000] for p in problems), pytrace=False)

    return browser


# -- JupyterLab pages ---------------------------------------------------------------------------
def open_notebook(page: Any, lab: JupyterLab, path: str, *, timeout_s: float = 90.0) -> None:
    """Open a notebook and wait until its kernel is idle."""
    page.goto(lab.page_url(path), timeout=timeout_s * 1000)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout_s * 1000)
    # the status bar names the kernel once it has started ("No Kernel | Initializing" before)
    page.wait_for_function(
        """() => {
            const bar = document.querySelector('#jp-main-statusbar');
            const idle = document.querySelector(".jp-Notebook-ExecutionIndicator[data-status='idle']");
            return idle && bar && /\\| Idle/.test(bar.textContent) && !/No Kernel/.test(bar.textContent);
        }""",
        timeout=timeout_s * 1000,
    )


def run_menu(page: Any, item: str) -> None:
    """Pick an item of the Run menu ("Run All Cells", "Run All Above Selected Cell", ...)."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{re.escape(item)}$")).click()


def run_all_cells(page: Any) -> None:
    run_menu(page, "Run All Cells")


def select_code_cell(page: Any, index: int) -> None:
    """Select a code cell (negative counts from the end) in command mode, by its prompt."""
    cells = page.locator(".jp-Notebook .jp-CodeCell")
    cell = cells.nth(index if index >= 0 else cells.count() + index)
    cell.scroll_into_view_if_needed()
    cell.locator(".jp-InputArea-prompt").click()


def wait_all_cells_ran(page: Any, *, timeout_s: float = 120.0, skip_last: int = 0) -> None:
    """Wait until every code cell (but the last `skip_last`) has an execution count and
    the kernel is idle."""
    page.wait_for_function(
        """([skip]) => {
            const all = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')];
            const prompts = all.slice(0, all.length - skip);
            if (!prompts.length) return false;
            const busy = document.querySelector(".jp-Notebook-ExecutionIndicator[data-status='busy']");
            return !busy && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
        }""",
        arg=[skip_last],
        timeout=timeout_s * 1000,
    )


def code_cell_output(page: Any, index: int) -> str:
    """The text a code cell (negative counts from the end) shows as its output."""
    cells = page.locator(".jp-Notebook .jp-CodeCell")
    cell = cells.nth(index if index >= 0 else cells.count() + index)
    return str(cell.locator(".jp-OutputArea").inner_text())


def error_outputs(page: Any) -> list[str]:
    """Tracebacks shown in the notebook's outputs."""
    return page.eval_on_selector_all(
        ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'], .jp-RenderedText[data-mime-type='application/vnd.jupyter.error']",
        "els => els.filter(e => e.matches('[data-mime-type=\"application/vnd.jupyter.error\"]')).map(e => e.textContent.slice(0, 2000))",
    )


# -- cytoscape graphs -------------------------------------------------------------------------------
CY_LIST = "[...document.querySelectorAll('div')].filter(d => d._cyreg && d._cyreg.cy)"


def wait_for_cytoscape(page: Any, *, count: int = 1, timeout_s: float = 60.0) -> None:
    page.wait_for_function(f"() => {CY_LIST}.length >= {count} && {CY_LIST}[0]._cyreg.cy.nodes().length > 0",
                           timeout=timeout_s * 1000)


def record_cy_classes(page: Any, index: int = 0) -> None:
    """From now on, note every set of classes each node of the index-th graph shows
    (cytoscape's `class` event fires on every change, however short-lived); read them with
    `recorded_cy_classes`."""
    page.evaluate(
        f"""() => {{
            const cy = {CY_LIST}[{index}]._cyreg.cy;
            const seen = window.__jfSeenClasses = {{}};
            const note = n => {{ (seen[n.id()] = seen[n.id()] || []).push(n.classes().join(' ')); }};
            cy.nodes().forEach(note);
            if (window.__jfClassListener) cy.off('class', 'node', window.__jfClassListener);
            window.__jfClassListener = e => note(e.target);
            cy.on('class', 'node', window.__jfClassListener);
        }}"""
    )


def recorded_cy_classes(page: Any) -> dict[str, list[str]]:
    """Each node's class sets, in the order `record_cy_classes` saw them."""
    return page.evaluate("() => window.__jfSeenClasses || {}")


def cy_elements(page: Any, index: int = 0) -> dict[str, Any]:
    """Nodes (id, classes, data, rendered position) and edges of the index-th graph."""
    return page.evaluate(
        f"""() => {{
            const cy = {CY_LIST}[{index}]._cyreg.cy;
            return {{
                nodes: cy.nodes().map(n => ({{id: n.id(), classes: n.classes(), data: n.data(),
                                              rendered: n.renderedPosition()}})),
                edges: cy.edges().map(e => ({{id: e.id(), source: e.source().id(), target: e.target().id(),
                                              label: e.data('label') || ''}})),
            }};
        }}"""
    )


def scroll_to_cytoscape(page: Any, index: int = 0) -> None:
    page.evaluate(f"() => {CY_LIST}[{index}].scrollIntoView({{block: 'center'}})")
    page.wait_for_timeout(300)


def click_cy_node(page: Any, node_id: str, index: int = 0) -> None:
    """Click a node where it is drawn on screen (container box + rendered position)."""
    point = page.evaluate(
        f"""() => {{
            const div = {CY_LIST}[{index}];
            const box = div.getBoundingClientRect();
            const pos = div._cyreg.cy.getElementById({json.dumps(node_id)}).renderedPosition();
            return {{x: box.left + pos.x, y: box.top + pos.y}};
        }}"""
    )
    page.mouse.click(point["x"], point["y"])


# -- the file browser, and a flow file's own view ---------------------------------------------------
FLOW_VIEW = ".jp-FlowGraphDocument:not(.lm-mod-hidden)"
FLOW_CY = f"[...document.querySelectorAll('{FLOW_VIEW} .jp-FlowGraph-canvas')].filter(d => d._cyreg && d._cyreg.cy)"


def open_lab(page: Any, lab: JupyterLab, path: str = "") -> None:
    """Open the lab's page (with `path` open in it when given)."""
    page.goto(lab.page_url(path), timeout=90_000)


def file_browser_open(page: Any, name: str) -> None:
    """Double-click the file browser's item whose name starts with `name`."""
    page.locator(".jp-DirListing-item", has_text=re.compile(rf"^{re.escape(name)}")).first.dblclick()


def file_browser_menu(page: Any, name: str, item: str) -> None:
    """Pick `item` of the context menu of the file browser's item whose name starts with `name`."""
    page.locator(".jp-DirListing-item", has_text=re.compile(rf"^{re.escape(name)}")).first.click(button="right")
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{re.escape(item)}$")).click()


def wait_for_flow_graph(page: Any, nodes: int, *, timeout_s: float = 60.0) -> None:
    """Wait until the flow view in front draws `nodes` nodes, and its first fit."""
    page.wait_for_function(f"() => {FLOW_CY}.length > 0 && {FLOW_CY}[0]._cyreg.cy.nodes().length === {nodes}",
                           timeout=timeout_s * 1000)
    page.wait_for_timeout(600)  # the first fit after the panel has its size


def open_flow(page: Any, lab: JupyterLab, name: str, nodes: int) -> None:
    """Open a flow file in its own view and wait until it draws `nodes` nodes."""
    open_lab(page, lab, name)
    wait_for_flow_graph(page, nodes)


def flow_graph(page: Any) -> dict[str, Any]:
    """The zoom, the nodes (id, classes, data, rendered position and box, font size) and the
    edges (id, ends, label, rendered midpoint) of the flow view in front."""
    return page.evaluate(
        f"""() => {{
            const cy = {FLOW_CY}[0]._cyreg.cy;
            return {{
                zoom: cy.zoom(),
                nodes: cy.nodes().map(n => ({{id: n.id(), classes: n.classes(), data: n.data(), rendered: n.renderedPosition(),
                                              box: n.renderedBoundingBox(), font: parseFloat(n.style('font-size'))}})),
                edges: cy.edges().map(e => ({{id: e.id(), source: e.source().id(), target: e.target().id(),
                                              label: e.data('label'), mid: e.renderedMidpoint()}})),
            }};
        }}"""
    )


def flow_canvas_box(page: Any) -> dict[str, float]:
    """Where the flow view's canvas is on the page."""
    return page.evaluate(f"() => {{ const r = {FLOW_CY}[0].getBoundingClientRect(); return {{x: r.left, y: r.top, w: r.width, h: r.height}}; }}")


def flow_node_point(page: Any, node_id: str) -> tuple[float, float]:
    """Where a node of the flow view in front is drawn, on the page."""
    box = flow_canvas_box(page)
    pos = next(n for n in flow_graph(page)["nodes"] if n["id"] == node_id)["rendered"]
    return box["x"] + pos["x"], box["y"] + pos["y"]


def wait_flow(page: Any, condition: str, *, timeout_s: float = 20.0) -> None:
    """Wait until `condition` (JavaScript over `cy`, the graph of the flow view in front) holds."""
    page.wait_for_function(f"() => {{ const cy = {FLOW_CY}[0]._cyreg.cy; return {condition}; }}", timeout=timeout_s * 1000)


def flow_dirty(page: Any) -> bool:
    """Whether the document in front shows unsaved changes."""
    return bool(page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current.jp-mod-dirty").count())


def flow_keys(page: Any, keys: str) -> None:
    """Press `keys` with the focus on the graph of the flow view in front."""
    page.locator(f"{FLOW_VIEW} .jp-FlowGraph-canvas").focus()
    page.keyboard.press(keys)


def save_flow(page: Any) -> None:
    """Save the document in front with Ctrl+S and wait until it shows no unsaved changes and
    the save's checkpoint is written: until then JupyterLab ignores another Ctrl+S."""
    def checkpoint(response: Any) -> bool:
        return bool(response.request.method == "POST" and response.url.split("?")[0].endswith("/checkpoints"))

    with page.expect_response(checkpoint, timeout=15_000):
        flow_keys(page, "Control+s")
    page.wait_for_function("() => !document.querySelector('.lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current.jp-mod-dirty')",
                           timeout=15_000)


def menu_bar(page: Any, menu: str, item: str) -> None:
    """Pick `item` of the menu bar's menu `menu` ("Edit", "Undo ...")."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(rf"^{re.escape(menu)}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{re.escape(item)}")).first.click()


def drag_flow_handle(page: Any, source: str, target: str) -> None:
    """Connect two nodes of the flow view in front by dragging from `source`'s handle to `target`."""
    x, y = flow_node_point(page, source)
    page.mouse.move(x, y)
    handle = page.locator(f"{FLOW_VIEW} .jp-FlowGraph-handle")
    handle.wait_for(state="visible", timeout=5_000)
    hb = handle.bounding_box()
    tx, ty = flow_node_point(page, target)
    page.mouse.move(hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2)
    page.mouse.down()
    for i in range(1, 11):
        page.mouse.move(hb["x"] + (tx - hb["x"]) * i / 10, hb["y"] + (ty - hb["y"]) * i / 10)
        page.wait_for_timeout(40)
    page.wait_for_timeout(300)
    page.mouse.up()
