"""A micro-batcher: single items in, one call of a batch function per group of items.

Callers hand over one item at a time (from any thread, or from asyncio code); a worker
thread gathers what arrives into a batch of at most ``max_size`` items and calls
``fn(batch)`` once. A full batch starts at once; a partial one waits at most
``max_wait_ms`` after its first item for more. Each caller gets its own result, in order.
The worker is a plain thread, so the batch function (a model's forward pass, say) runs
off any event loop; results for asyncio callers go back to their loop in one hop per
batch, not one per item.

With several batch functions (one model replica per GPU), each has its own worker and
they take batches in turn from the same queue. When the batch function raises one of
``split_on`` (a CUDA out-of-memory error, say), the batch is halved and each half is
tried again; `BatchInfo.splits` says how often that happened to an item. An item that
still fails alone fails on its own: the other callers of its batch get their results.
`split_calls` is that halving on its own, for whoever gathers batches otherwise (the
replicas of a model served on Ray Serve).

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
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["BatchInfo", "Batched", "BatcherClosedError", "Call", "MicroBatcher", "split_calls"]

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


class _Pending:
    """One queued item and where its result goes: a thread future, or an asyncio future
    of `loop`."""

    __slots__ = ("item", "future", "loop", "submitted")

    def __init__(self, item: Any, future: Any, loop: asyncio.AbstractEventLoop | None, submitted: float) -> None:
        self.item = item
        self.future = future
        self.loop = loop
        self.submitted = submitted

    def start(self) -> bool:
        """False when the caller gave up before the batch started (then it is left out)."""
        if self.loop is None:
            return self.future.set_running_or_notify_cancel()
        return not self.future.done()  # read from the worker: at worst a cancelled item runs for nothing


@dataclass(frozen=True)
class Call:
    """One call of a batch function over ``items[start : start + size]``: its values, or
    the error that failed those items."""

    start: int
    size: int
    values: list[Any] | None
    error: BaseException | None
    started: float  # time.perf_counter() at the start of the call
    run_s: float
    splits: int  # how often the items were halved before this call


def split_calls(fn: Callable[[list[T]], Sequence[R]], items: list[T],
                split_on: tuple[type[BaseException], ...] = ()) -> Iterator[Call]:
    """Call ``fn(items)``; when it raises one of `split_on`, halve the items and call each
    half, down to single items. Yields each call's outcome, in the order of the items: an
    item that fails alone with `split_on`, or a call that fails otherwise (or returns the
    wrong number of results), is a `Call` with its error; the other calls' items have
    their values. An error that is no Exception (KeyboardInterrupt) is yielded, then raised."""
    todo = [(0, len(items), 0)]
    while todo:
        start, size, splits = todo.pop()
        started = time.perf_counter()
        try:
            values = list(fn(items[start : start + size]))
            if len(values) != size:
                raise RuntimeError(f"the batch function returned {len(values)} results for {size} items")
        except split_on as exc:
            if size > 1:
                half = size // 2
                todo += [(start + half, size - half, splits + 1), (start, half, splits + 1)]
                continue
            yield Call(start, size, None, exc, started, time.perf_counter() - started, splits)
            continue
        except BaseException as exc:
            yield Call(start, size, None, exc, started, time.perf_counter() - started, splits)
            if not isinstance(exc, Exception):
                raise
            continue
        yield Call(start, size, values, None, started, time.perf_counter() - started, splits)


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
    def _put(self, pendings: list[_Pending]) -> None:
        with self._lock:
            if self._closed:
                raise BatcherClosedError(f"{self.name} is closed")
            if not self._workers:
                self._start()
            put = self._queue.put
            for pending in pendings:
                put(pending)

    def submit(self, item: T) -> Future[Batched[R]]:
        """Queue one item; the future resolves to `Batched(value, info)`. Thread-safe."""
        return self.submit_many([item])[0]

    def submit_many(self, items: Iterable[T]) -> list[Future[Batched[R]]]:
        now = time.perf_counter()
        pendings = [_Pending(item, Future(), None, now) for item in items]
        self._put(pendings)
        return [p.future for p in pendings]

    async def run(self, item: T) -> Batched[R]:
        """Await one item's result (the event loop is never blocked)."""
        return (await self.run_many([item]))[0]

    async def run_many(self, items: Iterable[T]) -> list[Batched[R]]:
        """Await the results of several items, in order; they may land in different batches."""
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        pendings = [_Pending(item, loop.create_future(), loop, now) for item in items]
        self._put(pendings)
        try:
            if len(pendings) == 1:
                return [await pendings[0].future]
            return list(await asyncio.gather(*(p.future for p in pendings)))
        except BaseException:
            for p in pendings:
                p.future.cancel()
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
        self.fns = []  # what the batch functions hold (a model, say) is not kept alive by a closed batcher

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
        rest: list[_Pending] = []
        while True:
            try:
                pending = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(pending, _Pending) and pending.start():
                rest.append(pending)
        if rest:
            _deliver_error(rest, BatcherClosedError(f"{self.name} was closed before the item ran"))

    def _next_batch(self) -> list[_Pending] | None:
        """Block for a first item, then take what is queued; wait (at most max_wait_ms
        after the first item) only while the batch is not full."""
        get, get_nowait = self._queue.get, self._queue.get_nowait
        with self._gather:
            first = get()
            if first is _STOP:
                return None
            batch = [first]
            deadline = first.submitted + self.max_wait_s if self.max_wait_s else 0.0
            while len(batch) < self.max_size:
                try:
                    nxt = get_nowait()
                except queue.Empty:
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        break
                    try:
                        nxt = get(timeout=left)
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
            live = [p for p in batch if p.start()]
            if live:
                self._run(index, fn, live)

    def _run(self, index: int, fn: BatchFunction[T, R], batch: list[_Pending]) -> None:
        for call in split_calls(fn, [p.item for p in batch], self.split_on):
            part = batch[call.start : call.start + call.size]
            if call.values is None:  # every caller of that call gets the error
                _deliver_error(part, call.error or RuntimeError("the batch function failed"))
                continue
            batch_id = next(self._ids)
            with self._lock:
                self.calls += 1
                self.items += call.size
            _deliver(part, [Batched(v, BatchInfo(call.size, call.started - p.submitted, call.run_s, batch_id, index,
                                                 call.splits)) for p, v in zip(part, call.values)])


