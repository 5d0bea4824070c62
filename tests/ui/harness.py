"""A real JupyterLab server and a real Chromium driven by Playwright, for browser tests.

`JupyterLab(root_dir)` starts `jupyter lab` on a free loopback port with every Jupyter
directory in a temporary folder, and stops it (by its process group) on exit. `Browser`
launches Debian's Chromium headless, records console messages and page errors, and saves
screenshots under `test-artifacts/`. Helpers open a notebook, run all cells, and reach the
cytoscape graphs drawn by ipycytoscape.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Stop the kernel-choice dialog and the news pop-up, which would block a run.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"checkForUpdates": False, "fetchNews": "false"},
    # every cell stays in the page, so tests can read outputs far down the notebook
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"autoStartDefaultKernel": True, "windowingMode": "none"},
}


#: A small flow with a `start` edge, a switch and two branches, for the browser tests.
GREET_FLOW = """\
spec_version: 1
name: greet
inputs: {text: {type: text, default: hi}}
nodes:
  - id: shout
    type: template
    config: {template: "{{ text | upper }}"}
  - id: route
    type: switch
    config: {cases: {loud: "{{ shout.output.text | length > 3 }}"}, default: quiet}
  - id: loud_reply
    type: template
    config: {template: "LOUD"}
  - id: quiet_reply
    type: template
    config: {template: "quiet"}
edges:
  - {from: start, to: shout}
  - {from: shout, to: route}
  - {from: route, to: loud_reply, branch: loud}
  - {from: route, to: quiet_reply, branch: quiet}
"""


def browser_available() -> str | None:
    """None when a browser test can run here, else why not."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class JupyterLab:
    """`jupyter lab` serving `root_dir` on 127.0.0.1, isolated from the user's settings."""

    def __init__(self, root_dir: Path, *, startup_timeout_s: float = 60.0) -> None:
        self.root_dir = Path(root_dir)
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self._home = Path(tempfile.mkdtemp(prefix="jf-lab-"))
        self.log_path = self._home / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_WORKSPACES_DIR", "IPYTHONDIR"):
            path = self._home / name.lower()
            path.mkdir(exist_ok=True)
            env[name] = str(path)
        settings = self._home / "lab-settings"
        for rel, body in LAB_SETTINGS.items():
            target = settings / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(body))
        env["JUPYTERLAB_SETTINGS_DIR"] = str(settings)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self) -> JupyterLab:
        cmd = [
            sys.executable, "-m", "jupyterlab", "--allow-root", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root_dir}",
            "--ServerApp.port_retries=0",
        ]
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(cmd, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"jupyter lab did not answer within {self.startup_timeout_s:g} s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def notebook_url(self, path: str) -> str:
        return f"{self.url}/lab/tree/{path}?token={self.token}&reset"

    def stop(self) -> None:
        """Stop the server and the kernels it started (its whole process group)."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            except ProcessLookupError:
                pass
        self.process = None
        shutil.rmtree(self._home, ignore_errors=True)

    def __enter__(self) -> JupyterLab:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class Browser:
    """Headless Chromium with one page; console messages and page errors are collected."""

    def __init__(self, *, artifacts: Path = ARTIFACTS, prefix: str = "ui") -> None:
        self.artifacts = artifacts
        self.prefix = prefix
        self.console: list[str] = []
        self.page_errors: list[str] = []
        self.screenshots: list[Path] = []
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

    def screenshot(self, name: str) -> Path:
        path = self.artifacts / f"{self.prefix}-{len(self.screenshots) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(path))
        self.screenshots.append(path)
        return path

    def stop(self) -> None:
        """Close the browser (its processes end with it) and Playwright's driver."""
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


# -- JupyterLab pages ---------------------------------------------------------------------------
def open_notebook(page: Any, lab: JupyterLab, path: str, *, timeout_s: float = 90.0) -> None:
    """Open a notebook and wait until its kernel is idle."""
    page.goto(lab.notebook_url(path), timeout=timeout_s * 1000)
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
