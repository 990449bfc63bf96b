"""Where PII screening runs: a bounded pool of threads, and a deadline for each call.

A scan that is running cannot be stopped (spaCy and the regex engines do not
yield), so a deadline means "stop waiting and fail closed": the caller gets
`ScreeningTimeout` while the thread finishes its work and is then reused. A
call that is still queued when its deadline passes never starts.

An operation handed to the pool (say, masking a whole conversation) runs on
one pool thread from start to end; detection inside it runs inline there,
under the operation's deadline, instead of hopping to another thread per text.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

from lorastack.errors import GuardUnavailable

T = TypeVar("T")

DEFAULT_WORKERS = 4

_thread_state = threading.local()


class ScreeningTimeout(GuardUnavailable):
    """Screening did not finish within its deadline; nothing was passed on unscanned."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"PII detection took longer than {timeout_s:g} s")
        self.timeout_s = timeout_s


def _mark_screening_thread() -> None:
    _thread_state.screening = True


def on_screening_thread() -> bool:
    """Whether the caller already runs on a screening thread, under a deadline."""
    return bool(getattr(_thread_state, "screening", False))


class ScreeningPool:
    """A fixed number of screening threads, shared by every guard of a process."""

    def __init__(self, workers: int = DEFAULT_WORKERS, name: str = "pii-screen") -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=name, initializer=_mark_screening_thread
        )

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

    async def run(self, operation: Callable[[], T], timeout_s: float) -> T:
        """`call` for asynchronous code: the event loop waits without holding a thread."""
        future = asyncio.wrap_future(self._executor.submit(operation))
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise ScreeningTimeout(timeout_s) from None

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


_default_pool: ScreeningPool | None = None
_default_lock = threading.Lock()


def default_pool() -> ScreeningPool:
    """The pool of guards given none: for command-line tools and training, one per process."""
    global _default_pool
    with _default_lock:
        if _default_pool is None:
            _default_pool = ScreeningPool()
        return _default_pool
