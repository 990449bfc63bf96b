"""A bounded queue written in batches by one thread: how the gateway stores what it records
off the request path (captured exchanges, `capture.py`; usage, `usage.py`).

`submit` only appends to the queue and returns, whatever becomes of the item. The writer
thread hands the queue to `write` in batches (`batch_size` items, or whatever waited
`batch_wait_s`). Nothing is ever raised to the submitter or kills the writer: a full queue
drops the newest item (`queue_full`), a batch `write` fails on is dropped (`store_error`),
and what is still queued when `close` gives up is dropped (`shutdown`); each loss goes to
`lost` (the owner's metric) and each streak of them is logged once. Between batches the
writer may also run the owner's `periodic` chore (a purge).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Wording:
    """How the writer's log lines name things:
    `capture: the feedback store failed (...); exchanges are dropped ...`."""

    logger: logging.Logger
    prefix: str
    """`capture`, `usage`: also names the thread (`capture-writer`)."""
    items: str
    """`exchanges`, `usage records`."""
    store: str
    """`the feedback store`, `the database`."""


@dataclass(frozen=True)
class Periodic:
    """A chore the writer runs every `every_s` (at once, the first time), between batches."""

    run: Callable[[], None]
    every_s: float


class BatchWriter(Generic[T]):
    """One writer thread, started by the first `submit` (or `start`), stopped by `close`."""

    def __init__(
        self,
        write: Callable[[list[T]], None],
        lost: Callable[[Sequence[T], str], None],
        wording: Wording,
        *,
        max_pending: int,
        batch_size: int,
        batch_wait_s: float,
        finished: Callable[[Sequence[T]], None] | None = None,
        periodic: Periodic | None = None,
    ) -> None:
        """`write` stores a batch, raising if it could not; `lost` counts items dropped, by
        reason; `finished` learns of every accepted item once it was written or dropped."""
        self._write_batch = write
        self._lost = lost
        self._finished = finished
        self._words = wording
        self.max_pending = max_pending
        self._batch_size = batch_size
        self._batch_wait_s = batch_wait_s
        self._periodic = periodic
        self._next_periodic = 0.0
        self._cond = threading.Condition()
        self._queue: deque[tuple[float, T]] = deque()  # (when it was queued, the item)
        self._hurry = False
        self._closing = False
        self._thread: threading.Thread | None = None
        self._queue_full = False  # a streak of drops, logged once
        self._store_failing = False  # likewise
        self._lost_in_streak = 0

    # -- any thread ---------------------------------------------------------------

    def submit(self, item: T) -> bool:
        """Queue `item`; returns at once: whether it was queued (else it was counted lost)."""
        with self._cond:
            if self._closing:
                reason: str | None = "shutdown"
            elif len(self._queue) >= self.max_pending:
                reason = "queue_full"
            else:
                reason = None
                self._start_locked()
                self._queue.append((time.monotonic(), item))
                # The writer sleeps while the queue is empty, and wakes for a full batch.
                if len(self._queue) in (1, self._batch_size):
                    self._cond.notify_all()
            first_drop = reason == "queue_full" and not self._queue_full
            self._queue_full = reason == "queue_full"
        if reason is not None:
            self._lost([item], reason)
        if first_drop:
            self._words.logger.warning(
                "%s: %d %s are waiting for %s; newer ones are dropped (and counted) until it "
                "catches up",
                self._words.prefix,
                self.max_pending,
                self._words.items,
                self._words.store,
            )
        return reason is None

    def hurry(self) -> None:
        """Write what is queued now, without waiting for a fuller batch."""
        with self._cond:
            self._hurry = True
            self._cond.notify_all()

    def start(self) -> None:
        """Start the writer now (it runs `periodic` while idle)."""
        with self._cond:
            self._start_locked()

    def _start_locked(self) -> None:
        if self._thread is None and not self._closing:
            self._thread = threading.Thread(
                target=self._run, name=f"{self._words.prefix}-writer", daemon=True
            )
            self._thread.start()

    def close(self, timeout_s: float) -> None:
        """Write what is queued, then stop; what was not written within `timeout_s` is lost."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
        with self._cond:
            left = [item for _, item in self._queue]
            self._queue.clear()
        if left:
            self._words.logger.warning(
                "%s: %d %s were not written before shutdown",
                self._words.prefix,
                len(left),
                self._words.items,
            )
            self._lost(left, "shutdown")
            self._done(left)

    # -- the writer thread ----------------------------------------------------------

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            if batch:
                self._write(batch)
            self._run_periodic_if_due()

    def _next_batch(self) -> list[T] | None:
        """The next batch; [] when the periodic chore is due; None once closed and empty."""
        with self._cond:
            while True:
                if self._queue:
                    wait = self._queue[0][0] + self._batch_wait_s - time.monotonic()
                    full = len(self._queue) >= self._batch_size
                    if wait <= 0 or full or self._hurry or self._closing:
                        break
                    self._cond.wait(wait)
                elif self._closing:
                    return None
                else:
                    due_in = self._periodic_due_in()
                    if due_in is not None and due_in <= 0:
                        return []
                    self._cond.wait(due_in)
            self._hurry = False
            count = min(self._batch_size, len(self._queue))
            return [self._queue.popleft()[1] for _ in range(count)]

    def _write(self, batch: list[T]) -> None:
        words = self._words
        try:
            self._write_batch(batch)
        except Exception as error:
            # The type only: a database error's message can quote the rows.
            if not self._store_failing:
                words.logger.error(
                    "%s: %s failed (%s); %s are dropped (and counted) until it recovers",
                    words.prefix,
                    words.store,
                    type(error).__name__,
                    words.items,
                )
            self._store_failing = True
            self._lost_in_streak += len(batch)
            self._lost(batch, "store_error")
        else:
            if self._store_failing:
                words.logger.warning(
                    "%s: %s is back; %d %s were lost meanwhile",
                    words.prefix,
                    words.store,
                    self._lost_in_streak,
                    words.items,
                )
            self._store_failing, self._lost_in_streak = False, 0
        self._done(batch)

    def _done(self, items: Sequence[T]) -> None:
        if self._finished is not None:
            self._finished(items)

    def _periodic_due_in(self) -> float | None:
        if self._periodic is None:
            return None
        return self._next_periodic - time.monotonic()

    def _run_periodic_if_due(self) -> None:
        due_in = self._periodic_due_in()
        if self._periodic is None or due_in is None or due_in > 0 or self._closing:
            return
        self._next_periodic = time.monotonic() + self._periodic.every_s
        try:
            self._periodic.run()
        except Exception as error:  # the owner's chore failed: it runs again next time
            self._words.logger.warning(
                "%s: a periodic task failed (%s)", self._words.prefix, type(error).__name__
            )
