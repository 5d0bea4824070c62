"""The parts of a served flow that run in Ray Serve (see `jupyter_flow.serve.ray_deploy`).

- `ModelReplica`: one replica of a model node's deployment. It builds the flow, loads the
  node's model (through the node's own loading code and the model cache, so an edit of
  the model's files is loaded again as in one process) and runs what arrives: with the
  node's ``batch`` option through ``@serve.batch`` (at most ``max_size`` items per forward
  pass, ``max_wait_ms`` for a partial one), else each request's items on their own, at
  most `DIRECT_AT_ONCE` requests' forward passes at a time. A forward pass that runs out
  of GPU memory is halved and tried again, as in one process
  (`jupyter_flow.batching.split_calls`); a request whose item still runs out of memory on
  its own fails, the other requests of its batch are answered.
- `FlowIngress`: the flow's ingress, a Starlette app behind ``@serve.ingress``: the very
  app of ``jupyter-flow serve`` (`flow_app` / `model_app`), whose model nodes send their
  items to their deployments (`RemoteModel`). Its answers carry ``x-served-by`` (the
  ingress replica); each node's trace record and ``jupyter_flow_replica_runs_total`` say
  which model replica ran it. It follows the driver's status of the flow file's edits.
- `RemoteModel`: a model node's forward through its deployment. When a replica dies with
  the items (killed, out of memory), Ray Serve hands them to another replica itself; when
  it reports the loss instead (the deployment unavailable, its replicas gone), the items
  are sent again, up to `SEND_ATTEMPTS` times in all (a forward pass has no effect beyond
  its answer; the trace's ``resent`` and ``jupyter_flow_replica_resends_total`` count
  it), after which the node fails with `ReplicasUnavailableError` and the answer is a 503.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import serve
from ray.exceptions import RayActorError
from ray.serve import exceptions as serve_errors

from jupyter_flow.batching import Batched, BatchInfo, Call, split_calls
from jupyter_flow.errors import NodeError
from jupyter_flow.nodes.base import NodeContext
from jupyter_flow.nodes.local_model import LocalModelNode, record_batches, run_direct, split_on_errors
from jupyter_flow.raylocal import flow_from_payload
from jupyter_flow.serve.app import flow_app, model_app
from jupyter_flow.serve.ray_deploy import MODEL_DEPLOYMENT, ModelDeployment, ReplicasUnavailableError
from jupyter_flow.serve.state import ReloadStatus

__all__ = ["DIRECT_AT_ONCE", "SEND_ATTEMPTS", "FlowIngress", "ModelReplica", "RemoteModel", "Reply", "StatusBoard"]

#: tries of one request's items before the node fails with a 503 (replicas lost meanwhile)
SEND_ATTEMPTS = 6
#: requests without ``batch`` whose forward passes one replica runs at once; the others
#: wait their turn (a replica takes up to MODEL_MAX_ONGOING requests)
DIRECT_AT_ONCE = 4
_LOST = (RayActorError, serve_errors.ReplicaUnavailableError, serve_errors.DeploymentUnavailableError,
         serve_errors.BackPressureError)


def _replica_tag() -> str:
    try:
        return str(serve.get_replica_context().replica_tag)
    except Exception:  # outside a replica (a test calling the class itself)
        return "local"


# -- values that cross processes --------------------------------------------------------
@dataclass(frozen=True)
class _PortableError:
    """An exception a model's batch function left in an item's result (``_error``), in a
    form that survives pickling whatever its constructor takes."""

    cls: type[BaseException]
    args: tuple[Any, ...]
    state: dict[str, Any]

    def restore(self) -> BaseException:
        exc = self.cls.__new__(self.cls)
        exc.args = self.args
        exc.__dict__.update(self.state)
        return exc


def _portable(value: Any) -> Any:
    if isinstance(value, dict) and isinstance(value.get("_error"), BaseException):
        exc = value["_error"]
        return {**value, "_error": _PortableError(type(exc), exc.args, dict(vars(exc)))}
    return value


def _restored(value: Any) -> Any:
    if isinstance(value, dict) and isinstance(value.get("_error"), _PortableError):
        return {**value, "_error": value["_error"].restore()}
    return value


@dataclass(frozen=True)
class Reply:
    """A replica's answer to one request: a result per item, or the error that stopped it."""

    results: list[Batched[Any]]
    replica: str
    device: str = ""
    dtype: str = ""
    error: tuple[str, str] | None = None  # (type, message)


