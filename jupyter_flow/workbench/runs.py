"""The workbench's runs: the one shown, the last ones kept, the one in progress, the inputs.

`RunState` is the part of the workbench's state that runs: it starts a flow as a task on
the running event loop (the kernel's), so the notebook stays free to handle clicks while
the flow runs, follows the run's live events (node statuses, the record shown), keeps the
last finished runs (`RunLog`: what "Run from here" reuses and what a tensor is compared
with) and the inputs typed for the next run, and hands values out to notebook variables.
Nothing here draws.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import __main__
from jupyter_flow.cache import NodeCache
from jupyter_flow.errors import FlowError, FlowValidationError, Problem, StoreError
from jupyter_flow.flow import Flow
from jupyter_flow.history import RunHistory
from jupyter_flow.spec import FlowSpec
from jupyter_flow.trace import NodeRecord, RunEvent, RunResult
from jupyter_flow.workbench.events import Observers
from jupyter_flow.workbench.inspector import activations

__all__ = ["HELD_VALUES", "KEEP_RUNS", "HeldValue", "NoValueError", "RunLog", "RunState", "held_value", "typed_inputs",
           "user_namespace"]

#: How many finished runs a workbench keeps (the last one included).
KEEP_RUNS = 5

HeldValue = Literal["outputs", "inputs", "activations"]
HELD_VALUES: tuple[HeldValue, ...] = ("outputs", "inputs", "activations")
_JSON_TYPES = ("json", "list", "object", "any")


class RunLog:
    """The finished runs of a workbench, newest first (cancelled runs are not kept).

    `last` is what "Run from here" reuses; `before(node)` is the run a node's values are
    compared with: the one before the last run in which the node ran again (a node reused
    from the cache keeps the run it was compared with before)."""

    def __init__(self, keep: int = KEEP_RUNS) -> None:
        self._runs: deque[RunResult] = deque(maxlen=keep)
        self._before: dict[str, RunResult] = {}

    @property
    def last(self) -> RunResult | None:
        return self._runs[0] if self._runs else None

    @property
    def previous(self) -> list[RunResult]:
        """The runs before the last one, newest first."""
        return list(self._runs)[1:]

    def add(self, result: RunResult) -> None:
        last = self.last
        if last is result:
            return
        if last is not None:
            for node_id, record in result.records.items():
                earlier = last.records.get(node_id)
                if not record.cached and earlier is not None and earlier.status == "ok":
                    self._before[node_id] = last
        self._runs.appendleft(result)

    def before(self, node_id: str) -> RunResult | None:
        return self._before.get(node_id)

    def clear(self) -> None:
        self._runs.clear()
        self._before.clear()

    def __iter__(self) -> Iterator[RunResult]:
        return iter(self._runs)

    def __len__(self) -> int:
        return len(self._runs)


class RunState:
    """The runs of a workbench. `result` is the run shown (live while it runs; a cancelled
    run stays shown but is not kept), `history` the finished ones, `statuses` and `cached`
    what each node shows, `inputs` the inputs of the next run as typed, `task` the run in
    progress or the last one. Changes are marked on the state's `observers`: ``run`` when a
    run starts or ends, ``record`` with the node for each live event, ``inputs``, and
    ``history`` when a finished run was added to `history`.

    With `cache` (a `NodeCache`) a node whose result is stored is not run (its record says
    `cached`); with `history` (a `RunHistory`) every finished run, failed or not, is kept
    in it (a history that cannot be written is said, and the run still shows)."""

    def __init__(self, observers: Observers) -> None:
        self._observers = observers
        self.result: RunResult | None = None
        self.history = RunLog()
        self.statuses: dict[str, str] = {}
        self.cached: set[str] = set()
        self.inputs: dict[str, Any] = {}
        self.variables: dict[str, str] = {}
        self.task: asyncio.Task[RunResult | None] | None = None
        self.cache: NodeCache | None = None
        self.history_store: RunHistory | None = None
        self._active = False

    @property
    def running(self) -> bool:
        return self._active

    def record(self, node_id: str) -> NodeRecord | None:
        """The shown run's record of a node (None before a run reaches it)."""
        return self.result.records.get(node_id) if self.result is not None else None

    def set_inputs(self, values: Mapping[str, Any]) -> None:
        changed = {k: v for k, v in values.items() if k not in self.inputs or not _same(self.inputs[k], v)}
        if changed:
            with self._observers.action("inputs"):
                self.inputs.update(changed)

    def clear(self) -> None:
        """Forget every run (another flow was opened)."""
        with self._observers.action("run"):
            self.result = None
            self.history.clear()
            self.statuses, self.cached = {}, set()

    def start(self, flow: Flow, inputs: Mapping[str, Any] | None = None, *, rerun: str | None = None) -> asyncio.Task[RunResult | None]:
        """Check and start a run of `flow` (see `WorkbenchState.run`)."""
        say = self._observers.say
        with self._observers.action():
            if self.running:
                say("A run is in progress: cancel it first.", error=True, place="run")
                raise FlowValidationError("a run is in progress")
            try:
                if not flow.spec.nodes:
                    raise FlowValidationError("the flow has no nodes yet: add one from the palette")
                flow.validate()
                values = dict(inputs) if inputs is not None else typed_inputs(flow.spec, self.inputs)
                flow.resolve_inputs(values)
                if rerun is not None and rerun not in flow.node_ids:
                    raise FlowValidationError([Problem("not in the flow", node=rerun, field="rerun")])
            except FlowValidationError as exc:
                say(f"Cannot run: {exc}", error=True, place="run", problems=exc.problems)
                raise
            if inputs is not None:
                self.set_inputs(values)
            reuse = self.history.last if rerun is not None else None
            self.statuses, self.cached = {nid: "pending" for nid in flow.node_ids}, set()
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = asyncio.get_event_loop()
            self._active = True
            self.task = task = loop.create_task(self._run(flow, values, reuse, rerun), name=f"workbench:{flow.name}")
            task.add_done_callback(self._task_done)
            self._observers.mark("run")
            say("Running" + (f" from {rerun} (upstream results reused)" if rerun else "") + "...", place="run")
        return task

    def cancel(self) -> bool:
        with self._observers.action():
            if not self.running or self.task is None:
                self._observers.say("No run in progress.", place="run")
                return False
            self.task.cancel()
        return True

    def _on_event(self, event: RunEvent) -> None:
        with self._observers.action("record"):
            self.result = event.result
            record = event.record
            if record is not None:
                self.statuses[record.node] = record.status
                if record.cached:
                    self.cached.add(record.node)
                self._observers.mark(nodes=(record.node,))

    async def _run(self, flow: Flow, inputs: dict[str, Any], reuse: RunResult | None, rerun: str | None) -> RunResult | None:
        try:
            result = await flow.arun(inputs, reuse=reuse, rerun=rerun, on_event=self._on_event, raise_on_error=False,
                                     cache=self.cache or False)
        except asyncio.CancelledError:
            self._finished(self.result, cancelled=True)
            raise
        except FlowError as exc:
            self._finished(None, failure=f"The run did not start: {exc}")
            return None
        except Exception as exc:  # shown in the workbench instead of lost in a task
            self._finished(None, failure=f"The run failed: {type(exc).__name__}: {exc}")
            return None
        unkept = ""
        if self.history_store is not None:
            try:
                await asyncio.to_thread(self.history_store.record, result, spec=flow.spec, flow_path=flow.source)
            except StoreError as exc:
                unkept = f" Not kept in the run history: {exc}"
        self._finished(result, unkept=unkept)
        return result

    def _task_done(self, _task: asyncio.Task[RunResult | None]) -> None:
        if self._active:  # cancelled before it started: `_run` never ran to say so
            self._finished(None, cancelled=True)

    def _finished(self, result: RunResult | None, *, cancelled: bool = False, failure: str = "", unkept: str = "") -> None:
        say = self._observers.say
        with self._observers.action("run"):
            self._active = False
            if result is None:  # nodes that never started are no longer waiting
                self.statuses = {k: v for k, v in self.statuses.items() if v != "pending"}
                say(failure or "Run cancelled.", error=True, place="run")
                return
            self.result = result
            if not cancelled:
                self.history.add(result)
            self.statuses = {nid: r.status for nid, r in result.records.items()}
            self.cached = {nid for nid, r in result.records.items() if r.cached}
            if not cancelled and self.history_store is not None and not unkept:
                self._observers.mark("history")
            ms = (result.duration_s or 0.0) * 1000
            cached = f" ({len(self.cached)} node(s) cached)" if self.cached else ""
            if cancelled or result.status == "cancelled":
                say("Run cancelled.", error=True, place="run")
            elif result.ok:
                say(f"Run ok in {ms:.0f} ms{cached}. Click a node to inspect it.{unkept}", place="run", error=bool(unkept))
            else:
                say(f"Run {result.status}: {result.error}{unkept}", error=True, place="run")

    def to_variable(self, node_id: str, name: str | None = None, what: str = "outputs") -> str:
        """Put a node's live outputs (or inputs, or captured activations) of the shown run
        into a notebook variable (by default `NODE_WHAT`); returns the variable's name."""
        say = self._observers.say
        with self._observers.action():
            if what not in HELD_VALUES:
                say(f"There is no {what!r} to hand out: choose one of {', '.join(HELD_VALUES)}.", error=True, place="inspect")
                raise FlowValidationError([Problem(f"{what!r} is not one of {', '.join(HELD_VALUES)}", node=node_id, field="what")])
            name = name or f"{node_id}_{what}"
            if not name.isidentifier():
                say(f"{name!r} is not a usable variable name.", error=True, place="inspect")
                raise FlowValidationError([Problem(f"{name!r} is not a Python identifier", field="variable name")])
            held = next(h for h in HELD_VALUES if h == what)
            try:
                value = held_value(self.result, node_id, held)
            except NoValueError as exc:
                say(exc.said, error=True, place="inspect", problems=exc.problems)
                raise
            user_namespace()[name] = value
            self.variables[name] = node_id
            say(f"{node_id} {what} are now in the variable `{name}`.", place="inspect")
        return name


