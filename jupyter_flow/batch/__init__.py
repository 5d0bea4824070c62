"""Batch runs: one flow over many inputs, concurrently, losing nothing on a crash.

The steps of a batch::

    items    = collect_items(flow, "inbox/")           # a folder, a glob, a JSONL file or a list
    summary  = run_batch(flow, items, "out/", concurrency=8, resume=True)

Each item has a stable id (the file's path relative to the folder or glob, a JSONL
line's `id` field or its line number). As each item finishes, its trace goes to
`out/traces/<id>.json` and one JSON line to `out/results.jsonl`, flushed and fsynced, so
a killed batch keeps everything that finished; `resume=True` skips the ids already in
`results.jsonl` (and drops a line torn by the kill), so every item ends up there exactly
once. Each line carries the digest of the flow that made it: a resume refuses results of
another version of the flow (FlowChangedError), or with `rerun_changed=True` moves them
aside and runs their items again. A failed item is recorded and the batch goes on, unless `fail_fast`: then the
batch stops and raises BatchStoppedError naming the item and the node. The summary says
whether the batch succeeded (`summary.succeeded`: no more failed items than
`max_failures`); `summary.check()` raises BatchFailedError when it did not.

One batch runs on an output folder at a time (a lock file, `OUT/.jupyter-flow.lock`;
another batch there raises BatchLockedError naming the process), and starting over
without `resume` moves earlier results aside, never deleting them.

The modules, one subject each: `items` (what runs), `options` (how: `BatchOptions`),
`results` (the output folder, its writer thread and the summary), `resume` (which results
a resume keeps), `lock` (one batch per folder), `run_item` (one item into its record),
`prepare` (the steps before and after the runs), `progress` (the bar), the engines
`local` (in this process) and `ray` (on a Ray cluster; the `ray` extra), and `engines`
(the engines by name, for `--engine` and an exported notebook's `engine`).
"""

from __future__ import annotations

from jupyter_flow.batch.engines import BatchEngine, BatchEngines, batch_engines
from jupyter_flow.batch.items import (
    BatchInputError,
    BatchItem,
    ItemsSource,
    apply_endpoints,
    collect_items,
    trace_name,
)
from jupyter_flow.batch.local import arun_batch, run_batch
from jupyter_flow.batch.lock import LOCK_FILE, BatchLockedError
from jupyter_flow.batch.options import BatchOptions
from jupyter_flow.batch.ray import run_batch_ray
from jupyter_flow.batch.results import (
    RESULTS_FILE,
    SUMMARY_FILE,
    TRACES_DIR,
    BatchFailedError,
    BatchStoppedError,
    BatchSummary,
    read_results,
    summarize_results,
)
from jupyter_flow.batch.resume import FlowChangedError

__all__ = [
    "LOCK_FILE",
    "RESULTS_FILE",
    "SUMMARY_FILE",
    "TRACES_DIR",
    "BatchEngine",
    "BatchEngines",
    "BatchFailedError",
    "BatchInputError",
    "BatchItem",
    "BatchLockedError",
    "BatchOptions",
    "BatchStoppedError",
    "BatchSummary",
    "FlowChangedError",
    "ItemsSource",
    "apply_endpoints",
    "arun_batch",
    "batch_engines",
    "collect_items",
    "read_results",
    "run_batch",
    "run_batch_ray",
    "summarize_results",
    "trace_name",
]
