"""Real processes in tests: killing one half-way through a batch (the resume tests),
starting the demo MCP server, and stopping the servers tests start."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

#: the demo MCP server (the official SDK), run over stdio or streamable HTTP
MCP_DEMO = Path(__file__).resolve().parent / "tools" / "mcp_demo.py"


def kill_after_results(proc: subprocess.Popen, results: Path, lines: int, timeout_s: float) -> None:
    """SIGKILL `proc` once `results` (a results.jsonl) holds `lines` lines; the process
    must still be running then."""
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if results.exists() and results.read_bytes().count(b"\n") >= lines:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def stop(proc: subprocess.Popen, timeout_s: float = 20) -> None:
    """Stop a server the test started: SIGTERM, then SIGKILL if it is still there after
    `timeout_s`; its pipes are drained either way."""
    proc.terminate()
    try:
        proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


@contextlib.contextmanager
def mcp_demo_server(log_dir: Path, expected_key: str) -> Iterator[str]:
    """The demo MCP server over streamable HTTP on a free loopback port, expecting
    `expected_key`: its URL once it accepts connections; stopped at the end."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (log_dir / "server.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, str(MCP_DEMO), "http", str(port)], stdout=log, stderr=subprocess.STDOUT,
                                env={"PATH": "/usr/bin:/bin", "DEMO_EXPECTED": expected_key})
        try:
            deadline = time.monotonic() + 120
            while True:
                assert proc.poll() is None, "the MCP server exited"
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "the MCP server did not start"
                    time.sleep(0.1)
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            stop(proc)
