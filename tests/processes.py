"""Real processes in tests: killing one half-way through a batch (the resume tests), and
stopping the servers tests start."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


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
