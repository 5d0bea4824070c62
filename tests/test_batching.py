from __future__ import annotations

import asyncio
import threading
import time

import pytest

from jupyter_flow.batching import BatcherClosedError, MicroBatcher


class Recorder:
    """A batch function that remembers the batches it was called with."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()
        self.delay_s = delay_s
        self.lock = threading.Lock()

    def __call__(self, items: list[int]) -> list[int]:
        with self.lock:
            self.batches.append(list(items))
            self.threads.add(threading.current_thread().name)
        if self.delay_s:
            time.sleep(self.delay_s)
        return [x * 10 for x in items]


def test_concurrent_awaits_share_forward_passes_and_get_their_own_results() -> None:
    fn = Recorder(delay_s=0.002)

    async def main() -> list[int]:
        with MicroBatcher(fn, max_size=16, max_wait_ms=20) as batcher:
            results = await asyncio.gather(*(batcher.run(i) for i in range(64)))
        assert all(r.info.size <= 16 for r in results)
        assert {r.info.batch_id for r in results} == set(range(len(fn.batches)))
        return [r.value for r in results]

    values = asyncio.run(main())
    assert values == [i * 10 for i in range(64)]
    # 64 callers, at most 16 per pass: far fewer passes than callers
    assert 4 <= len(fn.batches) <= 8
    assert sorted(x for b in fn.batches for x in b) == list(range(64))
    assert all(name != threading.main_thread().name for name in fn.threads)


def test_a_lone_item_waits_at_most_max_wait() -> None:
    fn = Recorder()
    with MicroBatcher(fn, max_size=8, max_wait_ms=30) as batcher:
        t0 = time.perf_counter()
        result = batcher.submit(3).result(timeout=5)
        elapsed = time.perf_counter() - t0
    assert result.value == 30
    assert result.info.size == 1
    assert 0.025 <= result.info.queue_wait_s < 1.0
    assert elapsed < 2.0


def test_map_from_plain_threads_keeps_order() -> None:
    fn = Recorder()
    out: dict[int, list[int]] = {}
    with MicroBatcher(fn, max_size=32, max_wait_ms=10) as batcher:
        def worker(k: int) -> None:
            out[k] = batcher.map(range(k * 10, k * 10 + 10))

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert out == {k: [x * 10 for x in range(k * 10, k * 10 + 10)] for k in range(4)}
    assert len(fn.batches) < 40


def test_an_error_in_the_batch_function_reaches_every_caller_of_that_batch() -> None:
    def boom(items: list[int]) -> list[int]:
        raise ValueError(f"bad batch of {len(items)}")

    with MicroBatcher(boom, max_size=4, max_wait_ms=20) as batcher:
        futures = batcher.submit_many(range(4))
        for f in futures:
            with pytest.raises(ValueError, match="bad batch of 4"):
                f.result(timeout=5)


def test_a_batch_function_that_returns_the_wrong_count_is_an_error() -> None:
    with MicroBatcher(lambda items: items[:-1], max_size=2, max_wait_ms=20) as batcher:
        futures = batcher.submit_many([1, 2])
        with pytest.raises(RuntimeError, match="returned 1 results for 2 items"):
            futures[0].result(timeout=5)


class TooBig(Exception):
    pass


def test_split_on_halves_the_batch_and_retries() -> None:
    seen: list[int] = []

    def limited(items: list[int]) -> list[int]:
        seen.append(len(items))
        if len(items) > 2:
            raise TooBig(f"{len(items)} items do not fit")
        return [x + 1 for x in items]

    with MicroBatcher(limited, max_size=8, max_wait_ms=30, split_on=(TooBig,)) as batcher:
        futures = batcher.submit_many(range(8))
        results = [f.result(timeout=5) for f in futures]
    assert [r.value for r in results] == [x + 1 for x in range(8)]
    assert seen[0] == 8 and max(r.info.size for r in results) == 2
    assert {r.info.splits for r in results} == {2}


def test_a_single_item_that_still_fails_after_splitting_gets_the_error() -> None:
    def never(items: list[int]) -> list[int]:
        raise TooBig("no room")

    with MicroBatcher(never, max_size=4, max_wait_ms=20, split_on=(TooBig,)) as batcher:
        futures = batcher.submit_many(range(4))
        for f in futures:
            with pytest.raises(TooBig):
                f.result(timeout=5)


def test_several_batch_functions_take_batches_in_turn() -> None:
    a, b = Recorder(delay_s=0.05), Recorder(delay_s=0.05)
    with MicroBatcher([a, b], max_size=4, max_wait_ms=1) as batcher:
        t0 = time.perf_counter()
        results = [f.result(timeout=10) for f in batcher.submit_many(range(16))]
        wall = time.perf_counter() - t0
    assert [r.value for r in results] == [x * 10 for x in range(16)]
    assert a.batches and b.batches
    assert {r.info.worker for r in results} == {0, 1}
    # two replicas work at the same time: clearly less than four 50 ms passes one after another
    assert wall < 0.8 * (len(a.batches) + len(b.batches)) * 0.05


def test_closing_runs_what_is_queued_and_refuses_more() -> None:
    fn = Recorder(delay_s=0.01)
    batcher = MicroBatcher(fn, max_size=2, max_wait_ms=1)
    futures = batcher.submit_many(range(6))
    batcher.close()
    assert batcher.closed
    outcomes = []
    for f in futures:
        try:
            outcomes.append(f.result(timeout=5).value)
        except BatcherClosedError:
            outcomes.append("closed")
    assert outcomes[0] == 0
    with pytest.raises(BatcherClosedError):
        batcher.submit(1)


def test_cancelling_a_waiting_caller_does_not_break_the_others() -> None:
    fn = Recorder(delay_s=0.01)

    async def main() -> list[int]:
        with MicroBatcher(fn, max_size=8, max_wait_ms=50) as batcher:
            doomed = asyncio.ensure_future(batcher.run(99))
            others = [asyncio.ensure_future(batcher.run(i)) for i in range(3)]
            await asyncio.sleep(0)
            doomed.cancel()
            done = await asyncio.gather(*others)
            with pytest.raises(asyncio.CancelledError):
                await doomed
            return [r.value for r in done]

    assert asyncio.run(main()) == [0, 10, 20]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        MicroBatcher(lambda x: x, max_size=0)
    with pytest.raises(ValueError):
        MicroBatcher(lambda x: x, max_wait_ms=-1)


def test_a_full_batch_starts_at_once_without_waiting_for_max_wait() -> None:
    fn = Recorder()
    with MicroBatcher(fn, max_size=4, max_wait_ms=5_000) as batcher:
        t0 = time.perf_counter()
        results = [f.result(timeout=10) for f in batcher.submit_many(range(4))]
        elapsed = time.perf_counter() - t0
    assert [r.info.size for r in results] == [4, 4, 4, 4]
    assert elapsed < 2.5, "a full batch must not sit out the 5 s max_wait"


def test_asyncio_callers_get_a_whole_batch_in_one_hop_to_their_loop() -> None:
    fn = Recorder()

    async def main() -> tuple[list[int], int]:
        loop = asyncio.get_running_loop()
        hops = 0
        plain = loop.call_soon_threadsafe

        def counted(*args: object, **kwargs: object) -> object:
            nonlocal hops
            if threading.current_thread() is not threading.main_thread():
                hops += 1
            return plain(*args, **kwargs)  # type: ignore[arg-type]

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        with MicroBatcher(fn, max_size=16, max_wait_ms=200) as batcher:
            results = await asyncio.gather(*(batcher.run(i) for i in range(64)))
        return [r.value for r in results], hops

    values, hops = asyncio.run(main())
    assert values == [i * 10 for i in range(64)]
    assert hops == len(fn.batches) <= 8  # one per forward pass, not one per caller


def test_a_closed_batcher_lets_go_of_its_batch_functions() -> None:
    import gc
    import weakref

    fn = Recorder()
    ref = weakref.ref(fn)
    batcher = MicroBatcher(fn, max_size=2, max_wait_ms=1)
    assert batcher.map([1, 2]) == [10, 20]
    del fn
    batcher.close()
    gc.collect()
    assert ref() is None  # a model held by the batch function is freed with the batcher closed