# -- the model node's replicas ----------------------------------------------------------
def _items_in(requests: Sequence[tuple[list[Any], float]]) -> int:
    """The items of queued requests (what `max_batch_size` counts)."""
    return sum(len(items) for items, _ in requests)


class ModelReplica:
    """One replica of a model node: its model loaded, requests run as above."""

    def __init__(self, payload: Mapping[str, Any], node_id: str, index: int) -> None:
        node = flow_from_payload(payload).plan.nodes[node_id].node_objects()[index]
        assert isinstance(node, LocalModelNode)
        self.node = node
        self.replica = _replica_tag()
        node.ensure_warm()  # the model loads now, before the replica takes requests
        self._fn: tuple[Any, Callable[[list[Any]], list[Any]]] | None = None
        self._ids = itertools.count()
        self._slots = asyncio.Semaphore(DIRECT_AT_ONCE)
        batch = node.batching()
        self.batching = batch is not None
        if batch is not None:  # the node's own batch options, on Serve's batcher of this method
            batched: Any = self._batched
            batched.set_max_batch_size(batch.max_size)
            batched.set_batch_wait_timeout_s(batch.max_wait_ms / 1000)

    async def forward(self, items: list[Any], sent_at: float) -> Reply:
        """Run `items` (a request's, at most `max_size` of them when batching)."""
        try:
            if self.batching:
                reply: Reply = await self._batched((items, sent_at))
                return reply
            async with self._slots:
                return await asyncio.to_thread(self._direct, items, sent_at)
        except Exception as exc:  # sent back as a value: any exception crosses, whatever its constructor
            return Reply([], self.replica, error=(type(exc).__name__, str(exc)))

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005, batch_size_fn=_items_in)
    async def _batched(self, requests: list[tuple[list[Any], float]]) -> list[Reply]:
        flat = [item for items, _ in requests for item in items]
        started = time.time()
        calls, device, dtype = await asyncio.to_thread(self._calls, flat)
        outcomes: list[Batched[Any] | BaseException] = []
        for call in calls:
            if call.values is None:
                outcomes += [call.error or RuntimeError("the forward pass failed")] * call.size
                continue
            batch_id = next(self._ids)
            outcomes += [Batched(_portable(v), BatchInfo(call.size, 0.0, call.run_s, batch_id, 0, call.splits))
                         for v in call.values]
        replies, at = [], 0
        for items, sent_at in requests:  # a request with an item that failed fails; the others are answered
            mine = outcomes[at : at + len(items)]
            at += len(items)
            failed = next((o for o in mine if isinstance(o, BaseException)), None)
            if failed is not None:
                replies.append(Reply([], self.replica, device, dtype, error=(type(failed).__name__, str(failed))))
                continue
            waited = max(started - sent_at, 0.0)
            replies.append(Reply([Batched(b.value, BatchInfo(b.info.size, waited, b.info.run_s, b.info.batch_id, 0,
                                                             b.info.splits))
                                  for b in mine if isinstance(b, Batched)], self.replica, device, dtype))
        return replies

    def _calls(self, items: list[Any]) -> tuple[list[Call], str, str]:
        """`items` through the model, halved on out-of-memory: each call's outcome, the
        device, the dtype. Blocking."""
        fn, device, dtype = self._model()
        return list(split_calls(fn, items, split_on_errors())), device, dtype

    def _direct(self, items: list[Any], sent_at: float) -> Reply:
        fn, device, dtype = self._model()
        results = run_direct(fn, items, split_on_errors(), sent_at=sent_at, ids=self._ids)
        return Reply([Batched(_portable(b.value), b.info) for b in results], self.replica, device, dtype)

    def _model(self) -> tuple[Callable[[list[Any]], list[Any]], str, str]:
        """The node's batch function on its loaded model, its device and dtype. Blocking
        when the model is loaded again (its files changed)."""
        node = self.node
        device, dtype = node.resolved(None)
        entry = node.entry(device, dtype)  # the model cache's: loaded again when its files changed
        if self._fn is None or self._fn[0] is not entry:
            self._fn = (entry, node.batch_function(entry))
        return self._fn[1], entry.device, entry.dtype


