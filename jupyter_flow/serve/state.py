"""What a served flow keeps: the flow it serves and the watch of its file, recent runs,
and its Prometheus metrics.

- Reloads: one watcher (`watchfiles`) follows the flow file's folder; an edit is taken once
  the file's content has stayed the same for `settle_s` (a writer is done with it), is
  validated in a thread and replaces the served flow in one assignment, so a request runs
  the old flow or the new one, never a mix; a bad edit is logged, counted and kept for
  `/health` while the last good flow serves on. Nothing of this runs on the request path.
  Served on Ray Serve, the driver follows the file (a good edit is accepted once it is
  deployed) and each ingress replica follows the driver's `ReloadStatus` instead.
- History: the last `keep_runs` runs, within `keep_bytes` of JSON traces (the oldest go
  first; a run whose trace alone is larger is not kept).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from jupyter_flow.atomic import read_bounded
from jupyter_flow.errors import FlowError, FlowFileError, FlowValidationError
from jupyter_flow.flow import Flow
from jupyter_flow.serve.filewatch import file_changes
from jupyter_flow.serve.guards import Scrubber
from jupyter_flow.spec import parse_spec_text
from jupyter_flow.trace import RunResult
from jupyter_flow.values import dumps

__all__ = ["DEFAULT_KEEP_BYTES", "DEFAULT_KEEP_RUNS", "DEFAULT_SETTLE_S", "FlowService", "ReloadStatus"]

log = logging.getLogger("jupyter_flow.serve")
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: Run history of a served flow: at most this many runs and this many bytes of traces.
DEFAULT_KEEP_RUNS = 1000
DEFAULT_KEEP_BYTES = 256 * 1024 * 1024
#: How long a changed flow file must keep the same content before it is loaded.
DEFAULT_SETTLE_S = 0.5
#: How often a replica that follows another's status (`FlowService.status_source`) asks.
FOLLOW_EVERY_S = 0.25


@dataclass(frozen=True)
class ReloadStatus:
    """How the edits of a flow file went, for replicas that do not follow the file."""

    reload_error: str | None
    loaded_at: float
    reloads: dict[str, int] = field(default_factory=dict)  # outcome -> count


#: Checks an edit before it is taken (deploys it, say); a FlowError rejects the edit.
Accept = Callable[[Flow], Awaitable[None]]


class _Metrics:
    """Prometheus metrics in a registry of the app's own (so apps never share counters)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("jupyter_flow_requests", "Requests by route and status code", ["route", "status"], registry=self.registry)
        self.latency = Histogram("jupyter_flow_request_seconds", "Request latency", ["route"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.errors = Counter("jupyter_flow_errors", "Failed runs by node and error type", ["node", "type"], registry=self.registry)
        self.batch = Histogram("jupyter_flow_batch_size", "Micro-batch sizes of model nodes", ["node"], buckets=_BATCH_BUCKETS, registry=self.registry)
        self.node_latency = Histogram("jupyter_flow_node_seconds", "Node durations", ["node"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.variant = Counter("jupyter_flow_variant_requests", "Runs per node variant", ["node", "variant", "role"], registry=self.registry)
        self.variant_latency = Histogram("jupyter_flow_variant_seconds", "Latency per node variant", ["node", "variant", "role"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.reloads = Counter("jupyter_flow_reloads", "Flow file reloads by outcome", ["outcome"], registry=self.registry)
        self.in_flight = Gauge("jupyter_flow_in_flight", "Requests being served", registry=self.registry)
        self.replica = Counter("jupyter_flow_replica_runs", "Runs of a node by the replica that ran it (served on Ray Serve)",
                               ["node", "replica"], registry=self.registry)
        self.resent = Counter("jupyter_flow_replica_resends", "Runs of a node sent again after the replica that had them "
                              "was lost (served on Ray Serve)", ["node"], registry=self.registry)

    def observe(self, result: RunResult, *, shadows: bool = True) -> None:
        for record in result.records.values():
            if record.duration_s is not None and not record.cached:
                self.node_latency.labels(record.node).observe(record.duration_s)
            size = record.extra.get("batch_size")
            if isinstance(size, int):
                self.batch.labels(record.node).observe(size)
            if record.status == "error" and record.error:
                self.errors.labels(record.node, record.error.type).inc()
            replica = record.extra.get("replica")
            if isinstance(replica, str):
                self.replica.labels(record.node, replica).inc()
            if record.extra.get("resent"):
                self.resent.labels(record.node).inc()
            if record.variant is not None:
                self.variant.labels(record.node, record.variant, "primary").inc()
                if record.duration_s is not None:
                    self.variant_latency.labels(record.node, record.variant, "primary").observe(record.duration_s)
        if shadows:
            self.observe_shadows(result)

    def observe_shadows(self, result: RunResult) -> None:
        for record in result.records.values():
            for vid, shadow in (record.shadow or {}).items():
                if vid == record.variant:
                    continue
                self.variant.labels(record.node, vid, "shadow").inc()
                if shadow.get("duration_s") is not None:
                    self.variant_latency.labels(record.node, vid, "shadow").observe(shadow["duration_s"])

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class FlowService:
    """The state behind a served flow: the current flow, the file watch, recent runs."""

    def __init__(
        self,
        flow: Flow,
        *,
        keep_runs: int = DEFAULT_KEEP_RUNS,
        keep_bytes: int = DEFAULT_KEEP_BYTES,
        settle_s: float = DEFAULT_SETTLE_S,
    ) -> None:
        self.flow = flow
        self.source = flow.source
        #: each kept run as the JSON text `/runs/{id}` answers with (scrubbed): what is kept is
        #: what is counted, never the run's live values (a 5 MB input would be kept whole)
        self.runs: OrderedDict[str, bytes] = OrderedDict()
        self.runs_bytes = 0
        self.keep_runs = keep_runs
        self.keep_bytes = keep_bytes
        self.settle_s = settle_s
        self.reload_error: str | None = None
        self.loaded_at = time.time()
        self._digest = self._read_digest()
        self.metrics = _Metrics()
        self._reloads: dict[str, int] = {}
        #: when set, `watch` follows this instead of the file: the status of the edits as
        #: the process that follows the file (Ray Serve's driver) publishes it
        self.status_source: Callable[[], Awaitable[ReloadStatus | None]] | None = None

    def _read(self) -> bytes | None:
        try:
            return read_bounded(self.source) if self.source else None
        except OSError:
            return None
        except FlowFileError as exc:  # re-pointed at a device or a pipe, or too large: never read whole
            self.reload_error = str(exc)
            return None

    def _read_digest(self) -> str | None:
        data = self._read()
        return hashlib.sha256(data).hexdigest() if data is not None else None

    async def _settled(self) -> bytes | None:
        """The file's content once it stayed the same for `settle_s` (a writer done)."""
        data = await asyncio.to_thread(self._read)
        while True:
            await asyncio.sleep(self.settle_s)
            again = await asyncio.to_thread(self._read)
            if again == data:
                return data
            data = again

    def _load(self, data: bytes) -> Flow:
        """A validated flow from the file's bytes (runs in a thread: a big flow takes time)."""
        assert self.source is not None
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise FlowValidationError(f"cannot read: not UTF-8 ({exc.reason})", source=str(self.source)) from None
        spec = parse_spec_text(text, source=str(self.source), as_json=self.source.suffix.lower() == ".json")
        old = self.flow
        return Flow(spec, source=self.source, registry=old.registry, functions=old.functions).validate()

    async def reload(self, accept: Accept | None = None) -> bool:
        """Load the file again if its content changed; keep the last good flow on a bad edit.
        The new flow replaces the old one in one assignment: a request runs one or the other.
        `accept` sees a valid edit first; a FlowError from it rejects the edit too."""
        data = await self._settled()
        if data is None:
            return False
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._digest:
            return False
        self._digest = digest
        try:
            flow = await asyncio.to_thread(self._load, data)
            if accept is not None:
                await accept(flow)
        except FlowError as exc:
            self.reload_error = str(exc)
            self._counted("rejected")
            log.error("rejected the edit of %s; still serving the last good flow: %s", self.source, exc)
            return False
        self.flow = flow
        self.reload_error = None
        self.loaded_at = time.time()
        self._counted("ok")
        log.info("reloaded %s", self.source)
        return True

    def _counted(self, outcome: str, n: int = 1) -> None:
        self._reloads[outcome] = self._reloads.get(outcome, 0) + n
        self.metrics.reloads.labels(outcome).inc(n)

    def status(self) -> ReloadStatus:
        """How the edits went so far (what a follower applies)."""
        return ReloadStatus(self.reload_error, self.loaded_at, dict(self._reloads))

    def apply(self, status: ReloadStatus) -> None:
        """Take another's status of the edits: its reload error, load time and counts."""
        self.reload_error = status.reload_error
        self.loaded_at = status.loaded_at
        for outcome, count in status.reloads.items():
            if count > self._reloads.get(outcome, 0):
                self._counted(outcome, count - self._reloads.get(outcome, 0))

    async def watch(self, stop: asyncio.Event, *, accept: Accept | None = None,
                    published: Callable[[ReloadStatus], Awaitable[None]] | None = None) -> None:
        """The one watcher of the flow file: its folder, so that editors that replace the
        file (write a new one, rename it over) are followed too, and a symbolic link
        re-pointed at another file (see `filewatch`). Each edit goes through
        `reload(accept)`, and the status after it to `published`. With a `status_source`
        it follows that instead of the file."""
        if self.status_source is not None:
            await self._follow(stop, self.status_source)
            return
        assert self.source is not None
        async for _ in file_changes(self.source, stop):
            try:
                await self.reload(accept)
                if published is not None:
                    await published(self.status())
            except Exception:  # a watcher that dies would freeze the flow: log and go on
                log.exception("reloading %s failed", self.source)

    async def _follow(self, stop: asyncio.Event, source: Callable[[], Awaitable[ReloadStatus | None]]) -> None:
        while not stop.is_set():
            try:
                status = await asyncio.wait_for(source(), 5)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the driver gone or busy: keep the last status known
                log.debug("no status of %s: %s", self.source, exc)
            else:
                if status is not None:
                    self.apply(status)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), FOLLOW_EVERY_S)

    def remember(self, result: RunResult, scrubber: Scrubber) -> None:
        """Keep the run's trace for `/runs/{id}` as the JSON text it will be answered with
        (paths shown as the client knows them), within `keep_runs` runs and `keep_bytes`
        bytes of that text, which is all that is kept of it."""
        if self.keep_runs <= 0:
            return
        body = dumps(scrubber.value(result.to_dict())).encode()
        earlier = self.runs.pop(result.run_id, None)  # kept again once its shadows ended
        if earlier is not None:
            self.runs_bytes -= len(earlier)
        if len(body) > self.keep_bytes:
            return
        self.runs[result.run_id] = body
        self.runs_bytes += len(body)
        while len(self.runs) > self.keep_runs or self.runs_bytes > self.keep_bytes:
            _, dropped = self.runs.popitem(last=False)
            self.runs_bytes -= len(dropped)
