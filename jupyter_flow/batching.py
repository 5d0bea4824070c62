"""A micro-batcher: single items in, one call of a batch function per group of items.

Callers hand over one item at a time (from any thread, or from asyncio code); a worker
thread gathers what arrives into a batch of at most ``max_size`` items, waiting at most
``max_wait_ms`` after the first item of the batch, calls ``fn(batch)`` once and hands each
caller its own result, in order. The worker is a plain thread, so the batch function (a
model's forward pass, say) runs off any event loop.

With several batch functions (one model replica per GPU), each has its own worker and
they take batches in turn from the same queue. When the batch function raises one of
``split_on`` (a CUDA out-of-memory error, say), the batch is halved and each half is
tried again; `BatchInfo.splits` says how often that happened to an item.

The batcher knows nothing of flows or models, so it serves model nodes and model services
alike, and works in a script::

    batcher = MicroBatcher(lambda texts: [len(t) for t in texts], max_size=32, max_wait_ms=5)
    batcher.map(["a", "bb"])          # [1, 2]
    await batcher.run("ccc")          # Batched(value=3, info=BatchInfo(size=1, ...))
    batcher.close()
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["BatchInfo", "Batched", "BatcherClosedError", "MicroBatcher"]

T = TypeVar("T")
R = TypeVar("R")

BatchFunction = Callable[[list[T]], Sequence[R]]


class BatcherClosedError(RuntimeError):
    """The batcher was closed before (or while) the item could run."""


@dataclass(frozen=True)
class BatchInfo:
    """How one item was run: the size of its forward pass, how long it queued, and more."""

    size: int  # items in the call of the batch function that produced this result
    queue_wait_s: float  # from submit to the start of that call
    run_s: float  # duration of that call
    batch_id: int  # distinct per call of the batch function
    worker: int = 0  # which batch function (replica) ran it
    splits: int = 0  # how often the batch was halved after a `split_on` error


@dataclass(frozen=True)
class Batched(Generic[R]):
    value: R
    info: BatchInfo


@dataclass
class _Pending:
    item: Any
    future: Future[Batched[Any]]
    submitted: float


_STOP = object()


class MicroBatcher(Generic[T, R]):
    """Gather single items into calls of a batch function; see the module docstring."""

    def __init__(
        self,
        fn: BatchFunction[T, R] | Sequence[BatchFunction[T, R]],
        *,
        max_size: int = 32,
        max_wait_ms: float = 5.0,
        split_on: tuple[type[BaseException], ...] = (),
        name: str = "batcher",
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        if max_wait_ms < 0:
            raise ValueError("max_wait_ms must not be negative")
        self.fns: list[BatchFunction[T, R]] = list(fn) if isinstance(fn, Sequence) else [fn]
        if not self.fns:
            raise ValueError("give at least one batch function")
        self.max_size = max_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.split_on = split_on
        self.name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._gather = threading.Lock()  # one worker forms a batch at a time
        self._ids = itertools.count()
        self._closed = False
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self.calls = 0  # calls of the batch function so far
        self.items = 0  # items run so far

    # -- submitting ---------------------------------------------------------------
    def submit(self, item: T) -> Future[Batched[R]]:
        """Queue one item; the future resolves to `Batched(value, info)`. Thread-safe."""
        with self._lock:
            if self._closed:
                raise BatcherClosedError(f"{self.name} is closed")
            if not self._workers:
                self._start()
            future: Future[Batched[R]] = Future()
            self._queue.put(_Pending(item, future, time.perf_counter()))
        return future

    def submit_many(self, items: Iterable[T]) -> list[Future[Batched[R]]]:
        return [self.submit(item) for item in items]

    async def run(self, item: T) -> Batched[R]:
        """Await one item's result (the event loop is never blocked)."""
        return await asyncio.wrap_future(self.submit(item))

    async def run_many(self, items: Iterable[T]) -> list[Batched[R]]:
        futures = [asyncio.wrap_future(f) for f in self.submit_many(items)]
        try:
            return list(await asyncio.gather(*futures))
        except BaseException:
            for f in futures:
                f.cancel()
            raise

    def map(self, items: Iterable[T], timeout: float | None = None) -> list[R]:
        """Run items and block until all are done; plain results, in order."""
        futures = self.submit_many(items)
        return [f.result(timeout).value for f in futures]

    def __call__(self, item: T) -> R:
        return self.submit(item).result().value

    # -- lifecycle ----------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop the workers after the items already queued; later submits raise."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = list(self._workers)
            for _ in workers:
                self._queue.put(_STOP)
        for thread in workers:
            if thread is not threading.current_thread():
                thread.join(timeout)
        self._fail_rest()

    def __enter__(self) -> MicroBatcher[T, R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._workers)} workers"
        return f"<MicroBatcher {self.name!r} max_size={self.max_size} max_wait_ms={self.max_wait_s * 1000:g} {state}>"

    # -- workers ------------------------------------------------------------------
    def _start(self) -> None:
        for index, fn in enumerate(self.fns):
            thread = threading.Thread(target=self._work, args=(index, fn), name=f"{self.name}:{index}", daemon=True)
            self._workers.append(thread)
            thread.start()

    def _fail_rest(self) -> None:
        while True:
            try:
                pending = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(pending, _Pending) and pending.future.set_running_or_notify_cancel():
                pending.future.set_exception(BatcherClosedError(f"{self.name} was closed before the item ran"))

    def _next_batch(self) -> list[_Pending] | None:
        """Block for a first item, then gather until the batch is full or the wait is over."""
        with self._gather:
            first = self._queue.get()
            if first is _STOP:
                return None
            batch = [first]
            deadline = time.perf_counter() + self.max_wait_s
            while len(batch) < self.max_size:
                left = deadline - time.perf_counter()
                try:
                    nxt = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    self._queue.put(_STOP)  # the stop is for this worker: finish the batch first
                    break
                batch.append(nxt)
            return batch

    def _work(self, index: int, fn: BatchFunction[T, R]) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            live = [p for p in batch if p.future.set_running_or_notify_cancel()]
            if live:
                self._run(index, fn, live, 0)

    def _run(self, index: int, fn: BatchFunction[T, R], batch: list[_Pending], splits: int) -> None:
        started = time.perf_counter()
        try:
            values = list(fn([p.item for p in batch]))
            if len(values) != len(batch):
                raise RuntimeError(f"the batch function returned {len(values)} results for {len(batch)} items")
        except self.split_on if self.split_on else () as exc:  # type: ignore[misc]
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            half = len(batch) // 2
            self._run(index, fn, batch[:half], splits + 1)
            self._run(index, fn, batch[half:], splits + 1)
            return
        except BaseException as exc:  # every caller of the batch gets the error
            for p in batch:
                p.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        run_s = time.perf_counter() - started
        batch_id = next(self._ids)
        with self._lock:
            self.calls += 1
            self.items += len(batch)
        for p, value in zip(batch, values):
            info = BatchInfo(len(batch), started - p.submitted, run_s, batch_id, index, splits)
            p.future.set_result(Batched(value, info))
