"""One run of a flow file for the JupyterLab file view, in a process of its own.

The server extension never runs a flow (nor imports the Python a flow names): for "Run" it
starts ``python -m jupyter_flow.filerun --parent PID --timeout-s T`` (see
`jupyter_flow.viewruns`), writes one JSON request on its stdin and reads its stdout, one
JSON object a line:

    {"event": "started", "run_id", "flow", "nodes": [id, ...]}
    {"event": "node", "node", "status": "running"}
    {"event": "node", "node", "status", "cached", "duration_s", "error", "output", "output_chars"}
    {"event": "finished", "run_id", "status", "error", "nodes": {id: status}, "recorded"}
    {"event": "refused", "message", "problems": [{node, edge, field, message}]}

The request: ``{"path", "name", "inputs": {...}, "cache": bool, "history": bool,
"max_output_chars"}``; `name` is the file's path below the server's root, which refusals
name instead of the absolute `path` (the browser is not told where the server's files are).
A node's output is written as its trace writes it (tensors summarized, long texts cut:
`jupyter_flow.values.SUMMARY`); past `max_output_chars` characters of JSON only its
beginning is sent (`output` is then that text and `output_chars` the whole length).
`refused` answers a flow or inputs that are not valid (exit 2); a run that fails ends
with `finished` and exit 1. What the flow's own code prints goes to stderr, so that it can
never be read as an event. SIGTERM cancels the run: its nodes end `cancelled` and the
run is recorded as cancelled. With `history`, the run (failed or cancelled too) goes to
the run history (`jupyter_flow.history`, its default file), so the file view can show it
when the flow is opened again.

The run keeps its own bounds, so that none depends on the server being there to keep it:
it ends when process PID (the server, named on the command line because it may be gone
before this process has read it) is no longer its parent, checked at once and every half
second, and on Linux the kernel also sends it SIGTERM when its parent ends
(``PR_SET_PDEATHSIG``); past T seconds it stops and ends ``timeout``. Whatever way it is
told to stop, it ends by itself `_GRACE_S` seconds later if its work does not let go.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from jupyter_flow.errors import FlowError, FlowValidationError, Problem
from jupyter_flow.values import SUMMARY, dumps, encode

__all__ = ["DEFAULT_MAX_OUTPUT_CHARS", "main", "output_text"]

#: The most characters of one node's output (as JSON) a run sends the file view.
DEFAULT_MAX_OUTPUT_CHARS = 200_000

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
#: seconds a run told to stop (its parent gone, past its time) has to end before it is ended
_GRACE_S = 5.0
#: prctl's option that asks the kernel for a signal when the parent ends (linux/prctl.h)
_PR_SET_PDEATHSIG = 1


def output_text(value: Any, max_chars: int) -> tuple[Any, int]:
    """A node's output as the file view shows it: the summarized JSON value, or the
    beginning of its JSON text when that is longer than `max_chars`; and its length."""
    data = encode(value, SUMMARY).data
    text = dumps(data)
    if len(text) <= max_chars:
        return data, len(text)
    return text[:max_chars], len(text)


def _problem(p: Problem, shown: _Shown) -> dict[str, Any]:
    return {"node": p.node, "edge": p.edge, "field": p.field, "message": shown(p.message)}


class _Shown:
    """A message as the browser may see it: the server's root folder (the absolute `path`
    less its `name` below the root) left out of the paths in it."""

    def __init__(self, path: str, name: str | None) -> None:
        self.roots: list[str] = []
        if name and Path(path).as_posix().endswith("/" + name.lstrip("/")):
            root = path[: len(path) - len(name.lstrip("/"))]
            found = {root, os.path.realpath(root).rstrip(os.sep) + os.sep} - {os.sep}  # a root of "/" says nothing
            self.roots = sorted(found, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for root in self.roots:
            text = text.replace(root, "")
        return text


class _Events:
    """The event stream: one JSON line each, flushed at once."""

    def __init__(self, stream: IO[str], max_output_chars: int) -> None:
        self.stream = stream
        self.max_output_chars = max_output_chars
        self.told: dict[str, str] = {}  # the last status sent of each node

    def send(self, **event: Any) -> None:
        self.stream.write(dumps(event) + "\n")
        self.stream.flush()

    def node(self, record: Any) -> None:
        self.told[record.node] = record.status
        if record.status == "running":
            self.send(event="node", node=record.node, status="running")
            return
        output, chars = (None, 0) if record.outputs is None else output_text(record.outputs, self.max_output_chars)
        self.send(event="node", node=record.node, status=record.status, cached=bool(record.cached),
                  duration_s=record.duration_s, error=record.error.message if record.error else None,
                  output=output, output_chars=chars)


async def _run(request: Mapping[str, Any], events: _Events, timeout_s: float | None = None) -> int:
    from jupyter_flow.flow import Flow
    from jupyter_flow.history import RunHistory

    path = Path(str(request["path"]))
    flow = Flow.load(path).validate()
    inputs = request.get("inputs") or {}
    if not isinstance(inputs, Mapping):
        raise FlowValidationError([Problem("the inputs must be an object of name: value", field="inputs")])
    flow.resolve_inputs(inputs)  # checked before anything runs: a mistake is `refused`
    history = RunHistory() if request.get("history") else None
    results: list[Any] = []

    def on_event(event: Any) -> None:
        results[:] = [event.result]
        if event.kind == "run_started":
            events.send(event="started", run_id=event.result.run_id, flow=flow.name, nodes=flow.node_ids)
        elif event.record is not None:
            events.node(event.record)

    task = asyncio.ensure_future(flow.arun(inputs, on_event=on_event, raise_on_error=False,
                                           cache=bool(request.get("cache")), history=history or False))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    late: list[str] = []
    if timeout_s is not None:
        def stop() -> None:
            late.append(f"the run took longer than {timeout_s:g} s and was stopped")
            task.cancel()

        loop.call_at(loop.time() + timeout_s, stop)
    recorded = history is not None
    try:
        result = await task
    except asyncio.CancelledError:
        if not results:
            raise
        result = results[0]
        if history is not None:  # arun records only runs that end by themselves
            try:
                await asyncio.to_thread(history.record, result, spec=flow.spec, flow_path=flow.source)
            except FlowError as exc:
                print(f"the cancelled run was not recorded: {exc}", file=sys.stderr)
                recorded = False
    for record in result.records.values():  # a cancelled node's end has no event of its own
        if record.node in events.told and events.told[record.node] != record.status:
            events.node(record)
    status, error = ("timeout", late[0]) if late and result.status == "cancelled" else (result.status, result.error)
    events.send(event="finished", run_id=result.run_id, status=status, error=error,
                nodes={nid: r.status for nid, r in result.records.items()}, recorded=recorded)
    return EXIT_OK if result.status == "ok" else EXIT_FAILED


def _signal_when_parent_ends() -> None:
    """Ask the kernel (Linux) for SIGTERM when this process's parent ends; elsewhere, or
    where prctl is not to be had, the watch in `_keep_bounds` alone does it."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _keep_bounds(parent: int | None, timeout_s: float | None, interval_s: float = 0.5) -> None:
    """End this process when the server that started it (process `parent`: it may be gone
    before this line runs, and its pid is then no longer this one's parent) is gone, or
    `_GRACE_S` seconds past its time bound: a run nobody reads, whose bounds nobody keeps,
    must not go on. A parent gone is first told as SIGTERM (the run is cancelled and
    recorded so); what does not end within `_GRACE_S` seconds is ended."""
    if parent is not None:
        _signal_when_parent_ends()
    hard = None if timeout_s is None else time.monotonic() + timeout_s + _GRACE_S

    def watch() -> None:
        while (parent is None or os.getppid() == parent) and (hard is None or time.monotonic() < hard):
            time.sleep(interval_s)
        if hard is None or time.monotonic() < hard:  # the parent is gone: cancel, then end
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(_GRACE_S)
        os._exit(EXIT_FAILED)

    threading.Thread(target=watch, name="jupyter-flow:bounds", daemon=True).start()


