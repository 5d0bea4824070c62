"""Runs started from the file view, through a real Jupyter server: each in a process of its
own (the server never imports the flow's Python), its node states and outputs read as they
come, cancelled, stopped at its time bound, its outputs cut at their bound, refused with
the input named, and found again in the run history as the file's last run."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from lab_server import JupyterLab  # noqa: E402

from jupyter_flow.atomic import MAX_FILE_BYTES  # noqa: E402
from jupyter_flow.flow import Flow  # noqa: E402
from jupyter_flow.history import RunHistory  # noqa: E402
from jupyter_flow.replies import LastRunReply, RunReply  # noqa: E402
from jupyter_flow.serverext import SMALL_FOLDER_BYTES, SMALL_FOLDER_FILES  # noqa: E402
from jupyter_flow.viewruns import MAX_ACTIVE_RUNS, MAX_OUTPUT_CHARS, RunRefusedError, ViewRuns, last_run  # noqa: E402

pytestmark = pytest.mark.timeout(240)

# Imported by the run's process only: each import notes the process that made it.
STEPS = """\
import os, time
from pathlib import Path

Path(__file__).with_name("imported-by.txt").open("a").write(f"{os.getpid()}\\n")


def shout(text):
    return {"text": text.upper()}


def fail(text):
    raise ValueError(f"no good: {text}")


def sleepy(text):
    time.sleep(60)
    return {"text": text}


def big(text):
    return {"rows": [text * 1000 for _ in range(1000)]}
"""


def flow(name: str, second: str) -> str:
    return f"""\
spec_version: 1
name: {name}
inputs: {{text: {{type: text, default: hi}}, times: {{type: integer, default: 1}}}}
nodes:
  - id: loud
    type: python
    config: {{function: "steps:shout", input_mapping: {{text: "{{{{ text }}}}"}}}}
  - id: second
    type: python
    config: {{function: "steps:{second}", input_mapping: {{text: "{{{{ loud.output.text }}}}"}}}}
edges:
  - {{from: start, to: loud}}
  - {{from: loud, to: second}}
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    (root / "steps.py").write_text(STEPS)
    for name, second in (("ok", "shout"), ("fails", "fail"), ("sleeps", "sleepy"), ("big", "big")):
        (root / f"{name}.flow.yaml").write_text(flow(name, second))
    return root


@pytest.fixture(scope="module")
def server(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    stores = tmp_path_factory.mktemp("stores")
    env = {"JUPYTER_FLOW_HISTORY": str(stores / "history.sqlite"), "JUPYTER_FLOW_CACHE": str(stores / "cache")}
    with JupyterLab(root, env=env) as lab:
        yield lab


@pytest.fixture
def api(server: JupyterLab) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/jupyter-flow/api/", headers={"Authorization": f"token {server.token}"},
                      timeout=60) as client:
        yield client


def start(api: httpx.Client, path: str, **body: Any) -> RunReply:
    reply = api.post("run", json={"path": path, **body})
    assert reply.status_code == 201, reply.text
    return RunReply.model_validate(reply.json())


def follow(api: httpx.Client, run: RunReply, *, until: float = 120.0) -> tuple[RunReply, list[Any]]:
    """Poll the run until it ends; its last reply and every event, in order."""
    events = list(run.events)
    after = run.next
    deadline = time.monotonic() + until
    while not run.done:
        assert time.monotonic() < deadline, f"the run did not end within {until} s: {events}"
        reply = api.get("runstate", params={"run": run.run, "after": after, "wait": 5})
        assert reply.status_code == 200, reply.text
        run = RunReply.model_validate(reply.json())
        events += run.events
        after = run.next
    return run, events


def node_events(events: list[Any], node: str) -> list[Any]:
    return [e for e in events if e.event == "node" and e.node == node]


