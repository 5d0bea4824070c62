"""The async runner: scheduling, retries, timeouts, branches, variants, cancellation.

A node starts as soon as every upstream node is done (ok, skipped or failed-and-handled)
and at least one incoming edge is active. Each running node is one asyncio task; blocking
work goes to threads through the node context. A failed node with `on_error: fail` and no
error edge ends the run: what is still running is cancelled. The flow's `timeout_s` is a
deadline that does the same. Cancelling the caller's task cancels every node task, marks
them cancelled and re-raises; no task the engine starts is left behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any

from jupyter_flow import telemetry
from jupyter_flow.errors import NodeError, NodeTimeoutError, TemplateError
from jupyter_flow.http import loop_shared_client
from jupyter_flow.nodes.base import Node, NodeContext
from jupyter_flow.plan import Plan, PlannedEdge, PlannedNode
from jupyter_flow.spec import RetrySpec
from jupyter_flow.trace import ErrorInfo, NodeRecord, RunEvent, RunResult, fingerprint
from jupyter_flow.workers import DEFAULT_MAX_THREADS, run_in_worker, within, worker_pool

if TYPE_CHECKING:
    import httpx

__all__ = ["EventCallback", "Runtime", "execute"]

EventCallback = Callable[[RunEvent], "Awaitable[None] | None"]
_NO_RETRY = RetrySpec()


class Runtime:
    """Per-run shared things: the HTTP client, registered functions, the worker threads
    (`max_threads` of them, the engine's own pool), settings."""

    def __init__(
        self,
        functions: Mapping[str, Callable[..., Any]],
        settings: Mapping[str, Any],
        http_client: httpx.AsyncClient | None,
        max_threads: int = DEFAULT_MAX_THREADS,
    ) -> None:
        self.functions = functions
        self.settings = settings
        self.client = http_client
        self.pool = worker_pool(max_threads)
        try:  # the loop whose shared client a node gets, even asking from a worker thread
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # made outside a loop: the loop running when a node asks
            self.loop = None

    def http_client(self) -> httpx.AsyncClient:
        """The client given to the run, else the event loop's shared one, taken when a node
        first calls out: a run that calls nothing over HTTP makes no client (and imports no
        HTTP transport)."""
        client = self.client
        if client is None:
            client = self.client = loop_shared_client(self.loop or asyncio.get_running_loop())
        return client

    async def run_blocking(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return await run_in_worker(self.pool, fn, *args, **kwargs)


class _Run:
    def __init__(
        self,
        plan: Plan,
        result: RunResult,
        runtime: Runtime,
        on_event: EventCallback | None,
        reuse: RunResult | None,
        force: set[str] | None,
    ) -> None:
        self.plan = plan
        self.result = result
        self.runtime = runtime
        self.on_event = on_event
        self.reuse = reuse
        self.force = force
        self.records = result.records
        self.context: dict[str, Any] = {**result.inputs, "inputs": result.inputs}
        self.waiting = {nid: len(pn.incoming) for nid, pn in plan.nodes.items()}
        self.active: dict[str, bool] = {}
        self.remaining = len(plan.nodes)
        self.node_tasks: dict[str, asyncio.Task[Any]] = {}
        #: while a node task reports its node done (`finished`, never interrupted): that task,
        #: and the first node the report made ready, which the task runs next
        self.hand_off: _HandOff | None = None
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
            await _settled_event(ret, kind)

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

    # -- scheduling --------------------------------------------------------------
    def start(self) -> None:
        for nid in self.plan.order:
            pn = self.plan.nodes[nid]
            if pn.incoming:
                continue
            try:
                active = not pn.start_edges
                for edge in pn.start_edges:
                    if self.edge_passes(edge):
                        active = True
                        break
            except TemplateError as exc:
                self.fail_node_now(nid, exc)
                continue
            self.ready(nid, active)
        if self.remaining == 0 and not self.done.done():
            self.done.set_result(None)

    def ready(self, nid: str, active: bool) -> None:
        if self.failure is not None:
            return
        if active:
            hand_off = self.hand_off
            if hand_off is not None and hand_off.next_up is None:
                hand_off.next_up = nid  # the node task that made it ready runs it next
                self.node_tasks[nid] = hand_off.task
                return
            task = asyncio.get_running_loop().create_task(self.node_task(nid), name=f"jupyter-flow:{nid}")
            self.node_tasks[nid] = task
        else:
            record = self.records[nid]
            record.status = "skipped"
            self.context[nid] = {"output": None, "status": "skipped", "error": None}
            if self.on_event is not None:
                self.event_tasks = _kept(self.event_tasks, asyncio.ensure_future(self.emit("node_finished", record)))
            self.finished(self.plan.nodes[nid], record)

    def edge_passes(self, edge: PlannedEdge) -> bool:
        if edge.spec.branch is not None:
            chosen = (self.context.get(edge.spec.source) or {}).get("output") or {}
            if chosen.get("branch") != edge.spec.branch:
                return False
        return edge.condition is None or edge.condition(self.context)

    def finished(self, pn: PlannedNode, record: NodeRecord) -> None:
        self.remaining -= 1
        status = record.status
        handled_error = status == "error"
        for edge in pn.outgoing:
            target = edge.spec.target
            if status == "ok":
                on = edge.spec.on == "success"
            elif handled_error:
                on = edge.spec.on == "error"
            else:
                on = False
            if on:
                try:
                    on = self.edge_passes(edge)
                except TemplateError as exc:
                    self.fail_node_now(target, exc)
                    return
            if on:
                self.active[target] = True
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
    def choose_variant(self, pn: PlannedNode) -> tuple[str | None, Node, Any]:
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

    async def attempt(self, pn: PlannedNode, node: Node, inputs: dict[str, Any], record: NodeRecord, attempt: int) -> Any:
        ctx = NodeContext(pn.id, record, self.result, self.runtime, attempt, self.span is not None)
        timeout = None if node.keeps_own_deadline else pn.spec.timeout_s
        try:
            if self.slots is not None:
                async with self.slots:
                    return await within(node.run(inputs, ctx), timeout)
            return await within(node.run(inputs, ctx), timeout)
        except asyncio.TimeoutError:
            if timeout is None:  # the node's own (a kind that keeps its own deadline says more)
                raise
            raise NodeTimeoutError(f"attempt {attempt} ran past timeout_s={timeout:g}", node=pn.id) from None

    async def run_node(self, pn: PlannedNode, node: Node, inputs: dict[str, Any], record: NodeRecord) -> Any:
        if node.needs_warm_up:
            try:
                await self.runtime_warm(node)
            except asyncio.CancelledError:
                raise
            except NodeError as exc:
                exc.retryable = False
                raise NodeError.from_exception(pn.id, exc) from exc.__cause__
            except Exception as exc:
                raise NodeError(f"warm-up failed: {type(exc).__name__}: {exc}", node=pn.id, retryable=False) from exc
        policy = pn.spec.retry or node.default_retry or _NO_RETRY
        attempt = 0
        while True:
            attempt += 1
            record.attempts = attempt
            try:
                if self.slots is None and (not pn.spec.timeout_s or node.keeps_own_deadline):  # one frame and timer less
                    return await node.run(inputs, NodeContext(pn.id, record, self.result, self.runtime, attempt, self.span is not None))
                return await self.attempt(pn, node, inputs, record, attempt)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                err = _node_error(pn.id, exc)
                if not err.retryable or attempt >= policy.max_attempts:
                    raise err from exc if err is not exc else None
                record.extra.setdefault("attempt_errors", []).append(str(err))
                await asyncio.sleep(policy.delay(attempt))

    def one_attempt(self, pn: PlannedNode, node: Node) -> bool:
        """Whether the node runs once as it is: no warm-up, no retries, no limit on nodes at
        once and no deadline for the engine to keep (then `execute` awaits `node.run` itself,
        without `run_node`'s frame)."""
        return not (node.needs_warm_up or self.slots is not None or pn.spec.retry or node.default_retry
                    or (pn.spec.timeout_s and not node.keeps_own_deadline))

    async def runtime_warm(self, node: Node) -> None:
        await self.runtime.run_blocking(node.ensure_warm)

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

    async def node_task(self, nid: str) -> None:
        """Run node `nid`, then the first node its end made ready, and so on: a chain runs in
        one task, without a task and a turn of the event loop per node. Nodes made ready
        besides the first get tasks of their own and start at once."""
        loop = asyncio.get_running_loop()
        turn = loop.time()
        task = asyncio.current_task()
        assert task is not None
        hand_off = _HandOff(task)
        next_up: str | None = nid
        while next_up is not None:
            hand_off.next_up = None
            next_up = await telemetry.trace_node(self.span, self.records[next_up], self.execute(self.plan.nodes[next_up], hand_off))
            if next_up is not None and loop.time() - turn > _TURN_S:
                # nodes that never wait would hold the loop: the flow's deadline, a cancel and
                # the other branches get their turn between them (the next node counts as
                # started, as a task of its own would: a failure meanwhile cancels it here)
                await asyncio.sleep(0)
                turn = loop.time()

    async def execute(self, pn: PlannedNode, hand_off: _HandOff) -> str | None:
        """Run one node and report it done; the node this task (`hand_off.task`) runs next,
        if any."""
        record = self.records[pn.id]
        record.status = "running"
        record.started_at = time.time()
        t0 = time.perf_counter()
        if self.on_event is not None:
            await self.emit("node_started", record)
        try:
            if pn.variants:
                variant, node, renderer = self.choose_variant(pn)
                record.variant = variant
            else:
                variant, node, renderer = None, pn.node, pn.renderer
            inputs = renderer(self.context)
            record.inputs = inputs
            cached = self.cached(pn, node, inputs) if self.reuse is not None else None
            if cached is not None:
                record.outputs = cached.outputs
                record.cached = True
                record.attempts = 0
                record.extra.update(cached.extra)
            else:
                shadow_task = None
                if pn.spec.shadow and variant is not None and len(pn.variants) > 1:
                    shadow_task = asyncio.ensure_future(self.shadow(pn, variant))
                try:
                    if shadow_task is None and self.one_attempt(pn, node):
                        record.attempts = 1
                        try:
                            record.outputs = await node.run(inputs, NodeContext(pn.id, record, self.result, self.runtime, 1,
                                                                                self.span is not None))
                        except asyncio.CancelledError:
                            raise
                        except Exception as exc:
                            err = _node_error(pn.id, exc)
                            raise err from exc if err is not exc else None
                    else:
                        record.outputs = await self.run_node(pn, node, inputs, record)
                except BaseException:
                    if shadow_task is not None:
                        shadow_task.cancel()
                        await asyncio.gather(shadow_task, return_exceptions=True)
                    raise
                if shadow_task is not None and variant is not None:
                    # the shadow never holds up the primary: its results join the record later
                    primary = {"outputs": record.outputs, "duration_s": time.perf_counter() - t0, "error": None}
                    self.shadow_tasks = _kept(self.shadow_tasks, asyncio.ensure_future(_join_shadow(record, shadow_task, variant, primary)))
            record.status = "ok"
            self.context[pn.id] = {"output": record.outputs, "status": "ok", "error": None}
        except asyncio.CancelledError:
            record.status = "cancelled"
            record.duration_s = time.perf_counter() - t0
            raise
        except Exception as exc:
            record.error = ErrorInfo.from_exception(exc)
            if pn.spec.on_error == "default":
                record.status = "ok"
                record.defaulted = True
                record.outputs = pn.spec.default
                self.context[pn.id] = {"output": pn.spec.default, "status": "ok", "error": _error_view(record)}
            else:
                record.status = "error"
                self.context[pn.id] = {"output": None, "status": "error", "error": _error_view(record)}
                if pn.spec.on_error == "fail" and not pn.has_error_edges:
                    record.duration_s = time.perf_counter() - t0
                    if self.on_event is not None:
                        await self.emit("node_finished", record)
                    named = isinstance(exc, NodeError) or getattr(exc, "node", None) == pn.id
                    self.fail_run(str(exc) if named else f"node '{pn.id}': {exc}")
                    return None
        record.duration_s = time.perf_counter() - t0
        self.hand_off = hand_off
        try:
            self.finished(pn, record)
        finally:
            self.hand_off = None
        if self.on_event is not None:
            ret = self.tell("node_finished", record)
            if ret is not None:
                if hand_off.next_up is None:
                    await _settled_event(ret, "node_finished")
                else:  # the next node does not wait for the callback, once the callback has begun
                    self.event_tasks = _kept(self.event_tasks, asyncio.ensure_future(_settled_event(ret, "node_finished")))
                    await asyncio.sleep(0)
        return hand_off.next_up

    def cached(self, pn: PlannedNode, node: Node, inputs: Any) -> NodeRecord | None:
        if self.reuse is None or (self.force and pn.id in self.force):
            return None
        previous = self.reuse.records.get(pn.id)
        if previous is None or previous.status != "ok" or previous.defaulted or previous.cache_key is None:
            return None
        return previous if previous.cache_key == _CacheKey(pn, node, inputs) else None


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


async def _settled_event(ret: Awaitable[Any], kind: str) -> None:
    try:
        await ret
    except asyncio.CancelledError:
        raise
    except Exception:
        _log_event_failure(kind)


def _log_event_failure(kind: str) -> None:
    import logging

    logging.getLogger(__name__).exception("event callback failed on %s", kind)


def _node_error(nid: str, exc: Exception) -> NodeError:
    """`exc` as the NodeError of node `nid` (itself when it is one already), keeping where
    it was raised."""
    err = NodeError.from_exception(nid, exc)
    if err is not exc:
        err.__cause__ = exc
        err.__traceback__ = exc.__traceback__
    return err


class _HandOff:
    __slots__ = ("task", "next_up")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.next_up: str | None = None


class _CacheKey:
    """What a node's result depends on: its spec, its code (`cache_token`, taken now, so a
    later edit is seen) and its resolved inputs (digested only if a later run asks)."""

    __slots__ = ("_head", "_inputs", "_digest")

    def __init__(self, pn: PlannedNode, node: Node, inputs: Any) -> None:
        self._head = f"{pn.fingerprint}:{node.cache_token()}"
        self._inputs = inputs
        self._digest: str | None = None

    @property
    def digest(self) -> str:
        if self._digest is None:
            self._digest = fingerprint(self._inputs)
            self._inputs = None
        return self._digest

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _CacheKey) and self._head == other._head and self.digest == other.digest

    def __hash__(self) -> int:
        return hash((self._head, self.digest))


def _error_view(record: NodeRecord) -> dict[str, str] | None:
    return {"type": record.error.type, "message": record.error.message} if record.error else None


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
) -> RunResult:
    """Run a compiled plan once. Returns the RunResult, failed or not; raises only
    CancelledError (after cancelling every node task). Shadow variants never hold up a
    node or its downstream; the run waits for them at its end unless `wait_for_shadows`
    is false, and then they finish in `result.background` (awaitable tasks)."""
    records = {nid: NodeRecord(nid, pn.spec.type) for nid, pn in plan.nodes.items()}
    result = RunResult(run_id or os.urandom(6).hex(), plan.spec.name, inputs, records, started_at=time.time())
    force: set[str] | None = None
    for nid in rerun or ():
        force = (force or set()) | {nid} | plan.downstream.get(nid, set())
    run = _Run(plan, result, runtime, on_event, reuse, force)
    t0 = time.perf_counter()
    if on_event is not None:
        await run.emit("run_started")
    try:
        run.start()
        timeout = plan.spec.timeout_s
        if timeout:
            try:
                await asyncio.wait_for(asyncio.shield(run.done), timeout)
            except asyncio.TimeoutError:
                running = sorted(r.node for r in records.values() if r.status == "running")
                result.status = "timeout"
                run.failure = (
                    f"flow '{plan.spec.name}' ran past its timeout_s={timeout:g}"
                    + (f"; cancelled: {', '.join(running)}" if running else "")
                )
        else:
            await run.done
    except asyncio.CancelledError:
        await _settle(run, cancel_shadows=True)
        result.status = "cancelled"
        result.error = "cancelled by the caller"
        result.duration_s = time.perf_counter() - t0
        telemetry.end_run(run.span, result)
        if on_event is not None:
            await run.emit("run_finished")
        raise
    await _settle(run, wait_shadows=wait_for_shadows)
    for nid, record in records.items():
        if record.status == "ok" and not record.defaulted and not record.cached:
            pn = plan.nodes[nid]
            record.cache_key = _CacheKey(pn, pn.variants[record.variant][0] if record.variant else pn.node, record.inputs)
        elif record.cached and reuse is not None:
            record.cache_key = reuse.records[nid].cache_key
    if result.status == "running":
        result.status = "error" if run.failure else "ok"
    result.error = run.failure
    if plan.outputs:
        result.flow_outputs = _flow_outputs(plan, run.context)
    result.duration_s = time.perf_counter() - t0
    telemetry.end_run(run.span, result)
    if on_event is not None:
        await run.emit("run_finished")
    return result


def _flow_outputs(plan: Plan, context: dict[str, Any]) -> dict[str, Any]:
    """The declared outputs; one that reads a node which did not run (a branch not taken,
    a failed run) is None."""
    seen = {**{nid: {"output": None, "status": "skipped", "error": None} for nid in plan.nodes}, **context}
    values: dict[str, Any] = {}
    for name, renderer in plan.outputs.items():
        try:
            values[name] = renderer(seen)
        except TemplateError:
            values[name] = None
    return values


async def _join_shadow(record: NodeRecord, task: asyncio.Future[dict[str, Any]], variant: str, primary: dict[str, Any]) -> None:
    shadows = await task
    shadows[variant] = primary
    record.shadow = shadows


async def _settle(run: _Run, *, cancel_shadows: bool = False, wait_shadows: bool = True) -> None:
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
