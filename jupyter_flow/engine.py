"""The async runner: scheduling, retries, timeouts, branches, variants, cancellation.

A node starts as soon as every upstream node is done (ok, skipped or failed-and-handled)
and at least one incoming edge is active. Each running node is one asyncio task; blocking
work goes to threads through the node context. A failed node with `on_error: fail` and no
error edge ends the run: what is still running is cancelled. The flow's `timeout_s` is a
deadline that does the same. Cancelling the caller's task cancels every node task, marks
them cancelled and re-raises; no task the engine starts is left behind.

With a node cache (`stored`), a node whose spec allows it (`cache: true`, the default)
first looks up its persistent key (kind, resolved inputs, code): a stored result stands for
its run (the record says `cached`, `extra["cache_key"]` names the key); otherwise it runs and,
once ok, its outputs are stored. Failures, defaults and skipped nodes are never stored.
"""
from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable
from typing import Any

from jupyter_flow.cache import NodeCache
from jupyter_flow.errors import TemplateError
from jupyter_flow.outcome import SKIPPED
from jupyter_flow.plan import Plan
from jupyter_flow.plan_run import EventCallback, PlanRun, held_past
from jupyter_flow.reuse import Reuse, StoredResults, keep_cache_keys
from jupyter_flow.runtime import Runtime
from jupyter_flow.telemetry import end_run
from jupyter_flow.trace import NodeRecord, RunResult

__all__ = ["EventCallback", "execute"]


async def execute(
    plan: Plan,
    inputs: dict[str, Any],
    *,
    runtime: Runtime,
    on_event: EventCallback | None = None,
    reuse: RunResult | None = None,
    rerun: set[str] | None = None,
    run_id: str | None = None,
    wait_for_shadows: bool = True,
    cache: NodeCache | None = None,
) -> RunResult:
    """Run a compiled plan once (with `cache`, through that node cache). Returns the
    RunResult, failed or not; raises only CancelledError (after cancelling every node
    task). Shadow variants never hold up a node or its downstream; the run waits for them
    at its end unless `wait_for_shadows` is false, and then they finish in
    `result.background` (awaitable tasks)."""
    records = {nid: NodeRecord(nid, pn.spec.type) for nid, pn in plan.nodes.items()}
    result = RunResult(run_id or os.urandom(6).hex(), plan.spec.name, inputs, records, started_at=time.time())
    run = PlanRun(plan, result, runtime, on_event, Reuse(plan, reuse, rerun) if reuse is not None else None,
               StoredResults(cache) if cache is not None else None)
    t0 = time.perf_counter()
    if on_event is not None:
        await run.emit("run_started")
    try:
        run.start()
        if plan.spec.timeout_s:
            await _until_done(run, plan.spec.timeout_s)
        else:
            await run.done
    except asyncio.CancelledError:
        await _settle(run, cancel_shadows=True)
        result.status = "cancelled"
        result.error = "cancelled by the caller"
        if (told := _close(run, t0)) is not None:
            await told
        raise
    await _settle(run, wait_shadows=wait_for_shadows)
    keep_cache_keys(plan, records, run.reuse)
    if result.status == "running":
        result.status = "error" if run.failure else "ok"
    result.error = run.failure
    if plan.outputs:
        result.flow_outputs = _flow_outputs(plan, run.context)
    if (told := _close(run, t0)) is not None:
        await told
    return result


async def _until_done(run: PlanRun, timeout: float) -> None:
    """Wait for the run's end, or for its flow's deadline (`timeout_s`, here `timeout`):
    then the run has timed out."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await asyncio.wait_for(asyncio.shield(run.done), timeout)
    except asyncio.TimeoutError:
        running = sorted(r.node for r in run.records.values() if r.status == "running")
        run.result.status = "timeout"
        run.failure = (
            f"flow '{run.plan.spec.name}' ran past its timeout_s={timeout:g}"
            + (f"; cancelled: {', '.join(running)}" if running else "")
        )
        return
    if held_past(started, timeout, loop.time()):  # the deadline could not fire: something held the loop
        run.result.status = "timeout"
        run.failure = (
            f"flow '{run.plan.spec.name}' ran past its timeout_s={timeout:g} ({loop.time() - started:.2f} s): the "
            "event loop was held (a python function with `blocking: false`), so its deadline could not fire"
        )


def _close(run: PlanRun, t0: float) -> Awaitable[None] | None:
    """The run's duration and its span ended; then the callback told, when there is one
    (what to await for it)."""
    run.result.duration_s = time.perf_counter() - t0
    end_run(run.span, run.result)
    return run.emit("run_finished") if run.on_event is not None else None


def _flow_outputs(plan: Plan, context: dict[str, Any]) -> dict[str, Any]:
    """The declared outputs; one that reads a node which did not run (a branch not taken,
    a failed run) is None."""
    seen = {**dict.fromkeys(plan.nodes, SKIPPED), **context}
    values: dict[str, Any] = {}
    for name, renderer in plan.outputs.items():
        try:
            values[name] = renderer(seen)
        except TemplateError:
            values[name] = None
    return values


async def _settle(run: PlanRun, *, cancel_shadows: bool = False, wait_shadows: bool = True) -> None:
    """Cancel the nodes still running; wait for every task (events included) to end.
    Shadow runs are cancelled when the run was cancelled or failed; otherwise they are
    waited for, or (`wait_shadows=False`) handed to the caller in `result.background`."""
    for nid, task in run.node_tasks.items():
        if not task.done() and run.records[nid].status in ("pending", "running"):
            task.cancel()
    if cancel_shadows or run.failure is not None:
        for shadow in run.shadow_tasks:
            shadow.cancel()
        wait_shadows = True
    if not wait_shadows:
        run.result.background = {t for t in run.shadow_tasks if not t.done()}
    shadows = run.shadow_tasks if wait_shadows else ()
    pending = [t for t in (*run.node_tasks.values(), *run.event_tasks, *shadows) if not t.done()]
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    for record in run.records.values():
        if record.status == "running":
            record.status = "cancelled"
        elif record.status == "pending":
            record.status = "skipped"
