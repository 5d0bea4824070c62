"""Timeouts and Ctrl-C hold against blocking work, through `jupyter-flow run|batch` as a
user types them: a node stuck in a sync function gives control back when its time is up,
parallel blocking nodes get a thread each, and SIGINT stops a run or a batch at once
(exit 130), a batch keeping what finished. Figures are printed; the bounds asserted are
generous, since a test must not fail on a slow machine (speed targets are benchmarks)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

WORK = '''\
import pathlib
import time


def block(seconds: float, marker: str = "") -> dict:
    if marker:
        pathlib.Path(marker).write_text("started")
    time.sleep(float(seconds))
    return {"slept": seconds}


def item(text: str) -> dict:
    if text.startswith("slow"):
        time.sleep(30)
    return {"echo": text}
'''


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "work.py").write_text(WORK)
    return tmp_path


def jupyter_flow(*args: str, cwd: Path) -> list[str]:
    return [str(Path(sys.executable).with_name("jupyter-flow")), *args]


def as_at_a_terminal(command: list[str]) -> list[str]:
    """`command` with SIGINT as a terminal gives it: a test run started in the background of
    a shell without job control has SIGINT ignored, and an ignored signal is inherited."""
    restore = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
    return [sys.executable, "-c", restore, *command]


def env_for(cwd: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(cwd)}


def run_cli(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.perf_counter()
    proc = subprocess.run(jupyter_flow(*args, cwd=cwd), capture_output=True, text=True, cwd=cwd, env=env_for(cwd), timeout=120)
    return proc, time.perf_counter() - t0


def test_a_20_second_blocking_node_with_timeout_1_returns_at_once(workdir: Path) -> None:
    (workdir / "slow.flow.yaml").write_text(textwrap.dedent("""\
        nodes:
          - id: stuck
            type: python
            config: {function: "work:block", input_mapping: {seconds: 20}}
            timeout_s: 1
        """))
    proc, elapsed = run_cli("run", "slow.flow.yaml", cwd=workdir)
    print(f"20 s blocking node, timeout_s 1: the CLI returned after {elapsed:.2f} s")
    assert proc.returncode == 1 and "stuck" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert elapsed < 10


def test_the_flow_deadline_holds_against_a_blocking_node(workdir: Path) -> None:
    (workdir / "deadline.flow.yaml").write_text(textwrap.dedent("""\
        timeout_s: 1
        nodes:
          - id: stuck
            type: python
            config: {function: "work:block", input_mapping: {seconds: 20}}
        """))
    proc, elapsed = run_cli("run", "deadline.flow.yaml", cwd=workdir)
    print(f"20 s blocking node, flow timeout_s 1: the CLI returned after {elapsed:.2f} s")
    assert proc.returncode == 1 and "timeout" in proc.stderr, proc.stderr
    assert elapsed < 10


def test_12_parallel_one_second_nodes_with_timeout_1_5_all_succeed(workdir: Path) -> None:
    nodes = "".join(
        f"  - {{id: n{i}, type: python, config: {{function: 'work:block', input_mapping: {{seconds: 1}}}}, timeout_s: 1.5}}\n"
        for i in range(12)
    )
    (workdir / "wide.flow.yaml").write_text("nodes:\n" + nodes)
    proc, elapsed = run_cli("run", "wide.flow.yaml", cwd=workdir)
    print(f"12 parallel 1 s nodes: {elapsed:.2f} s in all")
    assert proc.returncode == 0, proc.stderr
    outputs = json.loads(proc.stdout)
    assert sorted(outputs) == sorted(f"n{i}" for i in range(12))
    assert all(out == {"slept": 1} for out in outputs.values())


def wait_for(path: Path, proc: subprocess.Popen[str], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the node never started"
        time.sleep(0.05)


def test_ctrl_c_stops_a_run_with_exit_130(workdir: Path) -> None:
    marker = workdir / "started"
    (workdir / "slow.flow.yaml").write_text(textwrap.dedent(f"""\
        nodes:
          - id: stuck
            type: python
            config: {{function: "work:block", input_mapping: {{seconds: 30, marker: "{marker}"}}}}
        """))
    proc = subprocess.Popen(as_at_a_terminal(jupyter_flow("run", "slow.flow.yaml", cwd=workdir)), cwd=workdir, env=env_for(workdir),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(marker, proc)
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    elapsed = time.perf_counter() - t0
    print(f"run: SIGINT to exit took {elapsed:.2f} s")
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    assert elapsed < 10


def test_ctrl_c_stops_a_batch_with_exit_130_keeping_what_finished(workdir: Path) -> None:
    (workdir / "items.flow.yaml").write_text(textwrap.dedent("""\
        inputs: {text: {type: text}}
        nodes:
          - id: echo
            type: python
            config: {function: "work:item", input_mapping: {text: "{{ text }}"}}
        """))
    lines = [{"id": f"fast{i}", "text": f"fast{i}"} for i in range(3)] + [{"id": f"slow{i}", "text": f"slow{i}"} for i in range(2)]
    (workdir / "items.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = workdir / "out"
    results = out / "results.jsonl"
    proc = subprocess.Popen(as_at_a_terminal(jupyter_flow("batch", "items.flow.yaml", "--inputs", "items.jsonl", "--out", "out",
                                                          "-c", "5", "-q", cwd=workdir)), cwd=workdir, env=env_for(workdir),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (results.exists() and results.read_text().count("\n") >= 3):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the fast items never finished"
        time.sleep(0.05)
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    elapsed = time.perf_counter() - t0
    print(f"batch: SIGINT to exit took {elapsed:.2f} s")
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert elapsed < 10
    kept = [json.loads(line) for line in results.read_text().splitlines()]
    assert sorted(str(r.get("id")) for r in kept if r.get("status", "ok") == "ok") == ["fast0", "fast1", "fast2"]


@pytest.mark.parametrize("template", [
    "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
    "{{ 'x' * 10000000000 }}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
])
def test_a_runaway_template_fails_at_once_naming_its_node(workdir: Path, template: str) -> None:
    (workdir / "cpu.flow.yaml").write_text(json.dumps({"nodes": [{"id": "spin", "type": "template", "config": {"template": template}}]}))
    proc, elapsed = run_cli("run", "cpu.flow.yaml", cwd=workdir)
    print(f"runaway template: the CLI returned after {elapsed:.2f} s")
    assert proc.returncode == 1 and "node 'spin'" in proc.stderr and "config.template" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and elapsed < 30
