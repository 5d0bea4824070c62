"""A real JupyterLab server for tests, and the flow files they serve with it.

`JupyterLab(root_dir)` starts `jupyter lab` on a free loopback port with every Jupyter
directory in a temporary folder, and stops it (by its process group) on exit. The server
extension's tests talk to it over HTTP; the browser tests (tests/ui) open it in Chromium.

Flow files the tests share live in tests/fixtures/flows:
- `greet_switch.flow.yaml`: a `start` edge, a switch and two branches (4 nodes, 4 edges);
- `greet_chain.flow.yaml`: two template nodes in a chain (2 nodes, 2 edges);
- `broken.flow.yaml`: `echo` reads a node that does not exist (one problem).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from servers import free_port

FLOWS = Path(__file__).resolve().parent / "fixtures" / "flows"

# Stop the kernel-choice dialog and the news pop-up, which would block a run.
LAB_SETTINGS: dict[str, Any] = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"checkForUpdates": False, "fetchNews": "false"},
    # every cell stays in the page, so tests can read outputs far down the notebook
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"autoStartDefaultKernel": True, "windowingMode": "none"},
}


def fixture_flow(name: str) -> str:
    """The text of a flow file in tests/fixtures/flows."""
    return (FLOWS / name).read_text()


def flow_with(name: str, *, nodes: str = "", edges: str = "") -> str:
    """A fixture flow with more nodes and edges, given as YAML lines in the file's own style
    (the nodes go before `edges:`, the edges at the end)."""
    head, tail = fixture_flow(name).split("edges:\n")
    return f"{head}{nodes}edges:\n{tail}{edges}"


class JupyterLab:
    """`jupyter lab` serving `root_dir` on 127.0.0.1, isolated from the user's settings.

    `settings` adds lab settings files (a path under the settings folder -> its JSON body)
    to `LAB_SETTINGS`; `env` adds variables to the server's environment."""

    def __init__(
        self,
        root_dir: Path,
        *,
        settings: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout_s: float = 60.0,
    ) -> None:
        self.root_dir = Path(root_dir)
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.settings = {**LAB_SETTINGS, **(settings or {})}
        self.extra_env = dict(env or {})
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
        for rel, body in self.settings.items():
            target = settings / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(body))
        env["JUPYTERLAB_SETTINGS_DIR"] = str(settings)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.extra_env)
        return env

    def start(self) -> JupyterLab:
        cmd = [
            sys.executable, "-m", "jupyterlab", "--allow-root", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root_dir}",
            "--ServerApp.port_retries=0",
        ]
        log = self.log_path.open("wb")
        # started in the folder it serves, as users start it: jupyter-scheduler writes a
        # job's downloaded files under the server's working folder
        self.process = subprocess.Popen(cmd, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                        cwd=self.root_dir)
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

    def page_url(self, path: str = "") -> str:
        """The lab's page, with `path` (a notebook, a flow file) open when given."""
        tree = f"/tree/{path}" if path else ""
        return f"{self.url}/lab{tree}?token={self.token}&reset"

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