def _by_loop(batch: list[_Pending], outcomes: list[Any]) -> dict[asyncio.AbstractEventLoop, list[tuple[Any, Any]]]:
    """Thread futures are settled here; asyncio ones are grouped by their loop."""
    loops: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any]]] = {}
    for p, outcome in zip(batch, outcomes):
        if p.loop is None:
            if isinstance(outcome, BaseException):
                p.future.set_exception(outcome)
            else:
                p.future.set_result(outcome)
        else:
            loops.setdefault(p.loop, []).append((p.future, outcome))
    return loops


def _deliver(batch: list[_Pending], results: list[Any]) -> None:
    for loop, pairs in _by_loop(batch, results).items():
        _hand_over(loop, _set_results, pairs)


def _deliver_error(batch: list[_Pending], exc: BaseException) -> None:
    for loop, pairs in _by_loop(batch, [exc] * len(batch)).items():
        _hand_over(loop, _set_exceptions, pairs)


def _hand_over(loop: asyncio.AbstractEventLoop, fn: Callable[[list[tuple[Any, Any]]], None], pairs: list[tuple[Any, Any]]) -> None:
    try:
        loop.call_soon_threadsafe(fn, pairs)  # one hop per batch and loop, not one per item
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass


def _set_results(pairs: list[tuple[asyncio.Future[Any], Any]]) -> None:
    for future, value in pairs:
        if not future.done():
            future.set_result(value)


def _set_exceptions(pairs: list[tuple[asyncio.Future[Any], BaseException]]) -> None:
    for future, exc in pairs:
        if not future.done():
            future.set_exception(exc)
