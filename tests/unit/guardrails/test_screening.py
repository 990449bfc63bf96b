"""The screening pool: one hop to a bounded thread, one deadline for the work, inline when
already there, fair turns between tenants while every thread is busy."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from lorastack.errors import GuardUnavailable
from lorastack.guardrails.screening import (
    ScreeningBusy,
    ScreeningPool,
    ScreeningTimeout,
    on_screening_thread,
)


@pytest.fixture
def pool() -> Iterator[ScreeningPool]:
    screening = ScreeningPool(workers=1)
    yield screening
    screening.shutdown()


def test_an_operation_runs_on_a_screening_thread(pool: ScreeningPool) -> None:
    assert not on_screening_thread()
    assert pool.call(on_screening_thread, timeout_s=5)
    assert pool.call(lambda: threading.current_thread().name, 5).startswith("pii-screen")


def test_a_nested_call_runs_inline_under_the_outer_deadline(pool: ScreeningPool) -> None:
    # One worker: a nested call that queued for a thread would wait for itself forever.
    outer = pool.call(lambda: pool.call(threading.current_thread, 5), timeout_s=5)
    assert outer.name.startswith("pii-screen")


def test_a_deadline_fails_closed_and_a_queued_operation_never_starts(pool: ScreeningPool) -> None:
    started: list[str] = []

    def slow(name: str) -> None:
        started.append(name)
        time.sleep(0.3)

    with pytest.raises(ScreeningTimeout, match=r"longer than 0\.05 s"):
        pool.call(lambda: slow("first"), timeout_s=0.05)
    with pytest.raises(GuardUnavailable):  # queued behind the first, then given up
        pool.call(lambda: slow("second"), timeout_s=0.05)
    time.sleep(0.5)
    assert started == ["first"]


def test_the_event_loop_waits_without_a_thread_of_its_own(pool: ScreeningPool) -> None:
    async def main() -> tuple[bool, str]:
        answer = await pool.run(on_screening_thread, timeout_s=5)
        with pytest.raises(ScreeningTimeout):
            await pool.run(lambda: time.sleep(0.3), timeout_s=0.05)
        return answer, threading.current_thread().name

    inside, loop_thread = asyncio.run(main())
    assert inside
    assert not loop_thread.startswith("pii-screen")


def test_while_every_thread_is_busy_tenants_take_turns() -> None:
    pool = ScreeningPool(workers=2)
    finished: list[str] = []

    def work(name: str) -> None:
        time.sleep(0.2)
        finished.append(name)

    async def main() -> None:
        burst = [pool.run(lambda i=i: work(f"a{i}"), 5, tenant="a") for i in range(5)]
        other = pool.run(lambda: work("b"), 5, tenant="b")
        await asyncio.gather(*burst, other)

    try:
        asyncio.run(main())
    finally:
        pool.shutdown()
    # a takes both threads while they are free; the first one freed goes to b, which
    # holds none, so b runs in the second round (with a2). First come, first served,
    # b would run last, in the third round.
    assert finished.index("b") < 4


def test_the_deadline_measures_the_work_not_the_wait_for_a_thread() -> None:
    pool = ScreeningPool(workers=1)

    async def main() -> None:
        busy = pool.run(lambda: time.sleep(0.3), 5, tenant="a")
        quick = pool.run(lambda: "done", 0.1, tenant="b")  # waits 0.3 s, works ~0
        assert await asyncio.gather(busy, quick) == [None, "done"]

    try:
        asyncio.run(main())
    finally:
        pool.shutdown()


def test_a_wait_past_its_bound_fails_closed_and_never_starts() -> None:
    pool = ScreeningPool(workers=1, wait_s=0.05)
    started: list[str] = []

    async def main() -> None:
        busy = asyncio.ensure_future(pool.run(lambda: time.sleep(0.3), 5, tenant="a"))
        await asyncio.sleep(0)
        with pytest.raises(ScreeningBusy, match=r"within 0\.05 s"):
            await pool.run(lambda: started.append("late"), 5, tenant="b")
        await busy

    try:
        asyncio.run(main())
    finally:
        pool.shutdown()
    assert started == []


def test_a_tenants_thread_stays_taken_until_its_work_ends() -> None:
    pool = ScreeningPool(workers=1)

    async def main() -> float:
        with pytest.raises(ScreeningTimeout):
            await pool.run(lambda: time.sleep(0.4), 0.05, tenant="a")
        started = time.monotonic()
        await pool.run(lambda: None, 5, tenant="b")  # waits for the timed-out scan
        return time.monotonic() - started

    try:
        waited = asyncio.run(main())
    finally:
        pool.shutdown()
    assert waited > 0.2
