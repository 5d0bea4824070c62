"""Killing a real process half-way through a batch, for the resume tests."""

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
