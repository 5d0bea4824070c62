"""Batch runs on a Ray cluster: the local batch, spread over whole-flow replicas.

The steps of a Ray batch::

    items   = collect_items(flow, "inbox/")                       # as for a local batch
    summary = run_batch_ray(flow, items, "out/", address="ray://head:10001")

The driver (this process) collects the items, drops those already done (`resume`), and
hands the rest to a Ray Data pipeline: an actor pool whose actors each hold one loaded
copy of the flow (models resident, on a GPU of their own when the flow has GPU model
nodes and the cluster has GPUs). Each actor takes `concurrency` items at a time and runs
them concurrently on its own event loop, so model nodes micro-batch them exactly as in a
local batch. Every item runs through the same code as the local engine; the actor sends
back its result line and its trace text, and the driver appends them to
`out/results.jsonl` and `out/traces/` one by one as they stream in. So the output folder
of a Ray run has the same files, records, per-item errors and `--resume` behaviour as
a local run over the same inputs, and a killed driver keeps everything it had written.

Ray is an optional extra: ``pip install 'jupyter-flow[ray]'``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jupyter_flow.batch.items import BatchInputError, BatchItem, ItemsSource
from jupyter_flow.batch.options import BatchOptions
from jupyter_flow.batch.prepare import PreparedBatch, finish_batch, prepare_batch
from jupyter_flow.batch.progress import make_bar
from jupyter_flow.batch.results import BatchSummary, ResultsWriter
from jupyter_flow.batch.run_item import run_item, stop_message
from jupyter_flow.cache import CacheChoice, NodeCache
from jupyter_flow.errors import FlowError, FlowRunError, MissingDependencyError, Problem
from jupyter_flow.expressions import is_template
from jupyter_flow.flow import Flow
from jupyter_flow.history import HistoryChoice, RunHistory
from jupyter_flow.http import make_client
from jupyter_flow.raylocal import flow_from_payload, flow_payload, shutdown_ray, start_local_ray
from jupyter_flow.values import dumps

__all__ = ["FlowReplica", "gpu_model_nodes", "import_ray", "ray_cluster", "run_batch_ray", "run_ray"]

#: How long the driver waits for a cluster's address to accept a connection.
CONNECT_TIMEOUT_S = 5.0
#: The object store of a local cluster started here: results and traces pass through it.
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2
#: Device requests that may land on a GPU where one is visible.
GPU_DEVICES = ("auto", "cuda")


def import_ray() -> Any:
    """`ray` with Ray Data, or MissingDependencyError naming the extra."""
    try:
        import ray
        import ray.data  # noqa: F401  (the pipeline needs Ray Data, not just the core)
    except ImportError as exc:
        raise MissingDependencyError("ray[data]", "ray", "running a batch on Ray (--engine ray)") from exc
    return ray


# -- the cluster ----------------------------------------------------------------------
def _host_port(address: str) -> tuple[str, int] | None:
    """The host and port an address names (`HOST:PORT`, `ray://HOST:PORT`), if any."""
    text = address if "://" in address else f"tcp://{address}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return parts.hostname, port


def _probe(address: str) -> None:
    """Fail fast, naming the address, when nothing listens there (`ray.init` would wait
    on an unreachable cluster for minutes)."""
    target = _host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise FlowError(
            f"cannot reach the Ray cluster at {address!r} ({why}): check that the cluster is up and "
            "the address (--address or RAY_ADDRESS) is its head node's, e.g. HOST:6379 or ray://HOST:10001"
        ) from None


@contextlib.contextmanager
def ray_cluster(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[Any]:
    """The `ray` module, connected: to Ray as this process already has it, to the cluster at
    `address` (or `RAY_ADDRESS`), or to a local cluster started here and shut down on exit."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not address:  # a private cluster for this run: no dashboard, a small object store, no token
        start_local_ray(num_cpus=num_cpus, object_store_bytes=LOCAL_OBJECT_STORE_BYTES, tries=1)
    else:
        if address not in ("auto", "local"):
            _probe(address)
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
            raise FlowError(f"cannot connect to the Ray cluster at {address!r}: {exc}") from exc
    try:
        yield ray
    finally:
        shutdown_ray()  # the run's actor handles and object refs let go first


