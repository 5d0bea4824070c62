"""What every local model node shares: the `batch` and `device` options, the run-wide
device override (``settings={"device": ...}``), loading through the model cache, the
micro-batcher, and what goes in the trace record (batch size, queue wait, device, peak
GPU memory)."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from jupyter_flow.batching import Batched, BatchInfo, MicroBatcher, split_calls
from jupyter_flow.errors import FlowError, NodeError, Problem
from jupyter_flow.expressions import compile_value, is_template
from jupyter_flow.models import (
    LoadedModel,
    default_cache,
    import_torch,
    replica_devices,
    resolve_device,
    resolve_dtype,
)
from jupyter_flow.nodes.base import Node, NodeConfig, NodeContext
from jupyter_flow.spec import NodeSpec

__all__ = ["BatchSpec", "LocalModelConfig", "LocalModelNode", "RemoteForward", "record_batches", "run_direct",
           "upstream_nodes"]

DIRECT_CHUNK = 64  # items per forward pass when a node has no `batch` option
STAMP_TTL_S = 1.0  # the longest that runs in flight at once share one look at the model files
_DEVICE_WORDS = ("auto", "cpu", "cuda")

#: Where a node's items go instead of a model of its own (the replicas of a served
#: deployment): it takes the items and the run's context, fills the record as `forward`
#: does, and gives one result per item.
RemoteForward = Callable[[list[Any], NodeContext], Awaitable[list[Batched[Any]]]]


class BatchSpec(NodeConfig):
    """Micro-batching: concurrent calls are gathered into one forward pass."""

    max_size: int = Field(32, ge=1, le=65536)
    max_wait_ms: float = Field(5.0, ge=0, le=60_000)


class LocalModelConfig(NodeConfig):
    device: str = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] | None = None
    batch: BatchSpec | None = None
    capture: list[str] = []

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        v = value.strip().lower()
        if v in _DEVICE_WORDS or (v.startswith("cuda:") and v[5:].isdigit()) or is_template(value):
            return v if not is_template(value) else value
        raise ValueError(f"{value!r} is not a device: use auto, cpu, cuda or cuda:N")


def split_on_errors() -> tuple[type[BaseException], ...]:
    torch = import_torch()
    return (torch.OutOfMemoryError,)


class LocalModelNode(Node):
    """What local model nodes share: device choice, paths, the cache key, batching, the record.

    A run looks its model up in the process-wide cache (a model released there is loaded
    again by the next run); what a run needs besides is worked out once per node and
    kept: resolved paths and devices, the micro-batcher, and the files' stamp, which is
    looked at again at most every `STAMP_TTL_S` so that many runs at once share one look.
    """

    config: LocalModelConfig

    def __init__(self, spec: NodeSpec) -> None:
        super().__init__(spec)
        self._paths: dict[tuple[str, Path | None], tuple[Path, str | None]] = {}
        self._devices: dict[tuple[str, str], tuple[str, Any]] = {}
        self._stamp_memo: tuple[float, Any, str] | None = None
        self._batcher: tuple[LoadedModel, MicroBatcher[Any, Any]] | None = None
        self._replica_devices: list[str] = []
        self._in_flight = 0  # runs of this node inside `forward` now
        self._flight_lock = threading.Lock()
        self._remote: RemoteForward | None = None

    def batching(self) -> BatchSpec | None:
        """How concurrent runs' items are gathered into forward passes (None: each run's
        items on their own), for whoever runs the model elsewhere."""
        return self.config.batch

    def forward_through(self, remote: RemoteForward) -> None:
        """Send this node's items to `remote` (a deployment's replicas, each with the model)
        instead of a model of its own: nothing is loaded here, and nothing warms up."""
        self._remote = remote
        self.needs_warm_up = False

    # -- paths, devices, stamps ----------------------------------------------------------
    def local_path(self, value: str) -> Path:
        """A path from the config: as given when absolute, else read from the flow file's
        folder (`base_dir`), or from the current directory for a flow without a file."""
        key = (value, self.base_dir)
        found = self._paths.get(key)
        if found is not None and (found[1] is None or found[1] == os.getcwd()):
            return found[0]
        path, cwd = Path(value).expanduser(), None
        if not path.is_absolute():
            if self.base_dir is not None:
                path = Path(self.base_dir) / path
            else:
                cwd = os.getcwd()
                path = Path(cwd) / path
        resolved = path.resolve()
        self._paths[key] = (resolved, cwd)
        return resolved

    def where(self, value: str) -> str:
        """`value` for a message, saying which folder a relative path was read from."""
        if Path(value).expanduser().is_absolute():
            return value
        if self.base_dir is not None:
            return f"{value} (relative to the flow file's folder {self.base_dir})"
        return f"{value} (relative to the current directory {os.getcwd()})"

    def device_request(self, ctx: NodeContext | None = None) -> str:
        if ctx is not None and ctx.settings.get("device"):
            return str(ctx.settings["device"])
        return self.config.device

    def runtime_info(self) -> dict[str, Any]:
        try:
            device, dtype = self.resolved(None)
        except FlowError as exc:
            return {"device_error": str(exc)}
        return {"device": device, "dtype": str(dtype or "float32").replace("torch.", "")}

    def resolved(self, ctx: NodeContext | None) -> tuple[str, Any]:
        field = "settings.device" if ctx is not None and ctx.settings.get("device") else "config.device"
        request = self.device_request(ctx)
        found = self._devices.get((request, field))
        if found is None:  # errors are raised afresh each time, never kept
            device = resolve_device(request, node=self.id, field=field)
            found = self._devices[(request, field)] = (device, resolve_dtype(self.config.dtype, node=self.id))
        return found

    def current_stamp(self) -> Any:
        """`stamp()`: a fresh look at the files, except while other runs of this node are
        in flight, which share one look for up to `STAMP_TTL_S` seconds."""
        now = time.monotonic()
        memo = self._stamp_memo
        if memo is None or not self._in_flight or now - memo[0] >= STAMP_TTL_S:
            stamp = self.stamp()
            memo = self._stamp_memo = (now, stamp, repr(stamp))
        return memo[1]

    def cache_token(self) -> str:
        self.current_stamp()
        return self._stamp_memo[2]  # type: ignore[index]

    # subclasses: the cache key and loader for a device/dtype, and the batch function
    def model_key(self, device: str, dtype: Any) -> tuple[Any, ...]:
        raise NotImplementedError

    def stamp(self) -> Any:
        raise NotImplementedError

    def load(self, device: str, dtype: Any) -> Any:
        raise NotImplementedError

    def describe_source(self) -> str:
        raise NotImplementedError

    def batch_function(self, entry: LoadedModel) -> Callable[[list[Any]], list[Any]]:
        raise NotImplementedError

    def batch_key(self) -> tuple[Any, ...]:
        return ()

    def entry(self, device: str, dtype: Any) -> LoadedModel:
        """The loaded model for this node on `device` (loading it on a miss). Blocking."""
        torch = import_torch()
        dtype_name = str(dtype or torch.float32).replace("torch.", "")
        self._stamp_memo = None  # a load looks at the files now
        return default_cache().get(
            self.model_key(device, dtype),
            lambda: self.load(device, dtype),
            kind=self.kind,
            source=self.describe_source(),
            device=device,
            dtype=dtype_name,
            stamp=self.current_stamp(),
        )

    def warm_up(self) -> None:
        """Load the model (for the configured device, on every GPU when it has replicas)
        and run one example through each copy.

        A user error found here (no CUDA, a missing or corrupt file) is left for `run` to
        report: the run may override the device, and there the message names the node once."""
        try:
            device, dtype = self.resolved(None)
            entries = [self.entry(d, dtype) for d in self.replica_devices(None, device)]
        except NodeError:
            return
        example = self.warm_up_item()
        if example is not None:
            for entry in entries:
                self.batch_function(entry)([example])

    def warm_up_item(self) -> Any:
        return None

    def replica_devices(self, ctx: NodeContext | None, device: str) -> list[str]:
        """With `batch` and `device: auto` on a machine with several GPUs, one replica per
        visible GPU (`device` first); else just `device`."""
        if self.config.batch is None or self.device_request(ctx).strip().lower() != "auto" or device == "cpu":
            return [device]
        return [device, *(d for d in replica_devices("auto") if d != device)]

    def kept_batcher(self, entry: LoadedModel) -> MicroBatcher[Any, Any] | None:
        kept = self._batcher
        if kept is not None and kept[0] is entry and not kept[1].closed:
            return kept[1]
        return None

    def batcher(self, entry: LoadedModel, spec: BatchSpec, devices: Sequence[str] = ()) -> MicroBatcher[Any, Any]:
        """The micro-batcher on `entry` that this node's runs share (made on first use;
        nodes with the same model and options share one). With more `devices`, the model
        is loaded on each and each replica's worker takes batches in turn. Blocking."""
        found = self.kept_batcher(entry)
        if found is not None:
            return found
        dtype = resolve_dtype(self.config.dtype, node=self.id)
        entries = [entry, *(self.entry(d, dtype) for d in devices if d != entry.device)]
        key = (self.batch_key(), spec.max_size, spec.max_wait_ms, tuple(e.device for e in entries))
        batcher = entry.batcher(
            key,
            lambda: MicroBatcher([self.batch_function(e) for e in entries], max_size=spec.max_size,
                                 max_wait_ms=spec.max_wait_ms, split_on=split_on_errors(),
                                 name=f"{self.kind}:{entry.source}"),
        )
        for replica in entries[1:]:
            replica.share_batcher(key, batcher)  # releasing any replica stops the batcher
        self._batcher = (entry, batcher)
        self._replica_devices = [e.device for e in entries]
        return batcher

    async def forward(self, items: list[Any], ctx: NodeContext) -> list[Batched[Any]]:
        """Run items through the model: via the shared micro-batcher when `batch` is set,
        else in chunks in a worker thread; or by `forward_through`'s remote. Fills the
        record's extra."""
        if self._remote is not None:
            return await self._remote(items, ctx)
        device, dtype = self.resolved(ctx)
        entry = default_cache().lookup(self.model_key(device, dtype), self.current_stamp())
        devices = [device]
        with self._flight_lock:
            self._in_flight += 1
        try:
            if entry is None:
                entry = await ctx.run_blocking(self.entry, device, dtype)
            spec = self.config.batch
            if spec is not None:
                batcher = self.kept_batcher(entry)
                if batcher is None:
                    replicas = self.replica_devices(ctx, device)
                    batcher = await ctx.run_blocking(self.batcher, entry, spec, replicas)
                devices = self._replica_devices
                results = await batcher.run_many(items)
            else:
                results = await ctx.run_blocking(run_direct, self.batch_function(entry), items, split_on_errors())
        finally:
            with self._flight_lock:
                self._in_flight -= 1
        record_batches(ctx, results, devices, entry.dtype)
        return results

    def problems(self) -> list[Problem]:
        return []