def test_a_run_streams_its_node_states_and_outputs_in_its_own_process(api: httpx.Client, server: JupyterLab, root: Path) -> None:
    # opening and validating the file runs none of its code
    assert api.post("validate", json={"path": "ok.flow.yaml"}).json()["valid"] is True
    assert api.get("lastrun", params={"path": "ok.flow.yaml"}).json()["run"] is None
    assert not (root / "imported-by.txt").exists()
    run, events = follow(api, start(api, "ok.flow.yaml", inputs={"text": "hello"}))
    assert run.status == "ok", (run.message, run.log)
    assert [e.event for e in events][0] == "started" and events[-1].event == "finished"
    assert [e.status for e in node_events(events, "loud")] == ["running", "ok"]
    assert node_events(events, "second")[-1].output == {"text": "HELLO"}
    assert events[-1].nodes == {"loud": "ok", "second": "ok"} and events[-1].recorded
    # the flow's module was imported by the run's process, never by the server
    importers = {int(pid) for pid in (root / "imported-by.txt").read_text().split()}
    assert server.process is not None and server.process.pid not in importers

    # the file's last run, from the run history, when the file is opened again
    last = LastRunReply.model_validate(api.get("lastrun", params={"path": "ok.flow.yaml"}).json())
    assert last.run is not None and last.run.run_id == events[0].run_id and last.run.status == "ok"
    assert {n.node: (n.status, n.output) for n in last.run.nodes} == {"loud": ("ok", {"text": "HELLO"}), "second": ("ok", {"text": "HELLO"})}
    assert LastRunReply.model_validate(api.get("lastrun", params={"path": "big.flow.yaml"}).json()).run is None


def test_the_node_cache_marks_nodes_cached_on_the_next_run(api: httpx.Client) -> None:
    follow(api, start(api, "ok.flow.yaml", inputs={"text": "again"}, cache=True))
    _, events = follow(api, start(api, "ok.flow.yaml", inputs={"text": "again"}, cache=True))
    assert [e.cached for e in node_events(events, "loud") if e.status == "ok"] == [True]


def test_a_failing_node_names_its_error_and_the_run_fails(api: httpx.Client) -> None:
    run, events = follow(api, start(api, "fails.flow.yaml", inputs={"text": "x"}))
    assert run.status == "error" and "second" in (run.message or "")
    failed = node_events(events, "second")[-1]
    assert failed.status == "error" and "no good: X" in (failed.error or "")


def test_inputs_that_do_not_fit_are_refused_naming_the_input(api: httpx.Client) -> None:
    run, events = follow(api, start(api, "ok.flow.yaml", inputs={"times": "many"}))
    assert run.status == "refused"
    assert [p.field for p in events[-1].problems] == ["inputs.times"], events[-1]
    assert api.post("run", json={"path": "ok.flow.yaml", "inputs": {}, "timeout_s": -1}).status_code == 400
    assert api.post("run", json={"path": "nothere.flow.yaml"}).status_code == 404


def test_cancel_stops_the_run_and_its_running_node(api: httpx.Client) -> None:
    run = start(api, "sleeps.flow.yaml", inputs={"text": "zz"})
    # a view opened while the file runs is told which run to follow
    going = api.get("lastrun", params={"path": "sleeps.flow.yaml"}).json()
    assert going["active"] == run.run and "history" not in going
    assert api.get("lastrun", params={"path": "ok.flow.yaml"}).json()["active"] is None
    deadline = time.monotonic() + 60
    events = list(run.events)
    while not node_events(events, "second"):
        assert time.monotonic() < deadline
        state = RunReply.model_validate(api.get("runstate", params={"run": run.run, "after": len(events), "wait": 5}).json())
        events += state.events
    t0 = time.monotonic()
    assert api.post("cancel", json={"run": run.run}).status_code == 200
    ended, rest = follow(api, run.model_copy(update={"events": [], "next": len(events)}))
    assert time.monotonic() - t0 < 15
    assert ended.status == "cancelled"
    assert node_events(events + rest, "second")[-1].status == "cancelled"
    last = LastRunReply.model_validate(api.get("lastrun", params={"path": "sleeps.flow.yaml"}).json())
    assert last.run is not None and last.run.status == "cancelled" and last.active is None
    assert api.post("cancel", json={"run": "0123abcd"}).status_code == 404


def test_a_run_past_its_time_bound_is_stopped(api: httpx.Client) -> None:
    t0 = time.monotonic()
    run, events = follow(api, start(api, "sleeps.flow.yaml", inputs={"text": "zz"}, timeout_s=4))
    assert time.monotonic() - t0 < 30
    assert run.status == "timeout", run
    assert "longer than 4 s" in (run.message or "") + (events[-1].error or ""), (run, events[-1])


