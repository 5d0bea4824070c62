"""One run of a plan as the engine drives it: `PlanRun` holds the run's records, what its
templates read, which nodes wait on how many others and the node tasks, and takes each
node through its steps (variant, inputs, reuse or cache, warm-up, attempts within its
deadline, `on_error`). `jupyter_flow.engine.execute` starts a run, waits for its end or
deadline and settles every task it started; the guarantees are written there.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from collections.abc import Set as AbstractSet
from typing import Any

from jupyter_flow import telemetry
from jupyter_flow.cache import NodeCache
from jupyter_flow.errors import NodeError, NodeTimeoutError, TemplateError
from jupyter_flow.expressions import Renderer
from jupyter_flow.nodes.base import Node, NodeContext
from jupyter_flow.outcome import SKIPPED, NodeOutcome
from jupyter_flow.plan import Plan, PlannedEdge, PlannedNode
from jupyter_flow.reuse import CacheKey, Reuse, StoredResults
from jupyter_flow.runtime import Runtime
from jupyter_flow.spec import RetrySpec
from jupyter_flow.trace import ErrorInfo, NodeRecord, RunEvent, RunResult
from jupyter_flow.workers import within

#: Work ending this long after its deadline held the event loop (the deadline could not fire).
LOOP_HELD_S = 0.05


def held_past(started: float, seconds: float, now: float) -> bool:
    """Whether work started at `started` (loop time) and ended at `now` ran past a deadline
    of `seconds` by more than a deadline's own lateness can explain."""
    return now - started > seconds + min(0.01, seconds / 100) + LOOP_HELD_S

__all__ = ["EventCallback", "HandOff", "PlanRun", "node_error", "settled_event"]

EventCallback = Callable[[RunEvent], "Awaitable[None] | None"]
_NO_RETRY = RetrySpec()


