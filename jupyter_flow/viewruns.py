"""Runs of flow files started from the JupyterLab file view, each in a process of its own.

The Jupyter server never runs a flow nor imports the Python a flow names: `ViewRuns.start`
starts ``python -m jupyter_flow.filerun`` (its own session, so that the whole group can be
stopped) in the flow file's folder, and reads the events it writes (`jupyter_flow.replies`'
`RunEvent`s, checked line by line). The file view polls them (`ViewRun.wait`).

Bounds, each named in the message of a run that passes it:

- time: a run is stopped after `timeout_s` (default `DEFAULT_TIMEOUT_S`, at most
  `MAX_TIMEOUT_S`), and ends `timeout`;
- output: one node's output is cut at `MAX_OUTPUT_CHARS` characters of JSON (the child
  does it), one event line may not pass `MAX_LINE_BYTES`, and a run that writes more than
  `MAX_EVENT_BYTES` in all is stopped;
- what it prints: the last `MAX_LOG_CHARS` characters are kept;
- runs: at most `MAX_ACTIVE_RUNS` at once (another is refused), and the newest
  `KEEP_RUNS` ended runs are kept for their views.

`Cancel` sends SIGTERM to the run's process group (the run ends `cancelled`, and is recorded
so), and SIGKILL when it has not ended `CANCEL_GRACE_S` seconds later.

A run is leased to its view: each poll renews the lease (a poll that is waiting holds it),
and a run nobody polled for `LEASE_S` seconds (its view closed, its browser gone) is
cancelled, so that abandoned runs do not keep the `MAX_ACTIVE_RUNS` slots. A view opened
again finds the run of its file still going on (`ViewRuns.active`) and follows it.

`last_run` reads the newest run of a flow file from the run history (`jupyter_flow.history`,
its default file) without creating that file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from jupyter_flow.errors import FlowError
from jupyter_flow.filerun import output_text
from jupyter_flow.history import RunHistory, default_history_path
from jupyter_flow.replies import LastRun, NodeState, RunEvent, RunFinished, RunRefused, RunReply, RunStarted, RunStatus

__all__ = [
    "CANCEL_GRACE_S",
    "DEFAULT_TIMEOUT_S",
    "KEEP_RUNS",
    "LEASE_S",
    "MAX_ACTIVE_RUNS",
    "MAX_EVENT_BYTES",
    "MAX_LINE_BYTES",
    "MAX_LOG_CHARS",
    "MAX_OUTPUT_CHARS",
    "MAX_TIMEOUT_S",
    "RunRefusedError",
    "ViewRun",
    "ViewRuns",
    "last_run",
]

DEFAULT_TIMEOUT_S = 600.0
MAX_TIMEOUT_S = 24 * 3600.0
MAX_OUTPUT_CHARS = 200_000
MAX_LINE_BYTES = 4 * 1024 * 1024
MAX_EVENT_BYTES = 32 * 1024 * 1024
MAX_LOG_CHARS = 20_000
MAX_ACTIVE_RUNS = 4
KEEP_RUNS = 50
CANCEL_GRACE_S = 5.0
#: seconds a run may go on with nobody polling for it before it is cancelled
LEASE_S = 60.0
#: the longest a poll waits for news
MAX_WAIT_S = 20.0
#: the most characters of node outputs one last-run answer carries (the rest say only their size)
_LAST_RUN_OUTPUT_CHARS = 4_000_000

_EVENT = TypeAdapter(RunEvent)


class RunRefusedError(FlowError):
    """A run cannot start (too many runs, no such run)."""


@dataclass
class ViewRun:
    """One run: its events so far, its status, and what it printed."""

    id: str
    path: str
    events: list[Any] = field(default_factory=list)
    status: RunStatus = "running"
    message: str | None = None
    log: str = ""
    ended_at: float | None = None
    cancelled: bool = False
    #: when a poll last held the run (time.monotonic), and how many polls wait on it now
    followed_at: float = field(default_factory=time.monotonic)
    _polls: int = 0
    _process: asyncio.subprocess.Process | None = None
    _news: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def done(self) -> bool:
        return self.ended_at is not None

    def reply(self, after: int = 0) -> RunReply:
        after = max(0, min(after, len(self.events)))
        return RunReply(run=self.id, path=self.path, status=self.status, done=self.done, events=self.events[after:],
                        next=len(self.events), message=self.message, log=self.log)

    async def wait(self, after: int, timeout_s: float) -> RunReply:
        """The events from the `after`-th on, once there is one (or the run ended, or
        `timeout_s` passed)."""
        deadline = time.monotonic() + min(max(timeout_s, 0.0), MAX_WAIT_S)
        self._polls += 1
        try:
            while not self.done and len(self.events) <= after:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._news.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._news.wait(), left)
        finally:
            self._polls -= 1
            self.followed_at = time.monotonic()
        return self.reply(after)

    def unfollowed(self, lease_s: float) -> bool:
        """No poll holds the run, nor did one for `lease_s` seconds."""
        return self._polls == 0 and time.monotonic() - self.followed_at > lease_s

    def _add(self, event: Any) -> None:
        self.events.append(event)
        if isinstance(event, RunFinished):
            self.status = event.status
            self.message = event.error
        elif isinstance(event, RunRefused):
            self.status = "refused"
            self.message = event.message
        self._news.set()

    def _say(self, text: str) -> None:
        self.log = (self.log + text)[-MAX_LOG_CHARS:]


class ViewRuns:
    """The file view's runs in one Jupyter server."""

    def __init__(self, *, python: str = sys.executable, lease_s: float = LEASE_S) -> None:
        self.python = python
        self.lease_s = lease_s
        self._runs: dict[str, ViewRun] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def get(self, run_id: str) -> ViewRun:
        try:
            return self._runs[run_id]
        except KeyError:
            raise RunRefusedError(f"no run '{run_id[:100]}' in this server (it ended long ago, or the server restarted)") from None

    def active(self, api_path: str) -> ViewRun | None:
        """The newest run of the file at `api_path` still going on, if any."""
        going = [r for r in self._runs.values() if r.path == api_path and not r.done]
        return going[-1] if going else None

    async def start(self, flow_file: Path, api_path: str, inputs: dict[str, Any], *, cache: bool = False,
                    history: bool = True, timeout_s: float | None = None) -> ViewRun:
        active = [r for r in self._runs.values() if not r.done]
        if len(active) >= MAX_ACTIVE_RUNS:
            raise RunRefusedError(f"{len(active)} runs are going on already (at most {MAX_ACTIVE_RUNS}): wait for one, or cancel one")
        run = ViewRun(id=secrets.token_hex(8), path=api_path)
        request = {"path": str(flow_file), "name": api_path, "inputs": inputs, "cache": cache, "history": history,
                   "max_output_chars": MAX_OUTPUT_CHARS}
        bound_s = min(timeout_s or DEFAULT_TIMEOUT_S, MAX_TIMEOUT_S)
        # the run keeps its bounds itself too: this server may be gone before it has started
        run._process = await asyncio.create_subprocess_exec(
            self.python, "-m", "jupyter_flow.filerun", "--parent", str(os.getpid()), "--timeout-s", f"{bound_s:g}",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            cwd=str(flow_file.parent), start_new_session=True, limit=MAX_LINE_BYTES,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._runs[run.id] = run
        self._forget_old()
        task = asyncio.ensure_future(self._watch(run, json.dumps(request).encode(), bound_s))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return run

    async def cancel(self, run_id: str) -> ViewRun:
        run = self.get(run_id)
        if not run.done:
            run.cancelled = True
            _signal(run, signal.SIGTERM)
            asyncio.get_running_loop().call_later(CANCEL_GRACE_S, _signal, run, signal.SIGKILL)
        return run

    def kill_all(self) -> None:
        """Kill every run going on, at once (the server stops: `atexit`)."""
        for run in self._runs.values():
            if not run.done:
                run.cancelled = True
                _signal(run, signal.SIGKILL)

    def _forget_old(self) -> None:
        ended = sorted((r for r in self._runs.values() if r.done), key=lambda r: r.ended_at or 0.0)
        for run in ended[: max(0, len(ended) - KEEP_RUNS)]:
            del self._runs[run.id]

    async def _watch(self, run: ViewRun, request: bytes, timeout_s: float) -> None:
        proc = run._process
        assert proc is not None and proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        why: str | None = None
        try:
            proc.stdin.write(request)
            await proc.stdin.drain()
            proc.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass
        readers = asyncio.gather(self._read_events(run), self._read_log(run, proc.stderr))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while why is None:
            left = deadline - loop.time()
            if left <= 0:
                why = f"the run took longer than {timeout_s:g} s and was stopped"
                break
            try:
                await asyncio.wait_for(asyncio.shield(readers), min(left, max(0.2, self.lease_s / 4)))
                break
            except asyncio.TimeoutError:
                if run.unfollowed(self.lease_s):
                    why = f"nobody followed the run for {self.lease_s:g} s (its view was closed), so it was cancelled"
            except _TooMuch as exc:
                why = str(exc)
        if why is not None:
            run.cancelled = True
            _signal(run, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), CANCEL_GRACE_S)
        except asyncio.TimeoutError:
            _signal(run, signal.SIGKILL)
            await proc.wait()
        # what the process wrote before it ended is read to its end (a killed group closes it)
        try:
            await asyncio.wait_for(asyncio.shield(readers), CANCEL_GRACE_S)
        except (asyncio.TimeoutError, _TooMuch):
            readers.cancel()
        with contextlib.suppress(asyncio.CancelledError, _TooMuch):
            await readers
        self._end(run, proc.returncode, why)

    async def _read_events(self, run: ViewRun) -> None:
        stream = run._process.stdout  # type: ignore[union-attr]
        assert stream is not None
        total = 0
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line past the stream's limit
                raise _TooMuch(f"the run wrote an event longer than {MAX_LINE_BYTES:,} bytes and was stopped") from None
            if not line:
                return
            total += len(line)
            if total > MAX_EVENT_BYTES:
                raise _TooMuch(f"the run wrote more than {MAX_EVENT_BYTES:,} bytes of node states and outputs and was stopped")
            try:
                event = _EVENT.validate_json(line)
            except ValidationError as exc:
                run._say(f"[jupyter-flow] not an event of the run ({exc.error_count()} errors): {line[:200]!r}\n")
                continue
            run._add(event)

    async def _read_log(self, run: ViewRun, stream: asyncio.StreamReader) -> None:
        while True:
            chunk = await stream.read(64 * 1024)
            if not chunk:
                return
            run._say(chunk.decode("utf-8", errors="replace"))

    def _end(self, run: ViewRun, code: int | None, why: str | None) -> None:
        finished = any(isinstance(e, (RunFinished, RunRefused)) for e in run.events)
        if finished:
            if why is not None:  # stopped by a bound: the run says it cancelled, the bound says why
                run.message = why
                run.status = _status_of(why)
        else:
            status: Literal["error", "cancelled", "timeout"] = "error"
            if why is not None and run.cancelled and _status_of(why) != "error":
                status = _status_of(why)
            elif run.cancelled and why is None:
                status, why = "cancelled", "cancelled"
            else:
                tail = run.log.strip().splitlines()[-3:]
                why = why or f"the run's process ended with exit code {code}" + (f": {' / '.join(tail)}" if tail else "")
            states = _last_states(run.events)
            ended = {n: ("cancelled" if s in ("running", "pending") else s) for n, s in states.items()}
            for node, state in ended.items():
                if state != states[node]:
                    run._add(NodeState(event="node", node=node, status="cancelled"))
            run_id = next((e.run_id for e in run.events if isinstance(e, RunStarted)), None)
            run._add(RunFinished(event="finished", run_id=run_id, status=status, error=why, nodes=ended))
        run.ended_at = time.time()
        run._news.set()