def test_a_large_output_is_cut_at_its_bound(api: httpx.Client) -> None:
    run, events = follow(api, start(api, "big.flow.yaml", inputs={"text": "ab"}))
    assert run.status == "ok", run.log
    done = node_events(events, "second")[-1]
    assert isinstance(done.output, str) and len(done.output) == MAX_OUTPUT_CHARS
    assert done.output_chars > MAX_OUTPUT_CHARS


def test_a_run_of_a_path_outside_the_root_is_refused(api: httpx.Client) -> None:
    assert api.post("run", json={"path": "../x.flow.yaml"}).status_code == 403


def test_a_refusal_names_the_file_below_the_root_never_where_the_root_is(api: httpx.Client, root: Path) -> None:
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "broken.flow.yaml").write_text("spec_version: 1\nnodes: [\n")
    (root / "sub" / "unknown.flow.yaml").write_text("spec_version: 1\nname: u\nnodes: [{id: a, type: nope}]\n")
    for name in ("broken", "unknown"):
        run, events = follow(api, start(api, f"sub/{name}.flow.yaml"))
        assert run.status == "refused", run
        said = run.model_dump_json() + "".join(e.model_dump_json() for e in events)
        assert f"sub/{name}.flow.yaml" in (run.message or ""), run.message
        assert str(root) not in said and str(root.resolve()) not in said, said


def test_a_run_nobody_follows_is_cancelled_and_gives_its_place_back(root: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_FLOW_HISTORY", str(tmp_path / "h.sqlite"))

    async def scenario() -> None:
        runs = ViewRuns(lease_s=3)
        flow_file = root / "sleeps.flow.yaml"
        followed = await runs.start(flow_file, "sleeps.flow.yaml", {"text": "zz"})
        left = [await runs.start(flow_file, "sleeps.flow.yaml", {"text": "zz"}) for _ in range(MAX_ACTIVE_RUNS - 1)]
        with pytest.raises(RunRefusedError):  # every place taken
            await runs.start(flow_file, "sleeps.flow.yaml", {"text": "zz"})
        t0 = time.monotonic()
        while not all(run.done for run in left):  # the followed run keeps its lease by its polls
            assert time.monotonic() - t0 < 60, [r.status for r in left]
            await followed.wait(len(followed.events), 1.0)
        assert not followed.done and time.monotonic() - t0 >= 3
        for run in left:
            assert run.status == "cancelled" and "nobody followed the run for 3 s" in (run.message or ""), run.reply()
        assert runs.active("sleeps.flow.yaml") is followed
        again = await runs.start(flow_file, "sleeps.flow.yaml", {"text": "zz"})  # a place is free again
        for run in (followed, again):
            await runs.cancel(run.id)
        while not (followed.done and again.done):
            assert time.monotonic() - t0 < 90
            await asyncio.sleep(0.2)
        assert runs.active("sleeps.flow.yaml") is None

    asyncio.run(scenario())


def run_processes(server: Any) -> list[Any]:
    """The server's run processes (a child that ends while it is looked at is passed over)."""
    import psutil

    found = []
    for child in server.children(recursive=True):
        try:
            if "jupyter_flow.filerun" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            pass
    return found


def test_a_run_ends_with_the_server_that_started_it(root: Path, tmp_path: Path) -> None:
    psutil = pytest.importorskip("psutil")
    with JupyterLab(root, env={"JUPYTER_FLOW_HISTORY": str(tmp_path / "h.sqlite")}) as lab:
        assert lab.process is not None
        server = psutil.Process(lab.process.pid)
        with httpx.Client(base_url=f"{lab.url}/jupyter-flow/api/", headers={"Authorization": f"token {lab.token}"},
                          timeout=120) as api:
            # one run well under way (its sleeping node running) ...
            going = start(api, "sleeps.flow.yaml", inputs={"text": "zz"})
            events, deadline = list(going.events), time.monotonic() + 120
            while not node_events(events, "second"):
                assert time.monotonic() < deadline, "the run did not reach its second node"
                events += RunReply.model_validate(api.get("runstate", params={"run": going.run, "after": len(events),
                                                                                "wait": 5}).json()).events
            # ... and one still starting (importing Python) when the server dies
            start(api, "sleeps.flow.yaml", inputs={"text": "zz"})
            runs = run_processes(server)
            server.kill()  # no goodbye, no atexit: each run notices by itself
        assert len(runs) == 2, runs
        gone, alive = psutil.wait_procs(runs, timeout=90)
        assert not alive, [(p.pid, p.cmdline()) for p in alive]


def test_a_run_keeps_its_own_time_bound(root: Path, tmp_path: Path) -> None:
    # the run's process stops itself past its time bound, with no server to stop it
    request = {"path": str(root / "sleeps.flow.yaml"), "inputs": {"text": "zz"}, "history": False}
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "jupyter_flow.filerun", "--parent", str(os.getpid()), "--timeout-s", "3"],
                          input=json.dumps(request), capture_output=True, text=True, cwd=root, timeout=60,
                          env={**os.environ, "JUPYTER_FLOW_HISTORY": str(tmp_path / "h.sqlite")})
    took = time.monotonic() - t0
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events and events[-1]["event"] == "finished", (done.stdout, done.stderr)
    assert events[-1]["status"] == "timeout" and "longer than 3 s" in events[-1]["error"], events[-1]
    assert events[-1]["nodes"]["second"] == "cancelled" and done.returncode == 1
    assert took < 30, took  # the sleeping node would take 60 s