def _options(argv: list[str]) -> tuple[int | None, float | None]:
    """``--parent PID`` and ``--timeout-s T`` from the command line (the server writes them;
    anything else there is not ours and is passed over)."""
    given = dict(zip(argv[::2], argv[1::2]))
    parent = given.get("--parent", "")
    try:
        timeout_s: float | None = float(given["--timeout-s"])
    except (KeyError, ValueError):
        timeout_s = None
    if timeout_s is not None and not timeout_s > 0:
        timeout_s = None
    return (int(parent) if parent.isdigit() else None), timeout_s


def main() -> int:
    parent, timeout_s = _options(sys.argv[1:])
    _keep_bounds(parent, timeout_s)
    # the event stream keeps its own copy of stdout; whatever the flow prints goes to stderr
    stream = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", errors="backslashreplace")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    try:
        request = json.loads(sys.stdin.read())
        if not isinstance(request, dict) or not isinstance(request.get("path"), str):
            raise ValueError("the request must be a JSON object with a 'path'")
    except ValueError as exc:
        _Events(stream, 0).send(event="refused", message=f"not a run request: {exc}", problems=[])
        return EXIT_INVALID
    events = _Events(stream, int(request.get("max_output_chars") or DEFAULT_MAX_OUTPUT_CHARS))
    shown = _Shown(request["path"], request.get("name") if isinstance(request.get("name"), str) else None)
    loop = asyncio.new_event_loop()
    try:
        # no asyncio.run: it would wait for the threads of node work given up on (a node
        # past its timeout, a cancelled run) before the process may end
        return loop.run_until_complete(_run(request, events, timeout_s))
    except FlowValidationError as exc:
        events.send(event="refused", message=shown(str(exc)), problems=[_problem(p, shown) for p in exc.problems])
        return EXIT_INVALID
    except FlowError as exc:
        events.send(event="refused", message=shown(str(exc)), problems=[])
        return EXIT_INVALID
    except asyncio.CancelledError:
        events.send(event="finished", run_id=None, status="cancelled", error="cancelled before it started",
                    nodes={}, recorded=False)
        return EXIT_FAILED
    finally:
        stream.close()


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)  # the run has ended and is recorded: threads still busy with its work end with it