# -- the ingress ------------------------------------------------------------------------
class RemoteModel:
    """A model node's forward through its deployment (`LocalModelNode.forward_through`)."""

    def __init__(self, handle: Any, node_id: str, max_items: int | None) -> None:
        self.handle = handle
        self.node_id = node_id
        self.max_items = max_items

    async def __call__(self, items: list[Any], ctx: NodeContext) -> list[Batched[Any]]:
        size = self.max_items or max(len(items), 1)
        chunks = [items[i : i + size] for i in range(0, len(items), size)] or [[]]
        sent = await asyncio.gather(*(self._send(chunk) for chunk in chunks))
        replies = [reply for reply, _ in sent]
        results = [Batched(_restored(b.value), b.info) for reply in replies for b in reply.results]
        devices = sorted({r.device for r in replies})
        record_batches(ctx, results, [", ".join(devices)], replies[0].dtype)
        ctx.record.extra["replica"] = ", ".join(sorted({r.replica for r in replies}))
        resent = sum(n for _, n in sent)
        if resent:
            ctx.record.extra["resent"] = resent  # items sent again after their replica was lost
        return results

    async def _send(self, items: list[Any]) -> tuple[Reply, int]:
        """The reply to `items`, and how often they were sent again."""
        lost: BaseException | None = None
        for attempt in range(SEND_ATTEMPTS):
            try:
                reply: Reply = await self.handle.forward.remote(items, time.time())
            except _LOST as exc:  # the replica died with the items: another takes them
                lost = exc
                await asyncio.sleep(min(0.1 * 2**attempt, 1.0))
                continue
            if reply.error is not None:
                raise NodeError(f"{reply.error[0]}: {reply.error[1]} (on replica {reply.replica})", node=self.node_id)
            return reply, attempt
        why = str(lost).strip().splitlines()[0] if lost is not None and str(lost).strip() else ""
        raise ReplicasUnavailableError(
            f"no replica of its deployment took the items ({SEND_ATTEMPTS} tries; {type(lost).__name__}: {why})",
            node=self.node_id)


class StatusBoard:
    """Where the driver puts the status of the flow file's edits, for the ingress replicas
    (a Ray actor of no resources, owned by the driver)."""

    def __init__(self, status: ReloadStatus) -> None:
        self.status = status

    def set(self, status: ReloadStatus) -> None:
        self.status = status

    def get(self) -> ReloadStatus:
        return self.status


class _ServedBy:
    """ASGI: the app, with ``x-served-by: <replica>`` on every HTTP answer."""

    def __init__(self, app: Any, replica: str) -> None:
        self.app = app
        self.header = (b"x-served-by", replica.encode())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def tagged(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, tagged)


@serve.ingress()
class FlowIngress:
    """The flow's ingress (see the module docstring). `target` is the flow's payload, or
    for a served model its config (a file path, or a mapping)."""

    def __init__(self, mode: str, target: Any, options: Mapping[str, Any], models: Sequence[ModelDeployment],
                 status: Any = None) -> None:
        self.mode = mode
        self.target = target
        self.options = dict(options)
        self.models = list(models)
        self.status = status

    def __serve_build_asgi_app__(self) -> Any:
        if self.mode == "flow":
            app = flow_app(flow_from_payload(self.target), **self.options)
        else:
            config = self.target if isinstance(self.target, Mapping) else Path(self.target)
            app = model_app(config, **self.options)
        service = app.state.service
        for model in self.models:
            node = service.flow.plan.nodes[model.node].node_objects()[model.index]
            assert isinstance(node, LocalModelNode)
            handle = serve.get_deployment_handle(MODEL_DEPLOYMENT, app_name=model.app)
            node.forward_through(RemoteModel(handle, model.node, model.max_items))
        board = self.status

        async def status() -> ReloadStatus | None:  # the driver's, never the file's own watch
            found: ReloadStatus | None = await board.get.remote() if board is not None else None
            return found

        service.status_source = status
        return _ServedBy(app, _replica_tag())
