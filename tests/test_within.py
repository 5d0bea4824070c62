"""`workers.within`, the one deadline the engine and the HTTP calls use: the same rules as
`asyncio.timeout` (a deadline is a TimeoutError; a cancel from outside stays a cancel)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from jupyter_flow.workers import Deadline, within


async def _sleep(seconds: float, value: str = "done") -> str:
    await asyncio.sleep(seconds)
    return value


def test_work_that_ends_in_time_gives_its_result() -> None:
    assert asyncio.run(within(_sleep(0.01), 1.0)) == "done"
    assert asyncio.run(within(_sleep(0.01), None)) == "done"


def test_work_past_its_deadline_is_a_timeout_and_is_stopped() -> None:
    stopped: list[bool] = []

    async def work() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            stopped.append(True)
            raise

    async def go() -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(TimeoutError):
            await within(work(), 0.05)
        # the task was not left cancelled: it goes on awaiting normally
        await asyncio.sleep(0.01)
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
        return loop.time() - t0

    assert asyncio.run(go()) < 1.0
    assert stopped == [True]


def test_a_cancel_from_outside_stays_a_cancel() -> None:
    async def go() -> None:
        task = asyncio.ensure_future(within(_sleep(10), 5.0))
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())


def test_a_cancel_from_outside_at_the_deadline_stays_a_cancel() -> None:
    # both fire in the same turn of the loop: the caller's cancel must not become a timeout
    async def go() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(within(_sleep(10), 0.05))
        await asyncio.sleep(0)
        loop.call_at(loop.time() + 0.05, task.cancel)
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())


def test_nested_deadlines_each_raise_at_their_own_level() -> None:
    async def inner_first() -> str:
        try:
            await within(_sleep(10), 0.02)
        except TimeoutError:
            return "inner timed out, outer still running"
        return "no timeout"

    async def outer_first() -> str:
        try:
            await within(within(_sleep(10), 5.0), 0.02)
        except TimeoutError:
            return "outer timed out"
        return "no timeout"

    assert asyncio.run(within(inner_first(), 5.0)) == "inner timed out, outer still running"
    assert asyncio.run(outer_first()) == "outer timed out"


def test_errors_of_the_work_pass_through_untouched() -> None:
    async def fails() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        asyncio.run(within(fails(), 1.0))


def test_a_deadline_block_bounds_the_awaits_inside_it() -> None:
    # `Deadline` is `within` as a block: the same rules, without a coroutine of its own
    async def go() -> tuple[str, float, int]:
        with Deadline(1.0):
            first = await _sleep(0.01, "in time")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(TimeoutError), Deadline(0.05):
            await asyncio.sleep(10)
        with Deadline(None):  # no limit
            await _sleep(0.01)
        with Deadline(float("inf")):  # `timeout_s: .inf` in a flow file
            await _sleep(0.01)
        return first, loop.time() - t0, asyncio.current_task().cancelling()  # type: ignore[union-attr]

    first, took, cancelling = asyncio.run(go())
    assert first == "in time" and took < 1.0 and cancelling == 0


def test_a_cancel_from_outside_a_deadline_block_stays_a_cancel() -> None:
    async def blocked() -> None:
        with Deadline(5.0):
            await asyncio.sleep(10)

    async def go() -> None:
        task = asyncio.ensure_future(blocked())
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())


def test_a_deadline_block_outside_a_task_says_so() -> None:
    with pytest.raises(RuntimeError, match="asyncio task"), Deadline(1.0):
        pass


def test_deadlines_that_end_together_share_one_loop_timer() -> None:
    # every HTTP call has a deadline: those ending in the same slice of time (10 ms at
    # most) share one timer, and none ends before its time
    async def go() -> tuple[int, list[float]]:
        loop = asyncio.get_running_loop()
        timers: list[Any] = []
        call_at = loop.call_at

        def counting(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
            if getattr(callback, "__name__", "") != "_set_result_unless_cancelled":  # not the sleeps
                timers.append(when)
            return call_at(when, callback, *args, **kwargs)

        loop.call_at = counting  # type: ignore[method-assign]

        async def one() -> None:
            with Deadline(5.0):
                await asyncio.sleep(0.01)

        await asyncio.gather(*(one() for _ in range(200)))
        late: list[float] = []
        for seconds in (0.03, 0.2):
            t0 = loop.time()
            with pytest.raises(TimeoutError), Deadline(seconds):
                await asyncio.sleep(10)
            late.append(loop.time() - t0 - seconds)
        return len(timers), late

    timers, late = asyncio.run(go())
    assert timers <= 4, timers  # 200 deadlines started together, then the two that expire
    assert all(x >= 0 for x in late), late  # never before its time