class PlanRun:
    """One run of a plan: its records, what its templates read (`context`), which nodes
    wait on how many others, the node tasks, and how the run ends."""

    def __init__(
        self,
        plan: Plan,
        result: RunResult,
        runtime: Runtime,
        on_event: EventCallback | None,
        reuse: Reuse | None,
        stored: StoredResults | None = None,
    ) -> None:
        self.plan = plan
        self.result = result
        self.runtime = runtime
        self.on_event = on_event
        self.reuse = reuse
        self.stored = stored
        self.records = result.records
        #: what templates read: the inputs by name (and as `inputs`), and a NodeOutcome per node done
        self.context: dict[str, Any] = {**result.inputs, "inputs": result.inputs}
        self.waiting = {nid: len(pn.incoming) for nid, pn in plan.nodes.items()}
        self.active: dict[str, bool] = {}
        self.remaining = len(plan.nodes)
        self.node_tasks: dict[str, asyncio.Task[Any]] = {}
        #: while a node task reports its node done (`finished`, never interrupted): that task,
        #: and the first node the report made ready, which the task runs next
        self.hand_off: HandOff | None = None
        #: callbacks and shadow runs still going (made on the first one: most runs have none)
        self.event_tasks: AbstractSet[asyncio.Future[Any]] = _NONE_YET
        self.shadow_tasks: AbstractSet[asyncio.Future[Any]] = _NONE_YET
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.failure: str | None = None
        limit = plan.spec.max_concurrency
        self.slots = asyncio.Semaphore(limit) if limit else None
        self.span = telemetry.start_run(plan.spec.name, result)  # None unless OTEL_* asks for traces

    # -- events ------------------------------------------------------------------
    async def emit(self, kind: str, record: NodeRecord | None = None) -> None:
        ret = self.tell(kind, record)
        if ret is not None:
            await settled_event(ret, kind)

    def tell(self, kind: str, record: NodeRecord | None = None) -> Awaitable[Any] | None:
        """Call the event callback now; what it returned to await, if anything."""
        if self.on_event is None:
            return None
        try:
            ret = self.on_event(RunEvent(kind, self.result, record))  # type: ignore[arg-type]
        except Exception:  # a broken UI callback must not break the run
            _log_event_failure(kind)
            return None
        return ret if inspect.isawaitable(ret) else None

    async def told_finished(self, record: NodeRecord, hand_off: HandOff) -> None:
        """The callback told that `record` is done; awaited here, unless the task has a next
        node to run: that node does not wait for the callback, once the callback has begun."""
        ret = self.tell("node_finished", record)
        if ret is None:
            return
        if hand_off.next_up is None:
            await settled_event(ret, "node_finished")
        else:
            self.event_tasks = _kept(self.event_tasks, asyncio.ensure_future(settled_event(ret, "node_finished")))
            await asyncio.sleep(0)

    # -- scheduling --------------------------------------------------------------
    def start(self) -> None:
        for nid in self.plan.order:
            pn = self.plan.nodes[nid]
            if pn.incoming:
                continue
            try:
                active = not pn.start_edges or any(self.edge_passes(edge) for edge in pn.start_edges)
            except TemplateError as exc:
                self.fail_node_now(nid, exc)
                continue
            self.ready(nid, active)
        if self.remaining == 0 and not self.done.done():
            self.done.set_result(None)

    def ready(self, nid: str, active: bool) -> None:
        if self.failure is not None:
            return
        if not active:
            self.skip(nid)
            return
        hand_off = self.hand_off
        if hand_off is not None and hand_off.next_up is None:
            hand_off.next_up = nid  # the node task that made it ready runs it next
            self.node_tasks[nid] = hand_off.task
            return
        task = asyncio.get_running_loop().create_task(self.node_task(nid), name=f"jupyter-flow:{nid}")
        self.node_tasks[nid] = task

    def skip(self, nid: str) -> None:
        record = self.records[nid]
        record.status = "skipped"
        self.context[nid] = SKIPPED
        if self.on_event is not None:
            self.event_tasks = _kept(self.event_tasks, asyncio.ensure_future(self.emit("node_finished", record)))
        self.finished(self.plan.nodes[nid], record)

    def edge_passes(self, edge: PlannedEdge) -> bool:
        if edge.spec.branch is not None:
            source = self.context.get(edge.spec.source)
            chosen = (source.output if source is not None else None) or {}
            if chosen.get("branch") != edge.spec.branch:
                return False
        return edge.condition is None or edge.condition(self.context)

    def finished(self, pn: PlannedNode, record: NodeRecord) -> None:
        """Node `pn` is done: its edges are followed, and the nodes waiting only on it made ready."""
        self.remaining -= 1
        status = record.status
        taken = "success" if status == "ok" else "error" if status == "error" else None  # which edges it takes
        for edge in pn.outgoing:
            target = edge.spec.target
            if edge.spec.on == taken:
                try:
                    if edge.always or self.edge_passes(edge):
                        self.active[target] = True
                except TemplateError as exc:
                    self.fail_node_now(target, exc)
                    return
            self.waiting[target] -= 1
            if self.waiting[target] == 0:
                self.ready(target, self.active.get(target, False))
        if self.remaining == 0 and not self.done.done():
            self.done.set_result(None)

    def fail_run(self, message: str) -> None:
        if self.failure is None:
            self.failure = message
        if not self.done.done():
            self.done.set_result(None)

    def fail_node_now(self, nid: str, exc: Exception) -> None:
        record = self.records[nid]
        record.status = "error"
        record.error = ErrorInfo.from_exception(exc)
        self.fail_run(str(exc))

    # -- one node ----------------------------------------------------------------
    async def node_task(self, nid: str) -> None:
        """Run node `nid`, then the first node its end made ready, and so on: a chain runs in
        one task, without a task and a turn of the event loop per node. Nodes made ready
        besides the first get tasks of their own and start at once."""
        turn = time.monotonic()  # as the loop's clock, without a method call per node
        task = asyncio.current_task()
        assert task is not None
        hand_off = HandOff(task)
        next_up: str | None = nid
        while next_up is not None:
            hand_off.next_up = None
            work = self.execute(self.plan.nodes[next_up], hand_off)
            next_up = await (work if self.span is None else telemetry.trace_node(self.span, self.records[next_up], work))
            if next_up is not None and time.monotonic() - turn > _TURN_S:
                # nodes that never wait would hold the loop: the flow's deadline, a cancel and
                # the other branches get their turn between them (the next node counts as
                # started, as a task of its own would: a failure meanwhile cancels it here)
                await asyncio.sleep(0)
                turn = time.monotonic()

    async def execute(self, pn: PlannedNode, hand_off: HandOff) -> str | None:
        """The steps of one node: start its record, get its outputs, settle a failure as
        `on_error` says, report it done. Returns the node this task (`hand_off.task`)
        runs next, if any."""
        record = self.records[pn.id]
        record.status = "running"
        record.started_at = time.time()
        t0 = time.perf_counter()
        if self.on_event is not None:
            await self.emit("node_started", record)
        running = None
        try:
            running = self.begin(pn, record, t0)
            if running is not None:
                record.outputs = await running
        except asyncio.CancelledError:
            record.status = "cancelled"
            record.duration_s = time.perf_counter() - t0
            raise
        except Exception as exc:
            failure = exc if running is None else node_error(pn.id, exc)  # its inputs', or its own
            if self.failed(pn, record, failure):
                await self.end_run_with(pn, record, failure, t0)
                return None
        else:
            record.status = "ok"
            self.context[pn.id] = NodeOutcome(record.outputs, "ok")
        record.duration_s = time.perf_counter() - t0
        self.hand_off = hand_off
        try:
            self.finished(pn, record)
        finally:
            self.hand_off = None
        if self.on_event is not None:
            await self.told_finished(record, hand_off)
        return hand_off.next_up

    def begin(self, pn: PlannedNode, record: NodeRecord, t0: float) -> Awaitable[Any] | None:
        """The node's variant chosen and its inputs rendered; then its outputs taken from the
        run being reused (None), or what gives them once awaited: in the common case the
        node's own coroutine (one attempt, nothing around it), else its attempts with
        warm-up, retries and deadline, or beside its shadow variants."""
        if pn.variants:
            record.variant, node, renderer = self.choose_variant(pn)
        else:
            node, renderer = pn.node, pn.renderer
        inputs = record.inputs = renderer(self.context)
        if self.reuse is not None and self.reused(pn, node, inputs, record):
            return None
        if self.stored is not None and pn.spec.cache:
            return self.through_cache(self.stored, pn, node, inputs, record, t0)
        return self.running(pn, node, inputs, record, t0)

    def running(self, pn: PlannedNode, node: Node, inputs: dict[str, Any], record: NodeRecord, t0: float) -> Awaitable[Any]:
        """What gives the node's outputs by running it (see `begin`)."""
        if record.variant is not None and pn.spec.shadow and len(pn.variants) > 1:
            return self.run_with_shadow(pn, node, inputs, record, t0)
        if pn.runs_as_is and self.slots is None and not node.needs_warm_up:
            return self.attempt(pn, node, inputs, record, 1)
        return self.run_node(pn, node, inputs, record)

    async def through_cache(
        self, stored: StoredResults, pn: PlannedNode, node: Node, inputs: dict[str, Any], record: NodeRecord, t0: float
    ) -> Any:
        """The node's outputs from the node cache, else from running it (then stored). A
        node `rerun` names (or one downstream of it) runs, and its new result is stored."""
        read = self.reuse is None or pn.id not in self.reuse.again
        key, outputs = await stored.lookup(pn, node, record.variant, inputs, record, read=read)
        if key is not None:
            record.extra["cache_key"] = key
        if outputs is not NodeCache.MISS:
            record.cached = True
            record.attempts = 0
            record.cache_key = CacheKey(pn, node, inputs)  # a later run in the session may reuse it
            return outputs
        outputs = await self.running(pn, node, inputs, record, t0)
        if key is not None:
            await stored.store(pn, key, outputs, record)
        return outputs

    def choose_variant(self, pn: PlannedNode) -> tuple[str | None, Node, Renderer]:
        if not pn.variants:
            return None, pn.node, pn.renderer
        variants = pn.spec.variants
        weights = [v.weight for v in variants]
        if pn.variant_key is not None:
            key = str(pn.variant_key(self.context))
            point = int.from_bytes(hashlib.blake2b(f"{pn.id}:{key}".encode(), digest_size=8).digest(), "big") / 2**64
        else:
            point = random.random()
        point *= sum(weights)
        for v in variants:
            point -= v.weight
            if point < 0:
                break
        node, renderer = pn.variants[v.id]
        return v.id, node, renderer

    def reused(self, pn: PlannedNode, node: Node, inputs: Any, record: NodeRecord) -> bool:
        """Whether the earlier run being reused had this node's outputs for these inputs
        (then they are in `record`)."""
        previous = self.reuse.previous(pn, node, inputs) if self.reuse is not None else None
        if previous is None:
            return False
        record.outputs = previous.outputs
        record.cached = True
        record.attempts = 0
        record.extra.update(previous.extra)
        return True

    async def run_with_shadow(self, pn: PlannedNode, node: Node, inputs: dict[str, Any], record: NodeRecord, t0: float) -> Any:
        """The chosen variant's outputs, the others run beside it; the shadow never holds up
        the primary: its results join the record later."""
        chosen = record.variant
        assert chosen is not None
        shadow_task = asyncio.ensure_future(self.shadow(pn, chosen))
        try:
            outputs = await self.run_node(pn, node, inputs, record)
        except BaseException:
            shadow_task.cancel()
            await asyncio.gather(shadow_task, return_exceptions=True)
            raise
        primary = {"outputs": outputs, "duration_s": time.perf_counter() - t0, "error": None}
        self.shadow_tasks = _kept(self.shadow_tasks, asyncio.ensure_future(_join_shadow(record, shadow_task, chosen, primary)))
        return outputs

    async def shadow(self, pn: PlannedNode, chosen: str) -> dict[str, Any]:
        async def one(vid: str) -> tuple[str, dict[str, Any]]:
            node, renderer = pn.variants[vid]
            rec = NodeRecord(pn.id, pn.spec.type, variant=vid)
            t0 = time.perf_counter()
            try:
                out = await self.run_node(pn, node, renderer(self.context), rec)
                return vid, {"outputs": out, "duration_s": time.perf_counter() - t0, "error": None}
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                return vid, {"outputs": None, "duration_s": time.perf_counter() - t0, "error": str(exc)}

        pairs = await asyncio.gather(*(one(v) for v in pn.variants if v != chosen))
        return dict(pairs)

    async def run_node(self, pn: PlannedNode, node: Node, inputs: dict[str, Any], record: NodeRecord) -> Any:
        """The node warmed up if it must be, then its attempts, as its retry policy allows."""
        if node.needs_warm_up:
            await self.warm_up(pn, node)
        policy = pn.spec.retry or node.default_retry or _NO_RETRY
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self.attempt(pn, node, inputs, record, attempt)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                err = node_error(pn.id, exc)
                if not err.retryable or attempt >= policy.max_attempts:
                    raise err  # noqa: B904 (node_error sets its cause)
                record.extra.setdefault("attempt_errors", []).append(str(err))
            await asyncio.sleep(policy.delay(attempt))

    def attempt(self, pn: PlannedNode, node: Node, inputs: dict[str, Any], record: NodeRecord, attempt: int) -> Awaitable[Any]:
        """Attempt number `attempt` of the node: `node.run` itself, or, when there is a limit
        of nodes at once or a deadline for the engine to keep, `node.run` within them."""
        record.attempts = attempt
        ctx = NodeContext(pn.id, record, self.result, self.runtime, attempt, self.span is not None)
        timeout = None if node.keeps_own_deadline else pn.spec.timeout_s
        if self.slots is None and not timeout:
            return node.run(inputs, ctx)
        return self.limited(pn, node, inputs, ctx, timeout)

    async def limited(self, pn: PlannedNode, node: Node, inputs: dict[str, Any], ctx: NodeContext, timeout: float | None) -> Any:
        loop = asyncio.get_running_loop()
        slots = self.slots
        try:
            if slots is not None:  # as `async with slots:`, with nothing to enter when there is no limit
                await slots.acquire()
            try:
                started = loop.time()
                value = await within(node.run(inputs, ctx), timeout)
            finally:
                if slots is not None:
                    slots.release()
        except asyncio.TimeoutError:
            if timeout is None:  # the node's own (a kind that keeps its own deadline says more)
                raise
            raise NodeTimeoutError(f"attempt {ctx.attempt} ran past timeout_s={timeout:g}", node=pn.id) from None
        if timeout is not None and held_past(started, timeout, loop.time()):
            raise NodeTimeoutError(
                f"attempt {ctx.attempt} ended {loop.time() - started:.2f} s after it started, past timeout_s={timeout:g}: "
                "the event loop was held, so its deadline could not fire (a python function with `blocking: false`, "
                "or blocking work in async code, here or in another run on the loop): let such work run in a worker "
                "thread", node=pn.id, retryable=False)
        return value

    async def warm_up(self, pn: PlannedNode, node: Node) -> None:
        try:
            await self.runtime_warm(node)
        except asyncio.CancelledError:
            raise
        except NodeError as exc:
            exc.retryable = False
            raise NodeError.from_exception(pn.id, exc) from exc.__cause__
        except Exception as exc:
            raise NodeError(f"warm-up failed: {type(exc).__name__}: {exc}", node=pn.id, retryable=False) from exc

    async def runtime_warm(self, node: Node) -> None:
        await self.runtime.run_blocking(node.ensure_warm)

    def failed(self, pn: PlannedNode, record: NodeRecord, exc: Exception) -> bool:
        """The failure recorded as the node's `on_error` says; whether it ends the run
        (`on_error: fail` and no error edge to take)."""
        record.error = ErrorInfo.from_exception(exc)
        spec = pn.spec
        if spec.on_error == "default":
            record.status = "ok"
            record.defaulted = True
            record.outputs = spec.default
            self.context[pn.id] = NodeOutcome(spec.default, "ok", _error_view(record))
            return False
        record.status = "error"
        self.context[pn.id] = NodeOutcome(None, "error", _error_view(record))
        return spec.on_error == "fail" and not pn.has_error_edges

    async def end_run_with(self, pn: PlannedNode, record: NodeRecord, exc: Exception, t0: float) -> None:
        """The node's failure ends the run: its record is told, and the run fails with its message."""
        record.duration_s = time.perf_counter() - t0
        if self.on_event is not None:
            await self.emit("node_finished", record)
        named = isinstance(exc, NodeError) or (isinstance(exc, TemplateError) and exc.node == pn.id)
        self.fail_run(str(exc) if named else f"node '{pn.id}': {exc}")


