"""Batch writes off the event loop, against writes on the loop, in the same run.

A batch of N small items (default 5,000) through a one-node flow, `concurrency` at a
time, twice into fresh folders:

- baseline: the previous way: each finished item's trace written, its line appended to
  `results.jsonl`, flushed and fsynced, all on the event loop;
- now: `arun_batch`: the results writer's thread does the trace, the line and the fsync
  (lines that arrive together share one fsync); the loop only awaits it.

Both keep the guarantee that an item counts as done only once its line is fsynced.
During each, a 1 ms ticker on the loop measures how late it wakes (loop lag): p50, p99,
max. Prints a table; never fails on timing.

    python benchmarks/batch_writes.py [--items N] [--concurrency C]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from jupyter_flow import Flow
from jupyter_flow.batch import arun_batch
from jupyter_flow.batch.items import BatchItem
from jupyter_flow.batch.results import RESULTS_FILE, TRACES_DIR
from jupyter_flow.batch.run_item import run_item
from jupyter_flow.http import make_client
from jupyter_flow.values import dumps

FLOW = {
    "name": "small",
    "inputs": {"text": {"type": "string"}},
    "nodes": [{"id": "say", "type": "template", "config": {"template": "item {{ text }} done"}}],
}


async def on_the_loop(flow: Flow, items: list[BatchItem], out: Path, concurrency: int) -> None:
    """The previous way: trace, line, flush and fsync on the event loop."""
    (out / TRACES_DIR).mkdir(parents=True)
    slots = asyncio.Semaphore(concurrency)
    with open(out / RESULTS_FILE, "a", encoding="utf-8") as fh:
        async with make_client(concurrency=concurrency) as client:

            async def one(item: BatchItem) -> None:
                async with slots:
                    outcome = await run_item(flow, item, client, {})
                    (out / outcome.record["trace"]).write_text(outcome.trace() + "\n", encoding="utf-8")
                    fh.write(dumps(outcome.record) + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())

            await asyncio.gather(*(one(item) for item in items))


async def off_the_loop(flow: Flow, items: list[BatchItem], out: Path, concurrency: int) -> None:
    await arun_batch(flow, items, out, concurrency=concurrency, progress=False)


async def measured(run: Callable[[], Awaitable[None]]) -> tuple[float, list[float]]:
    """Wall time of `run`, and how late each 1 ms tick of a ticker on the loop woke (ms)."""
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append((time.perf_counter() - t - 0.001) * 1e3)

    tick = asyncio.create_task(ticker())
    t0 = time.perf_counter()
    await run()
    wall = time.perf_counter() - t0
    stop.set()
    await tick
    return wall, lags


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    flow = Flow.from_dict(FLOW).validate()
    items = [BatchItem(f"item-{n:05d}", {"text": str(n)}) for n in range(args.items)]
    root = Path(tempfile.mkdtemp(prefix="jf-batch-bench-"))
    rows: list[tuple[str, float, list[float]]] = []
    try:
        cases: list[tuple[str, Any]] = [("writes on the loop (baseline)", on_the_loop), ("writer thread (now)", off_the_loop)]
        for name, fn in cases:
            out = root / name.split()[0]

            async def go(fn: Any = fn, out: Path = out) -> tuple[float, list[float]]:
                return await measured(lambda: fn(flow, items, out, args.concurrency))

            wall, lags = asyncio.run(go())
            lines = len((out / RESULTS_FILE).read_bytes().splitlines())
            assert lines == len(items), f"{name}: {lines} lines for {len(items)} items"
            rows.append((name, wall, lags))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"{len(items)} items, concurrency {args.concurrency}; Python {sys.version.split()[0]}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs; temp folder {tempfile.gettempdir()}")
    print(f"{'case':<32} {'items/s':>9} {'wall s':>8} {'lag p50 ms':>11} {'lag p99 ms':>11} {'lag max ms':>11}")
    for name, wall, lags in rows:
        print(f"{name:<32} {len(items) / wall:>9.0f} {wall:>8.2f} {statistics.median(lags):>11.2f}"
              f" {pct(lags, 0.99):>11.2f} {max(lags):>11.2f}")
    base, now = rows[0], rows[1]
    print(f"throughput: {base[1] / now[1]:.2f}x the baseline; loop lag p99: {pct(base[2], 0.99):.2f} ms -> "
          f"{pct(now[2], 0.99):.2f} ms, max: {max(base[2]):.2f} ms -> {max(now[2]):.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