def run_direct(fn: Callable[[list[Any]], list[Any]], items: list[Any], split_on: tuple[type[BaseException], ...] = (),
               *, sent_at: float | None = None, ids: Iterator[int] | None = None) -> list[Batched[Any]]:
    """One run's items without `batch` (here, or on a served deployment's replica):
    `DIRECT_CHUNK` items per forward pass, a pass that raises one of `split_on` (out of
    memory) halved and tried again (`jupyter_flow.batching.split_calls`); an item that
    still fails raises its error. `sent_at` (time.time()) gives the queue wait, `ids` the
    passes' ids. Blocking."""
    ids = ids if ids is not None else itertools.count()
    out: list[Batched[Any]] = []
    for start in range(0, len(items), DIRECT_CHUNK):
        waited = max(time.time() - sent_at, 0.0) if sent_at is not None else 0.0
        for call in split_calls(fn, items[start : start + DIRECT_CHUNK], split_on):
            if call.values is None:
                raise call.error or RuntimeError("the forward pass failed")
            info = BatchInfo(call.size, waited, call.run_s, next(ids), 0, call.splits)
            out.extend(Batched(v, info) for v in call.values)
    return out


def record_batches(ctx: NodeContext, results: Sequence[Batched[Any]], devices: Sequence[str], dtype: str) -> None:
    """Batch size, queue wait, device (of the replica that ran the items; `devices` by
    worker) and peak GPU memory in the node's record."""
    extra = ctx.record.extra
    infos = [r.info for r in results]
    passes = {i.batch_id: i for i in infos}
    if len(devices) == 1:
        extra["device"] = devices[0]
    else:
        used = sorted({devices[i.worker] for i in infos if i.worker < len(devices)})
        extra["device"] = ", ".join(used) if used else devices[0]
        extra["replicas"] = len(devices)
    extra["dtype"] = dtype
    extra["items"] = len(infos)
    if infos:
        extra["batch_size"] = max(i.size for i in infos) if len(passes) > 1 else infos[0].size
        extra["forward_passes"] = len(passes)
        extra["queue_wait_ms"] = round(max(i.queue_wait_s for i in infos) * 1000, 3)
        extra["forward_ms"] = round(sum(i.run_s for i in passes.values()) * 1000, 3)
        splits = max(i.splits for i in infos)
        if splits:
            extra["oom_splits"] = splits
            extra["note"] = f"CUDA ran out of memory: the batch was halved {splits} time(s) and retried"
    peaks = [p for r in results if isinstance(r.value, dict) and (p := r.value.get("_peak_gpu_memory")) is not None]
    if peaks:
        extra["peak_gpu_memory_mb"] = round(max(peaks) / 2**20, 3)
    for r in results:
        if isinstance(r.value, dict):
            r.value.pop("_peak_gpu_memory", None)


def upstream_nodes(raw: Any, node_ids: Any) -> list[str]:
    """The nodes a config value's templates read from."""
    try:
        refs = compile_value(raw).refs
    except Exception:
        return []
    return sorted({r.name for r in refs if r.name in node_ids})
