"""The run history: runs recorded in SQLite, listed, shown and compared node by node."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_flow import Flow
from jupyter_flow.history import RunHistory, flow_digest

FLOW = {
    "name": "greet",
    "inputs": {"who": {"type": "string"}},
    "nodes": [
        {"id": "clean", "type": "template", "config": {"template": "{{ who | trim }}"}},
        {"id": "greet", "type": "template", "config": {"template": "Hello, {{ clean.output.text }}!"}},
    ],
    "edges": [{"from": "clean", "to": "greet"}],
}


def flow(template: str = "Hello, {{ clean.output.text }}!") -> Flow:
    body = json.loads(json.dumps(FLOW))
    body["nodes"][1]["config"]["template"] = template
    return Flow.from_dict(body)


def record(history: RunHistory, f: Flow, who: str) -> str:
    result = f.run({"who": who})
    return history.record(result, spec=f.spec)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jupyter_flow.cli", "runs", *args], capture_output=True, text=True, timeout=120)


def test_runs_are_listed_newest_first_with_their_flow_digest(tmp_path: Path) -> None:
    history = RunHistory(tmp_path / "h.sqlite")
    first = record(history, flow(), " Ada ")
    second = record(history, flow("Hi, {{ clean.output.text }}."), "Ada")
    runs = history.runs()
    assert [r["run_id"] for r in runs] == [second, first]
    assert runs[0]["flow_digest"] != runs[1]["flow_digest"] and runs[1]["flow_digest"] == flow_digest(flow().spec)
    shown = history.get(first[:12])
    assert shown["outputs"]["greet"] == {"text": "Hello, Ada!"} and shown["inputs"] == {"who": " Ada "}
    assert [n["node"] for n in shown["nodes"]] == ["clean", "greet"] and shown["trace"]["status"] == "ok"


def test_diff_names_the_config_and_output_that_changed(tmp_path: Path) -> None:
    history = RunHistory(tmp_path / "h.sqlite")
    a = record(history, flow(), "Ada")
    b = record(history, flow("Hi, {{ clean.output.text }}."), "Ada")
    diff = history.diff(a, b)
    assert diff.changed_nodes() == ["greet"]
    greet = diff.nodes[1]
    assert [c.path for c in greet.config] == ["config.template"]
    assert "-text: Hello, Ada!" in greet.text_diff and "+text: Hi, Ada." in greet.text_diff
    assert all(d is not None for d in greet.duration_s)


def test_cli_list_show_diff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "h.sqlite"
    history = RunHistory(path)
    a = record(history, flow(), "Ada")
    b = record(history, flow("Hi, {{ clean.output.text }}."), "Bob")
    listed = cli("--history", str(path), "list", "--json")
    assert listed.returncode == 0 and [r["run_id"] for r in json.loads(listed.stdout)] == [b, a]
    assert a in cli("--history", str(path), "list").stdout
    shown = cli("--history", str(path), "show", b)
    assert json.loads(shown.stdout)["inputs"] == {"who": "Bob"}
    diff = cli("--history", str(path), "diff", a, b)
    assert diff.returncode == 0 and "~ input who" in diff.stdout and "config config.template" in diff.stdout
    missing = cli("--history", str(path), "show", "nope")
    assert missing.returncode == 2 and "no run 'nope'" in missing.stderr and "Traceback" not in missing.stderr
    monkeypatch.setenv("JUPYTER_FLOW_HISTORY", str(path))
    assert RunHistory().path == path


def test_a_broken_history_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    path.write_bytes(b"not a database" * 100)
    proc = cli("--history", str(path), "list")
    assert proc.returncode == 2 and "cannot be used" in proc.stderr and "Traceback" not in proc.stderr


WRITER = """
import sys
from jupyter_flow import Flow
from jupyter_flow.history import RunHistory
flow = Flow.from_dict({"name": "w", "nodes": [{"id": "t", "type": "template", "config": {"template": "{{ n }}"}}],
                       "inputs": {"n": {"type": "string"}}})
history = RunHistory(sys.argv[1])
for i in range(40):
    history.record(flow.run({"n": sys.argv[2] + str(i)}), spec=flow.spec)
"""


def test_two_processes_writing_one_history_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag], stderr=subprocess.PIPE, text=True) for tag in "ab"]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    runs = RunHistory(path).runs(limit=1000)
    assert len(runs) == 80 and len({r["run_id"] for r in runs}) == 80


OPENER = """
import sys, time
from jupyter_flow.history import RunHistory
start = float(sys.argv[2])
while time.time() < start:
    pass
RunHistory(sys.argv[1]).runs()
"""


def test_processes_opening_one_new_history_at_the_same_moment_all_open_it(tmp_path: Path) -> None:
    """Turning a new file to WAL takes its lock without waiting: the openers that find it
    held try again within the busy timeout, rather than fail with "database is locked"."""
    import time

    for round_ in range(5):
        path = tmp_path / f"h{round_}.sqlite"
        start = time.time() + 1.5  # every process past its imports, then all at once
        procs = [subprocess.Popen([sys.executable, "-c", OPENER, str(path), str(start)], stderr=subprocess.PIPE, text=True)
                 for _ in range(6)]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err


def test_the_history_keeps_the_newest_runs(tmp_path: Path) -> None:
    history = RunHistory(tmp_path / "h.sqlite", keep_runs=3)
    ids = [record(history, flow(), str(i)) for i in range(5)]
    assert [r["run_id"] for r in history.runs()] == ids[:1:-1]


def test_a_dataframe_of_runs(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    history = RunHistory(tmp_path / "h.sqlite")
    record(history, flow(), "Ada")
    frame = history.frame()
    assert list(frame["status"]) == ["ok"] and {"run_id", "flow", "duration_s"} <= set(frame.columns)
