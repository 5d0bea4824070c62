"""Threads for blocking node work, owned by the engine, and a loop for sync callers.

- `worker_pool(max_threads)`: the engine's thread pool (one per size, for the process).
  Blocking node work (sync python functions, model forward passes, PDF parsing) runs
  there, never on asyncio's default executor, so `max_threads` is what applies. A node
  whose timeout passes while its thread is still busy gives control back at once: the
  thread is *abandoned* (it runs on, its result is discarded) and counted, so that a
  command-line run can exit without waiting for it.
- `run_sync(make_coroutine)`: run a coroutine to completion from sync code; in a plain
  script with `asyncio.run`, inside a running loop (a Jupyter kernel) on one background
  loop the process keeps, so connections and loaded state are reused between runs. Ctrl-C
  cancels the coroutine.
- `within(coroutine, seconds)` and `with Deadline(seconds):`: the deadlines of nodes and
  HTTP calls, in the caller's task, with `asyncio.timeout`'s rules; deadlines ending in the
  same slice of time share one loop timer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import math
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from jupyter_flow.errors import WorkersBusyError

__all__ = ["DEFAULT_MAX_THREADS", "Deadline", "abandoned_workers", "run_in_worker", "run_sync", "within", "worker_pool"]

T = TypeVar("T")

#: Threads for blocking node work when a run does not say (`Flow.arun(max_threads=...)`).
DEFAULT_MAX_THREADS = 64


class _Pools:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pools: dict[int, concurrent.futures.ThreadPoolExecutor] = {}
        self.sizes: dict[concurrent.futures.Executor, int] = {}
        #: work given up on while its thread still runs, and the pool it runs in
        self.abandoned: dict[concurrent.futures.Future[Any], concurrent.futures.Executor] = {}
        self.loop: asyncio.AbstractEventLoop | None = None


_STATE = _Pools()


def worker_pool(max_threads: int = DEFAULT_MAX_THREADS) -> concurrent.futures.ThreadPoolExecutor:
    """The engine's thread pool with `max_threads` threads (made on first use)."""
    with _STATE.lock:
        pool = _STATE.pools.get(max_threads)
        if pool is None:
            pool = _STATE.pools[max_threads] = concurrent.futures.ThreadPoolExecutor(
                max_workers=max_threads, thread_name_prefix="jupyter-flow-worker"
            )
            _STATE.sizes[pool] = max_threads
        return pool