def test_a_flow_file_too_large_to_read_is_refused_without_reading_it_whole(api: httpx.Client, root: Path) -> None:
    huge = root / "huge.flow.yaml"
    with huge.open("wb") as fh:  # sparse: no disk is used
        fh.truncate(MAX_FILE_BYTES + 1)
    try:
        reply = api.post("validate", json={"path": "huge.flow.yaml"})
        assert reply.status_code == 400 and "larger than" in reply.json()["message"], reply.text
        assert api.get("lastrun", params={"path": "huge.flow.yaml"}).json() == {"path": "huge.flow.yaml", "run": None, "active": None}
    finally:
        huge.unlink()


def test_the_last_run_of_a_file_is_found_behind_many_runs_of_others_of_its_name(tmp_path: Path) -> None:
    text = "spec_version: 1\nname: same\nnodes:\n  - {id: t, type: template, config: {template: '{{ n }}'}}\n" \
           "inputs: {n: {type: integer, default: 0}}\n"
    mine, other = tmp_path / "mine.flow.yaml", tmp_path / "other.flow.yaml"
    mine.write_text(text)
    other.write_text(text)
    history = RunHistory(tmp_path / "h.sqlite")
    wanted = Flow.load(mine).run({"n": 1}, history=history)
    for n in range(25):  # newer runs of another file of the same flow name
        Flow.load(other).run({"n": n}, history=history)
    found = last_run(mine, "same", tmp_path / "h.sqlite")
    assert found is not None and found.run_id == wanted.run_id
    assert [n.output for n in found.nodes] == [{"text": "1"}]
    assert last_run(tmp_path / "nothere.flow.yaml", "same", tmp_path / "h.sqlite") is None


def test_the_folder_of_a_flow_says_whether_it_is_small_enough_to_copy_into_each_job(api: httpx.Client, root: Path) -> None:
    folder = api.get("folder", params={"path": "ok.flow.yaml"}).json()
    assert folder["path"] == "" and folder["complete"] and folder["small"], folder
    assert folder["files"] >= 5 and folder["bytes"] > 0
    many = root / "many"
    (many / ".hidden").mkdir(parents=True)  # a copy takes hidden files too
    (many / "a.flow.yaml").write_text(flow("a", "shout"))
    for i in range(SMALL_FOLDER_FILES):
        (many / ".hidden" / f"{i}.txt").write_text("x")
    said = api.get("folder", params={"path": "many/a.flow.yaml"}).json()
    assert said["path"] == "many" and not said["small"] and not said["complete"] and said["files"] > SMALL_FOLDER_FILES
    large = root / "large"
    large.mkdir()
    (large / "a.flow.yaml").write_text(flow("a", "shout"))
    with (large / "data.bin").open("wb") as fh:  # sparse
        fh.truncate(SMALL_FOLDER_BYTES + 1)
    said = api.get("folder", params={"path": "large/a.flow.yaml"}).json()
    assert said["files"] == 2 and said["bytes"] > SMALL_FOLDER_BYTES and not said["small"], said
    assert api.get("folder", params={"path": "../a.flow.yaml"}).status_code == 403