# -- resources ------------------------------------------------------------------------
def gpu_model_nodes(flow: Flow, settings: Mapping[str, Any] | None = None) -> list[str]:
    """Ids of the flow's nodes (a variant counts for its node) that would use a GPU where
    one is visible: their `device_request` is `auto`, `cuda` or `cuda:N`, or a template
    (known only at run time), and a run-wide `settings["device"]` overrides it."""
    override = (settings or {}).get("device")
    found: dict[str, None] = {}
    for node in flow.plan.node_objects():
        device = node.device_request(None)
        if device is None:  # no model of its own
            continue
        wanted = str(override or device)
        if is_template(wanted) or wanted.strip().lower().startswith(GPU_DEVICES):
            found[node.id] = None
    return list(found)


def _resources(
    ray: Any, flow: Flow, settings: Mapping[str, Any] | None, replicas: int | None, num_gpus: float | None,
    num_cpus: float | None,
) -> tuple[int, float, float]:
    """(replicas, CPUs per replica, GPUs per replica) for this flow on this cluster."""
    total = ray.cluster_resources()
    gpus = float(total.get("GPU", 0.0))
    cpus = float(total.get("CPU", 1.0))
    if num_gpus is None:
        num_gpus = 1.0 if gpus >= 1 and gpu_model_nodes(flow, settings) else 0.0
    if num_gpus < 0:
        raise BatchInputError([Problem("must be 0 or more", field="num_gpus")])
    if num_cpus is None:
        # Fractional CPUs: a replica mostly waits on a GPU, an endpoint or its own threads,
        # and whole-CPU requests on a small machine leave the pipeline's reads none.
        num_cpus = 0.5 if num_gpus or cpus <= 4 else 1.0
    if replicas is None:
        if num_gpus:
            replicas = max(1, int(gpus // num_gpus))
        else:  # one per CPU, leaving one to the driver and the pipeline's reads
            replicas = max(1, int((cpus - 1) // num_cpus) if cpus > 4 else int(cpus) - 1)
    if replicas < 1:
        raise BatchInputError([Problem("must be at least 1", field="replicas")])
    return replicas, float(num_cpus), float(num_gpus)


# -- the replica ----------------------------------------------------------------------
class FlowReplica:
    """One loaded copy of the flow in a Ray actor: takes a batch of items, runs them
    concurrently on a private event loop, and yields each item's result line and trace
    text as it finishes."""

    def __init__(self, flow: dict[str, Any], settings: dict[str, Any], stores: dict[str, Any] | None = None) -> None:
        self._flow = flow_from_payload(flow)
        self._settings = settings
        # the node cache and run history by path: each replica opens its own (SQLite in WAL
        # mode is safe across processes)
        stores = stores or {}
        self._cache = NodeCache(stores["cache"], max_bytes=stores["cache_max_bytes"]) if stores.get("cache") else None
        self._history = RunHistory(stores["history"], keep_runs=stores["history_keep"]) if stores.get("history") else None
        for node in self._flow.plan.node_objects():  # models load now, before the first item
            try:
                node.ensure_warm()
            except Exception:  # noqa: BLE001 - each item's run reports it, naming the node
                pass
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="jupyter-flow replica", daemon=True)
        self._thread.start()
        self._client = asyncio.run_coroutine_threadsafe(self._open_client(), self._loop).result()

    async def _open_client(self) -> Any:
        return make_client()

    async def _one(self, item: BatchItem) -> dict[str, Any]:
        outcome = await run_item(self._flow, item, self._client, self._settings, cache=self._cache, history=self._history)
        trace = await asyncio.to_thread(outcome.trace)
        return {"id": item.id, "record": dumps(outcome.record), "trace": trace}

    def __call__(self, batch: Mapping[str, Any]) -> Iterator[dict[str, list[str]]]:
        items = [
            BatchItem(str(i), json.loads(str(inputs)), str(source) if source else None)
            for i, inputs, source in zip(batch["id"], batch["inputs"], batch["source"])
        ]
        pending = {asyncio.run_coroutine_threadsafe(self._one(item), self._loop) for item in items}
        try:
            while pending:
                done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                rows = [future.result() for future in done]
                yield {key: [row[key] for row in rows] for key in ("id", "record", "trace")}
        finally:
            for future in pending:
                future.cancel()

    def __del__(self) -> None:
        loop = getattr(self, "_loop", None)
        if loop is not None and loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._client.aclose(), loop).result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)


def _stores_payload(options: BatchOptions) -> dict[str, Any]:
    """The node cache and the run history by path (absolute: a replica may start elsewhere)."""
    cache, history = options.node_cache(), options.run_history()
    return {
        "cache": str(cache.folder.resolve()) if cache else None,
        "cache_max_bytes": cache.max_bytes if cache else None,
        "history": str(history.path.resolve()) if history else None,
        "history_keep": history.keep_runs if history else None,
    }


@contextlib.contextmanager
def _quiet_ray_data(ray: Any) -> Iterator[None]:
    """No Ray Data progress bars or start-up banners: the driver shows its own bar."""
    ctx = ray.data.DataContext.get_current()
    saved = {name: getattr(ctx, name) for name in ("enable_progress_bars", "print_on_execution_start") if hasattr(ctx, name)}
    for name in saved:
        setattr(ctx, name, False)
    loggers = {name: logging.getLogger(name) for name in ("ray.data", "ray.data._internal.progress")}
    levels = {name: lg.level for name, lg in loggers.items()}
    loggers["ray.data"].setLevel(logging.WARNING)
    loggers["ray.data._internal.progress"].setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(ctx, name, value)
        for name, lg in loggers.items():
            lg.setLevel(levels[name])


def _failure(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    inner = cause if isinstance(cause, BaseException) else exc
    text = str(inner).strip().splitlines()
    return f"{type(inner).__name__}: {text[-1] if text else ''}"


# -- running --------------------------------------------------------------------------
def run_batch_ray(
    flow: Flow,
    items: ItemsSource,
    out_dir: str | Path,
    *,
    address: str | None = None,
    replicas: int | None = None,
    concurrency: int = 4,
    resume: bool = False,
    rerun_changed: bool = False,
    fail_fast: bool = False,
    progress: Any = True,
    num_gpus: float | None = None,
    num_cpus: float | None = None,
    input_name: str | None = None,
    settings: Mapping[str, Any] | None = None,
    endpoints: Mapping[str, str] | None = None,
    common_inputs: Mapping[str, Any] | None = None,
    runtime_env: Mapping[str, Any] | None = None,
    max_failures: int | float | str = 0,
    cache: CacheChoice = None,
    history: HistoryChoice = None,
) -> BatchSummary:
    """Run `flow` over `items` on Ray; the results, traces, summary and `resume` are those
    of `jupyter_flow.batch.run_batch` (which see for `items`, `progress`, `settings`,
    `endpoints`, `common_inputs`, `max_failures`, `cache`, `history`; and `BatchOptions`).

    - `address`: the cluster (`HOST:PORT`, `ray://HOST:PORT`, `auto`); default
      `RAY_ADDRESS`, else a local cluster started for this call (Ray already initialised
      in this process is used as it is);
    - `replicas`: actors, each with one loaded flow (default: one per GPU for a flow with
      GPU model nodes on a cluster with GPUs, else one per CPU but one, at least one);
    - `concurrency`: items each replica runs at once (model nodes micro-batch them);
    - `num_gpus` / `num_cpus`: per replica (default: 1 GPU when the flow has GPU model
      nodes and the cluster GPUs, and half a CPU on small machines or with a GPU);
    - `runtime_env`: given to the actors (e.g. `{"working_dir": ...}` so that the modules
      `python` nodes name import there).

    Paths (the flow's models, file inputs, `out_dir`) are read where they are used: file
    inputs and models on the workers, results on the driver. Raises FlowError naming the
    address when the cluster cannot be reached, MissingDependencyError without Ray.
    """
    import_ray()  # before any work, so that a missing extra is the first thing said
    options = BatchOptions(
        concurrency=concurrency, resume=resume, rerun_changed=rerun_changed, fail_fast=fail_fast, progress=progress,
        input_name=input_name,
        settings=settings or {}, endpoints=endpoints or {}, common_inputs=common_inputs or {},
        max_failures=max_failures, cache=cache, history=history,
    )
    return run_ray(flow, items, out_dir, options, address=address, replicas=replicas, num_gpus=num_gpus,
                   num_cpus=num_cpus, runtime_env=runtime_env)


def run_ray(
    flow: Flow,
    items: ItemsSource,
    out_dir: str | Path,
    options: BatchOptions,
    *,
    address: str | None = None,
    replicas: int | None = None,
    num_gpus: float | None = None,
    num_cpus: float | None = None,
    runtime_env: Mapping[str, Any] | None = None,
) -> BatchSummary:
    """`run_batch_ray` with the options every engine shares as one value."""
    import_ray()
    batch = prepare_batch(flow, items, out_dir, options)
    try:
        t0 = time.perf_counter()
        ran, stop = 0, None
        if batch.todo:
            bar = make_bar(options.progress, len(batch.items), batch.resumed)
            try:
                ran, stop = _stream(batch, options, bar, address=address, replicas=replicas, num_gpus=num_gpus,
                                    num_cpus=num_cpus, runtime_env=runtime_env)
            finally:
                if bar is not None:
                    bar.close()
        return finish_batch(batch, ran=ran, duration_s=time.perf_counter() - t0, stopped=stop)
    finally:
        batch.close()


def _stream(
    batch: PreparedBatch, options: BatchOptions, bar: Any, *, address: str | None, replicas: int | None,
    num_gpus: float | None, num_cpus: float | None, runtime_env: Mapping[str, Any] | None,
) -> tuple[int, str | None]:
    """Run the items left through an actor pool, writing each result as it arrives;
    returns (items written, the fail-fast message or None)."""
    settings = dict(options.settings)
    concurrency = options.concurrency
    done = set(batch.done)
    with ray_cluster(address) as ray, _quiet_ray_data(ray):
        size, cpus, gpus = _resources(ray, batch.flow, settings, replicas, num_gpus, num_cpus)
        rows = [{"id": i.id, "inputs": json.dumps(i.inputs, ensure_ascii=False, default=str), "source": i.source or ""}
                for i in batch.todo]
        blocks = max(1, min(len(rows), size * 4, math.ceil(len(rows) / concurrency)))
        extra: dict[str, Any] = {"runtime_env": dict(runtime_env)} if runtime_env else {}
        dataset = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
            FlowReplica,
            fn_constructor_kwargs={"flow": flow_payload(batch.flow), "settings": settings, "stores": _stores_payload(options)},
            batch_size=concurrency,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=size),
            num_cpus=cpus,
            num_gpus=gpus,
            **extra,
        )
        del rows
        writer = ResultsWriter(batch.out_dir, flow_digest=batch.flow_digest, overrides=batch.overrides)
        ran, stop = 0, None
        describe = getattr(bar, "set_description_str", None)
        if describe is not None:
            describe("batch (starting Ray actors)")
        stream = dataset.iter_rows()
        try:
            for row in stream:
                item_id = str(row["id"])
                if item_id in done:  # a task Ray ran again after a worker was lost
                    continue
                record = json.loads(row["record"])
                writer.append(record, str(row["trace"]))
                done.add(item_id)
                ran += 1
                if ran == 1 and describe is not None:
                    describe("batch")
                if bar is not None:
                    bar.update(1)
                stop = stop_message(record) if options.fail_fast else None
                if stop:
                    break
        except (FlowError, KeyboardInterrupt):
            raise
        except Exception as exc:
            if type(exc).__module__.startswith("ray"):
                raise FlowRunError(f"the Ray batch failed after {ran} items: {_failure(exc)}") from exc
            raise
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
            writer.close()
    return ran, stop