async def run_in_worker(pool: concurrent.futures.Executor, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` in `pool`, with the caller's context variables. Cancelled (a
    timeout, the caller gone) while the thread still runs: the thread is abandoned."""
    size = _STATE.sizes.get(pool)
    if size is not None and _busy_abandoned(pool) >= size:
        raise WorkersBusyError(
            f"all {size} worker threads are still busy with work given up on after timeouts; "
            "try again when it has finished (or give the run more threads: max_threads)")
    ctx = contextvars.copy_context()
    cfuture = pool.submit(ctx.run, functools.partial(fn, *args, **kwargs))
    try:
        return await asyncio.wrap_future(cfuture)
    except asyncio.CancelledError:
        if not cfuture.cancel():  # already running: let it run out on its own
            with _STATE.lock:
                _STATE.abandoned[cfuture] = pool
            cfuture.add_done_callback(_forget)
        raise


def _busy_abandoned(pool: concurrent.futures.Executor) -> int:
    with _STATE.lock:
        return sum(1 for f, p in _STATE.abandoned.items() if p is pool and not f.done())


def _forget(cfuture: concurrent.futures.Future[Any]) -> None:
    with _STATE.lock:
        _STATE.abandoned.pop(cfuture, None)


def abandoned_workers() -> int:
    """Threads still busy with work whose node gave up on it (a timeout, a cancelled run)."""
    with _STATE.lock:
        return sum(1 for f in _STATE.abandoned if not f.done())


def _background_loop() -> asyncio.AbstractEventLoop:
    with _STATE.lock:
        if _STATE.loop is None or _STATE.loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="jupyter-flow-loop", daemon=True).start()
            _STATE.loop = loop
        return _STATE.loop


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine `make()` and wait for it, from sync code (see the module doc)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    future = asyncio.run_coroutine_threadsafe(make(), _background_loop())
    try:
        return future.result()
    except KeyboardInterrupt:
        future.cancel()  # the run's task is cancelled on its loop: its nodes stop
        raise


async def within(awaitable: Coroutine[Any, Any, T], seconds: float | None) -> T:
    """`await awaitable`, cancelled with `TimeoutError` after `seconds` (None: no limit).
    Runs in the caller's task, not in a task of its own as `asyncio.wait_for` does, with one
    timer: what `asyncio.timeout` does (the same cancel-and-uncancel rules, so a cancel
    from outside stays a cancel), less its bookkeeping, on every node and every HTTP call."""
    if not seconds:
        return await awaitable
    task = asyncio.current_task()
    if task is None or not _UNCANCEL:  # Python 3.10
        return await asyncio.wait_for(awaitable, seconds)
    with Deadline(seconds):
        return await awaitable


#: whether tasks count cancels (Python 3.11+), so that a deadline can tell its own
_UNCANCEL = hasattr(asyncio.Task, "uncancel")


class Deadline:
    """`with Deadline(seconds):` around awaits in a task: they are cancelled when the time
    is up, and the block raises `TimeoutError`; `within` as a block, for code that would
    otherwise wrap its awaits in a coroutine of their own only for the deadline. A cancel
    from outside stays a cancel; work that ends as the time runs out keeps its result.

    The time is up at `seconds`, or up to 1% (at most 10 ms) later: deadlines that end in
    the same slice of time share one loop timer (`_Slices`), where a timer each would cost
    every HTTP call a heap push and a cancelled handle."""

    __slots__ = ("_seconds", "_task", "_slice", "_cancelling", "_fired")

    def __init__(self, seconds: float | None) -> None:
        self._seconds = seconds
        self._slice: set[Deadline] | None = None
        self._fired = False

    def __enter__(self) -> Deadline:
        seconds = self._seconds
        if not seconds or seconds == math.inf:  # no limit
            return self
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no running loop
            task = None
        if task is None:
            raise RuntimeError("a Deadline is for code running in an asyncio task")
        self._task = task
        self._cancelling = task.cancelling() if _UNCANCEL else 0
        loop = task.get_loop()
        self._slice = _slices(loop).join(loop, self, seconds)
        return self

    def expire(self) -> None:
        """The time is up (called by the loop)."""
        if not self._task.done():
            self._fired = True
            self._task.cancel()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        joined = self._slice
        if joined is None:
            return
        joined.discard(self)
        if not self._fired:
            return
        if not _UNCANCEL:  # Python 3.10: our cancel cannot be told from another
            if kind is asyncio.CancelledError:
                raise asyncio.TimeoutError from None
            return
        if kind is asyncio.CancelledError:
            if self._task.uncancel() <= self._cancelling:
                raise asyncio.TimeoutError from None
            return
        self._task.uncancel()  # the work ended (or failed) as the time ran out: that stands


#: the longest a deadline may end after its time (a slice of the loop's clock)
_SLICE_S = 0.01


class _Slices:
    """The deadlines of one event loop, by the slice of time in which each ends: one loop
    timer per slice, however many deadlines end in it."""

    __slots__ = ("loop", "slices", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = weakref.ref(loop)  # weakly: the table of loops must not keep one alive
        self.slices: dict[float, set[Deadline]] = {}

    def join(self, loop: asyncio.AbstractEventLoop, deadline: Deadline, seconds: float) -> set[Deadline]:
        """Add `deadline`, `seconds` from now: the set it joined (leave by discarding it)."""
        size = min(_SLICE_S, seconds / 100)
        end = math.ceil((loop.time() + seconds) / size) * size  # never before its time
        joined = self.slices.get(end)
        if joined is None:
            joined = self.slices[end] = set()
            loop.call_at(end, self.fire, end)
        joined.add(deadline)
        return joined

    def fire(self, end: float) -> None:
        for deadline in self.slices.pop(end, ()):
            deadline.expire()


def _slices(loop: asyncio.AbstractEventLoop) -> _Slices:
    """The deadlines of `loop` (most calls come from the loop asked last)."""
    global _LAST_SLICES
    last = _LAST_SLICES
    if last is not None and last.loop() is loop:
        return last
    found = _LOOP_SLICES.get(loop)
    if found is None:
        found = _LOOP_SLICES[loop] = _Slices(loop)
    _LAST_SLICES = found
    return found


_LOOP_SLICES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Slices] = weakref.WeakKeyDictionary()
_LAST_SLICES: _Slices | None = None