class _TooMuch(Exception):
    pass


def _status_of(why: str) -> Literal["error", "cancelled", "timeout"]:
    """How a run stopped by this server (for `why`) ends."""
    if why.startswith("the run took longer"):
        return "timeout"
    return "cancelled" if why.startswith("nobody followed the run") else "error"


def _signal(run: ViewRun, sig: int) -> None:
    proc = run._process
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _last_states(events: list[Any]) -> dict[str, str]:
    states: dict[str, str] = {}
    for event in events:
        if isinstance(event, RunStarted):
            states.update(dict.fromkeys(event.nodes, "pending"))
        elif isinstance(event, NodeState):
            states[event.node] = event.status
    return states


# -- the last run of a flow file, from the run history ---------------------------------------
def last_run(flow_file: Path, flow_name: str, history_path: Path | None = None) -> LastRun | None:
    """The newest run of `flow_file` (by its resolved path) as a flow named `flow_name` in
    the run history; None when there is none, or no history file."""
    path = history_path or default_history_path()
    if not path.is_file():
        return None
    history = RunHistory(path)
    for summary in history.runs(flow=flow_name, flow_path=flow_file, limit=1):
        run = history.get(summary["run_id"])
        trace = run.get("trace") or {}
        by_node = {r["node"]: r for r in trace.get("nodes", []) if isinstance(r, dict)}
        budget = _LAST_RUN_OUTPUT_CHARS
        nodes = []
        for item in run.get("nodes") or []:
            record = by_node.get(item["node"], {})
            output, chars = _output(record.get("outputs"), min(MAX_OUTPUT_CHARS, budget))
            budget -= min(chars, MAX_OUTPUT_CHARS)
            error = record.get("error")
            nodes.append(NodeState(event="node", node=item["node"], status=item["status"], cached=bool(item.get("cached")),
                                   duration_s=item.get("duration_s"), output=output, output_chars=chars,
                                   error=error.get("message") if isinstance(error, dict) else None))
        return LastRun(run_id=run["run_id"], status=run["status"], started_at=run.get("started_at"),
                             error=trace.get("error"), nodes=nodes)
    return None



def _output(value: Any, max_chars: int) -> tuple[Any, int]:
    return (None, 0) if value is None else output_text(value, max(0, max_chars))