#: no tasks yet (shared, never added to: `_kept` makes a set for the first one)
_NONE_YET: frozenset[Any] = frozenset()


def _kept(tasks: AbstractSet[asyncio.Future[Any]], task: asyncio.Future[Any]) -> set[asyncio.Future[Any]]:
    """`tasks` with `task` added: a set of its own for the first, then the same set."""
    kept = set() if tasks is _NONE_YET else tasks
    assert isinstance(kept, set)
    kept.add(task)
    return kept

#: how long a node task runs nodes one after another before it gives the loop a turn
_TURN_S = 0.005


async def settled_event(ret: Awaitable[Any], kind: str) -> None:
    try:
        await ret
    except asyncio.CancelledError:
        raise
    except Exception:
        _log_event_failure(kind)


def _log_event_failure(kind: str) -> None:
    logging.getLogger("jupyter_flow.engine").exception("event callback failed on %s", kind)


def node_error(nid: str, exc: Exception) -> NodeError:
    """`exc` as the NodeError of node `nid`: itself when it is one already, else a
    NodeError caused by it, keeping where it was raised."""
    err = NodeError.from_exception(nid, exc)
    if err is not exc:
        err.__cause__ = exc
        err.__suppress_context__ = True
        err.__traceback__ = exc.__traceback__
    return err


class HandOff:
    __slots__ = ("task", "next_up")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.next_up: str | None = None


def _error_view(record: NodeRecord) -> dict[str, str] | None:
    return {"type": record.error.type, "message": record.error.message} if record.error else None


async def _join_shadow(record: NodeRecord, task: asyncio.Future[dict[str, Any]], variant: str, primary: dict[str, Any]) -> None:
    shadows = await task
    shadows[variant] = primary
    record.shadow = shadows
