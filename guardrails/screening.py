"""Where PII screening runs: a bounded pool of threads, and a deadline for each call.

A scan that is running cannot be stopped (spaCy and the regex engines do not
yield), so a deadline means "stop waiting and fail closed": the caller gets
`ScreeningTimeout` while the thread finishes its work and is then reused. A
call that is still queued when its deadline passes never starts.

Asynchronous callers (the gateway) wait for a free thread in fair turns between
tenants first, then start at once: their deadline measures the screening, not
a busy moment's queue, which has a bound of its own (`wait_s`, then
`ScreeningBusy`).

An operation handed to the pool (say, masking a whole conversation) runs on
one pool thread from start to end; detection inside it runs inline there,
under the operation's deadline, instead of hopping to another thread per text.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from lorastack.errors import GuardUnavailable
from lorastack.turns import FairSlots

T = TypeVar("T")

DEFAULT_WORKERS = 4
DEFAULT_WAIT_S = 30.0

_thread_state = threading.local()


class ScreeningTimeout(GuardUnavailable):
    """Screening did not finish within its deadline; nothing was passed on unscanned."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"PII detection took longer than {timeout_s:g} s")
        self.timeout_s = timeout_s


class ScreeningBusy(GuardUnavailable):
    """No screening thread came free in time; nothing was passed on unscanned."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(f"no PII screening thread was free within {wait_s:g} s")
        self.wait_s = wait_s


def _mark_screening_thread() -> None:
    _thread_state.screening = True


def on_screening_thread() -> bool:
    """Whether the caller already runs on a screening thread, under a deadline."""
    return bool(getattr(_thread_state, "screening", False))


class ScreeningPool:
    """A fixed number of screening threads, shared by every guard of a process.

    Asynchronous callers name the tenant a call is for (its client key): while
    every thread is busy, tenants take turns (`FairSlots`), so one key's burst of
    large prompts queues behind itself while the others keep getting threads.
    """

    def __init__(
        self,
        workers: int = DEFAULT_WORKERS,
        name: str = "pii-screen",
        wait_s: float = DEFAULT_WAIT_S,
    ) -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=name, initializer=_mark_screening_thread
        )
        self.workers = workers
        self.wait_s = wait_s
        self._turns: FairSlots | None = None  # made on the event loop that first uses it

    def call(self, operation: Callable[[], T], timeout_s: float) -> T:
        """Run `operation` on a screening thread and wait for it, at most `timeout_s`.

        On a screening thread already, it runs inline: the outer call's deadline holds.
        """
        if on_screening_thread():
            return operation()
        future = self._executor.submit(operation)
        try:
            return future.result(timeout=timeout_s)
        except FutureTimeout:
            future.cancel()  # only stops it if it has not started yet
            raise ScreeningTimeout(timeout_s) from None

    async def run(self, operation: Callable[[], T], timeout_s: float, tenant: str = "") -> T:
        """`call` for asynchronous code: the event loop waits without holding a thread.

        The tenant's turn for a thread comes first (at most `wait_s`); `timeout_s`
        then bounds the work.
        """
        if self._turns is None:
            self._turns = FairSlots(self.workers)
        turns = self._turns
        try:
            await asyncio.wait_for(turns.acquire(tenant), self.wait_s)
        except TimeoutError:
            raise ScreeningBusy(self.wait_s) from None
        try:
            future = self._executor.submit(operation)
        except BaseException:
            turns.release(tenant)
            raise
        # The thread is the tenant's until the work ends, even past a deadline that
        # stopped the waiting: a scan that is running cannot be stopped.
        future.add_done_callback(_releasing(turns, tenant, asyncio.get_running_loop()))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
        except TimeoutError:
            raise ScreeningTimeout(timeout_s) from None

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _releasing(
    turns: FairSlots, tenant: str, loop: asyncio.AbstractEventLoop
) -> Callable[[Future[Any]], None]:
    """A done-callback (run on the worker thread) that gives the slot back on the loop."""

    def on_done(_: Future[Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed first: nothing waits
            loop.call_soon_threadsafe(turns.release, tenant)

    return on_done


_default_pool: ScreeningPool | None = None
_default_lock = threading.Lock()


def default_pool() -> ScreeningPool:
    """The pool of guards given none: for command-line tools and training, one per process."""
    global _default_pool
    with _default_lock:
        if _default_pool is None:
            _default_pool = ScreeningPool()
        return _default_pool
