"""The local engine: a batch run in this process, `concurrency` items at a time.

Runs share one flow (so its loaded models and their micro-batchers) and one HTTP client.
As each item finishes its trace is written and its record appended to `results.jsonl`
(flushed and fsynced) by the results writer's thread, off the event loop; an item counts
as done once its line is on disk, so a killed batch keeps everything that finished.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from jupyter_flow.batch.items import BatchItem, ItemsSource
from jupyter_flow.batch.options import BatchOptions
from jupyter_flow.batch.prepare import PreparedBatch, finish_batch, prepare_batch
from jupyter_flow.batch.progress import make_bar
from jupyter_flow.batch.results import BatchSummary, ResultsWriter
from jupyter_flow.batch.run_item import run_item, stop_message
from jupyter_flow.workers import run_sync

if TYPE_CHECKING:
    import httpx

    from jupyter_flow.cache import CacheChoice
    from jupyter_flow.flow import Flow
    from jupyter_flow.history import HistoryChoice

__all__ = ["BatchArguments", "arun_batch", "arun_local", "batch_options", "run_batch", "run_local", "run_prepared"]


class BatchArguments(TypedDict, total=False):
    """The keywords of `run_batch` and `arun_batch`: `BatchOptions`'s fields (a mapping
    left out or None is empty)."""

    concurrency: int
    resume: bool
    rerun_changed: bool
    fail_fast: bool
    progress: Any
    input_name: str | None
    settings: Mapping[str, Any] | None
    endpoints: Mapping[str, str] | None
    common_inputs: Mapping[str, Any] | None
    max_failures: int | float | str
    cache: CacheChoice
    history: HistoryChoice


def run_batch(flow: Flow, items: ItemsSource, out_dir: str | Path, **options: Unpack[BatchArguments]) -> BatchSummary:
    """Run `flow` over `items` (a folder, glob, `.jsonl` file or list; see `collect_items`),
    `concurrency` at a time, writing `out_dir/results.jsonl`, `out_dir/traces/` and
    `out_dir/summary.json`. Without `resume` earlier results in `out_dir` are moved aside
    to `out_dir/earlier-<time>/`. A resume refuses results another version of the flow
    made (FlowChangedError, a BatchInputError), unless `rerun_changed`: then their items
    run again (implies `resume`). One batch at a time per `out_dir`: another one running
    there raises BatchLockedError (a BatchInputError) naming its process.

    `progress`: True (a tqdm bar on stderr), "auto" (tqdm.auto, a widget in Jupyter),
    False, or a tqdm-like class. `settings` go to every run (e.g. `{"device": "cuda"}`);
    `endpoints` override http nodes' endpoints by node id; `common_inputs` are given to
    every item (an item's own inputs win); `cache` and `history` (off by default) give
    every item's run the node cache and the run history (see `Flow.arun`);
    `max_failures` (a number, `"5%"` or `0.05`) is how many failed items `BatchSummary.succeeded` accepts (`summary.check()` raises
    BatchFailedError beyond it); see `BatchOptions`. Works in a script and inside a
    Jupyter kernel. Raises BatchStoppedError (a FlowRunError) naming the item and node
    when `fail_fast` stops the batch, BatchInputError for bad items or options.
    """
    return run_local(flow, items, out_dir, batch_options(options))


async def arun_batch(flow: Flow, items: ItemsSource, out_dir: str | Path, **options: Unpack[BatchArguments]) -> BatchSummary:
    """Run `flow` over `items` on the current event loop; see `run_batch`."""
    return await arun_local(flow, items, out_dir, batch_options(options))


def batch_options(arguments: BatchArguments) -> BatchOptions:
    """The keywords of `run_batch` as one `BatchOptions` (defaults for those left out)."""
    given: dict[str, Any] = {key: value for key, value in arguments.items() if value is not None or key not in _MAPPINGS}
    return BatchOptions(**given)


#: keywords whose None stands for an empty mapping
_MAPPINGS = frozenset({"settings", "endpoints", "common_inputs"})


def run_local(flow: Flow, items: ItemsSource, out_dir: str | Path, options: BatchOptions) -> BatchSummary:
    """`run_batch` with its options as one value. Works in a script and inside a running
    loop (a Jupyter kernel), where it blocks until the batch is done; Ctrl-C stops it."""
    # The items and the progress bar are made here, in the caller's thread (in Jupyter a
    # widget bar then shows in the cell); the runs go to a loop (see `run_sync`).
    batch = prepare_batch(flow, items, out_dir, options)
    try:
        bar = make_bar(options.progress, len(batch.items), batch.resumed)
        try:
            return run_sync(lambda: run_prepared(batch, options, bar))
        finally:
            if bar is not None:
                bar.close()
    finally:
        batch.close()


async def arun_local(flow: Flow, items: ItemsSource, out_dir: str | Path, options: BatchOptions) -> BatchSummary:
    """`arun_batch` with its options as one value."""
    # Validating the flow, reading the items and emptying the folder block: off the loop.
    batch = await asyncio.to_thread(prepare_batch, flow, items, out_dir, options)
    try:
        bar = make_bar(options.progress, len(batch.items), batch.resumed)
        try:
            return await run_prepared(batch, options, bar)
        finally:
            if bar is not None:
                bar.close()
    finally:
        batch.close()


async def run_prepared(batch: PreparedBatch, options: BatchOptions, bar: Any = None) -> BatchSummary:
    """Run the items left in `batch`, `options.concurrency` at a time, appending each
    record as it finishes; the summary at the end (see `finish_batch`). `bar` (a tqdm-like
    bar or None) is moved on per item and left open for its owner to close.

    Traces and result lines are written by the results writer's thread: the loop only
    waits (without blocking) until an item's line is fsynced before counting it done."""
    from jupyter_flow.http import make_client

    settings = dict(options.settings)
    cache, history = options.node_cache(), options.run_history()
    writer = ResultsWriter(batch.out_dir, flow_digest=batch.flow_digest, overrides=batch.overrides)
    slots = asyncio.Semaphore(options.concurrency)
    running: set[asyncio.Task[None]] = set()
    stop: list[str] = []
    crashed: list[BaseException] = []
    ran = 0
    t0 = time.perf_counter()

    async def one(item: BatchItem, client: httpx.AsyncClient) -> None:
        nonlocal ran
        try:
            outcome = await run_item(batch.flow, item, client, settings, cache=cache, history=history)
            record = outcome.record
            await writer.write(record, outcome.trace)
            ran += 1
            if bar is not None:
                bar.update(1)
            message = stop_message(record) if options.fail_fast else None
            if message and not stop:
                stop.append(message)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # writing results failed: end the batch, keep the cause
            crashed.append(exc)
        finally:
            slots.release()

    try:
        async with make_client(concurrency=options.concurrency) as client:
            try:
                for item in batch.todo:
                    await slots.acquire()
                    if stop or crashed:
                        slots.release()
                        break
                    task = asyncio.create_task(one(item, client), name=f"jupyter-flow batch:{item.id}")
                    running.add(task)
                    task.add_done_callback(running.discard)
                while running:
                    if stop or crashed:
                        break  # what still runs is cancelled below; resume runs it again
                    await asyncio.wait(set(running), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in list(running):
                    task.cancel()
                if running:
                    await asyncio.gather(*list(running), return_exceptions=True)
    finally:
        await asyncio.to_thread(writer.close)
    if crashed:
        raise crashed[0]
    # the summary reads every result line back: in a thread, so the loop goes on meanwhile
    return await asyncio.to_thread(finish_batch, batch, ran=ran, duration_s=time.perf_counter() - t0, stopped=stop[0] if stop else None)