def _same(a: Any, b: Any) -> bool:
    """Whether two input values are equal (a tensor or an array compares as itself only)."""
    if a is b:
        return True
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # an element-wise comparison has no single truth value
        return False


def typed_inputs(spec: FlowSpec, typed: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs to run with, from the values typed for the flow's declared inputs: an
    empty field is left out (so its default applies), JSON fields are parsed, and a field
    that does not parse is an error naming the input."""
    out: dict[str, Any] = {}
    for name, ispec in spec.inputs.items():
        if name not in typed:
            continue
        value = typed[name]
        if isinstance(value, str) and value == "" and (ispec.type not in ("string", "text") or ispec.default is not None):
            continue
        if ispec.type in _JSON_TYPES and isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                if ispec.type != "any":
                    raise FlowValidationError([Problem(f"not valid JSON: {exc.msg} (line {exc.lineno})", field=f"inputs.{name}")]) from None
        out[name] = value
    return out


class NoValueError(FlowValidationError):
    """A run holds no such value of a node; `said` is the sentence to show the user."""

    def __init__(self, said: str, problem: Problem) -> None:
        super().__init__([problem])
        self.said = said


_WHY = {"skipped": "was skipped in the last run (no active incoming edge)", "pending": "has not run yet",
        "running": "is still running", "error": "failed in the last run", "cancelled": "was cancelled in the last run"}


def held_value(result: RunResult | None, node_id: str, what: HeldValue) -> Any:
    """A node's live outputs, inputs or captured activations in `result`; NoValueError
    saying why when it has none (no run reached it, it was skipped, nothing captured)."""
    if result is None or node_id not in result.records:
        raise NoValueError(f"No run has reached {node_id} yet.", Problem("no result yet: run the flow first", node=node_id))
    record = result.records[node_id]
    failed_without = record.status in ("error", "cancelled") and what == "outputs" and not record.outputs
    if record.status in ("skipped", "pending", "running") or failed_without:
        why = _WHY[record.status]
        raise NoValueError(f"{node_id} {why}: it has no {what} to put in a variable.", Problem(f"{why}: no {what}", node=node_id))
    if what == "activations":
        value = activations(record, result)
        if not value:
            raise NoValueError(f"{node_id} captured no activations in the last run (list the layers under `capture:`).",
                               Problem("no captured activations", node=node_id, field="capture"))
        return value
    return record.outputs if what == "outputs" else record.inputs


def user_namespace() -> dict[str, Any]:
    """The notebook's namespace (IPython's user_ns), or __main__'s outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:  # IPython is optional: a plain script hands values to __main__
        shell = None
    else:
        shell = get_ipython()
    namespace: dict[str, Any] = shell.user_ns if shell is not None else __main__.__dict__
    return namespace
