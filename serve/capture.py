"""Served answers on their way to the feedback store: queued, batched, off the request path.

A domain with capture on (its registry setting) has each answer handed to `submit` once it
was sent (a whole answer's body, a stream's `[DONE]`): the conversation as the engine got
it and the answer as the engine wrote it, both with personal data masked (placeholders,
never the user's values; see `Released` in guarding.py). `submit` only appends to a
bounded queue and returns. One writer thread:

- computes the answering version's brand-rule results on the stored answer;
- writes the queue in batches (`batch_size` exchanges, or whatever waited `batch_wait_s`)
  with one `store.add_exchanges` each;
- counts a batch the store refused as lost (`lorastack_capture_dropped_total`, reason
  `store_error`) and logs it once per streak of failures, never raising: a database that
  is down costs the captures, never an answer. A full queue drops the newest exchange
  (reason `queue_full`);
- purges each domain's exchanges older than its retention, every `purge_every_s`.

A rating that arrives before its exchange was written (`wait_written`) hurries the writer
and waits for it. `close` writes what is queued, within a time limit.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from lorastack.errors import LorastackError
from lorastack.feedback import Exchange, FeedbackStore, utc_now
from lorastack.registry import AdapterRegistry
from lorastack.rules import BrandRule, check_answer
from lorastack.serve.metrics import Metrics

logger = logging.getLogger(__name__)

MAX_PENDING = 1024
"""Exchanges waiting for the store, at most; later ones are dropped (and counted)."""
BATCH_SIZE = 64
BATCH_WAIT_S = 0.5
PURGE_EVERY_S = 3600.0
CLOSE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class PendingExchange:
    """A served answer, masked, before its rules were checked and it was stored."""

    record: Exchange
    """The exchange as it will be stored, its rule results not yet checked."""
    rules: tuple[BrandRule, ...]
    """The answering version's brand rules, checked on the writer thread."""
    queued_at: float = field(default_factory=time.monotonic)

    @property
    def response_id(self) -> str:
        return self.record.response_id

    @property
    def domain(self) -> str:
        return self.record.domain

    def exchange(self) -> Exchange:
        """The record to store; its rule results computed now (on the writer thread)."""
        if not self.rules:
            return self.record
        return dataclasses.replace(self.record, rules=check_answer(self.rules, self.record.answer))


class ExchangeCapture:
    """Writes captured exchanges to `store` from one thread, never failing a request."""

    def __init__(
        self,
        store: FeedbackStore,
        metrics: Metrics,
        registry: AdapterRegistry | None = None,
        *,
        max_pending: int = MAX_PENDING,
        batch_size: int = BATCH_SIZE,
        batch_wait_s: float = BATCH_WAIT_S,
        purge_every_s: float | None = PURGE_EVERY_S,
    ) -> None:
        self.store = store
        self._metrics = metrics
        self._registry = registry  # for the purge: each domain's retention
        self._max_pending = max_pending
        self._batch_size = batch_size
        self._batch_wait_s = batch_wait_s
        self._purge_every_s = purge_every_s if registry is not None else None
        self._next_purge = 0.0
        self._cond = threading.Condition()
        self._queue: deque[PendingExchange] = deque()
        # Queued or in the batch being written: what a rating may have to wait for.
        self._unwritten: dict[str, PendingExchange] = {}
        self._hurry = False
        self._closing = False
        self._thread: threading.Thread | None = None
        self._queue_full = False  # a streak of drops, logged once
        self._store_failing = False  # likewise
        self._lost_in_streak = 0

    # -- the request path: append and return --------------------------------------

    def submit(self, pending: PendingExchange) -> None:
        """Queue one exchange for the store; returns at once, whatever becomes of it."""
        with self._cond:
            if self._closing:
                reason: str | None = "shutdown"
            elif len(self._queue) >= self._max_pending:
                reason = "queue_full"
            else:
                reason = None
                self._start_locked()
                self._queue.append(pending)
                self._unwritten[pending.response_id] = pending
                # The writer sleeps while the queue is empty, and wakes for a full batch.
                if len(self._queue) in (1, self._batch_size):
                    self._cond.notify_all()
            first_drop = reason == "queue_full" and not self._queue_full
            self._queue_full = reason == "queue_full"
        if reason is not None:
            self._metrics.capture_lost(pending.domain, reason)
        if first_drop:
            logger.warning(
                "capture: %d exchanges are waiting for the feedback store; newer ones are "
                "dropped (and counted) until it catches up",
                self._max_pending,
            )

    def is_pending(self, response_id: str) -> bool:
        with self._cond:
            return response_id in self._unwritten

    def wait_written(self, response_id: str, timeout_s: float) -> None:
        """Block until the exchange `response_id`, if it is queued, was written (or lost);
        the writer does not wait for a fuller batch meanwhile."""
        with self._cond:
            if response_id not in self._unwritten:
                return
            self._hurry = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: response_id not in self._unwritten, timeout_s)

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        """Start the writer (also started by the first `submit`): it purges while idle."""
        with self._cond:
            self._start_locked()

    def _start_locked(self) -> None:
        if self._thread is None and not self._closing:
            self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
            self._thread.start()

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Write what is queued, then stop; what the store did not take in time is lost."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
        with self._cond:
            left = list(self._queue)
            self._queue.clear()
            for pending in left:
                self._unwritten.pop(pending.response_id, None)
            self._cond.notify_all()
        if left:
            logger.warning("capture: %d exchanges were not written before shutdown", len(left))
            self._count_lost(left, "shutdown")

    # -- the writer ---------------------------------------------------------------

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            if batch:
                self._write(batch)
            self._purge_if_due()

    def _next_batch(self) -> list[PendingExchange] | None:
        """The next batch to write; [] when it is time to purge; None once closed and empty."""
        with self._cond:
            while True:
                if self._queue:
                    wait = self._queue[0].queued_at + self._batch_wait_s - time.monotonic()
                    full = len(self._queue) >= self._batch_size
                    if wait <= 0 or full or self._hurry or self._closing:
                        break
                    self._cond.wait(wait)
                elif self._closing:
                    return None
                else:
                    purge_in = self._purge_in()
                    if purge_in is not None and purge_in <= 0:
                        return []
                    self._cond.wait(purge_in)
            self._hurry = False
            count = min(self._batch_size, len(self._queue))
            return [self._queue.popleft() for _ in range(count)]

    def _write(self, batch: list[PendingExchange]) -> None:
        try:
            exchanges = [pending.exchange() for pending in batch]
        except Exception as error:  # a bug must not kill the writer, nor quote an answer
            logger.error("capture: exchanges could not be prepared (%s)", type(error).__name__)
            self._count_lost(batch, "error")
            self._written(batch)
            return
        try:
            self.store.add_exchanges(exchanges)
        except Exception as error:
            # The type only: a database error's message can quote the (masked) rows.
            if not self._store_failing:
                logger.error(
                    "capture: the feedback store failed (%s); exchanges are dropped "
                    "(and counted) until it recovers",
                    type(error).__name__,
                )
            self._store_failing = True
            self._lost_in_streak += len(batch)
            self._count_lost(batch, "store_error")
        else:
            if self._store_failing:
                logger.warning(
                    "capture: the feedback store is back; %d exchanges were lost meanwhile",
                    self._lost_in_streak,
                )
            self._store_failing, self._lost_in_streak = False, 0
            for domain, count in Counter(p.domain for p in batch).items():
                self._metrics.captured(domain, count)
        self._written(batch)

    def _written(self, batch: Sequence[PendingExchange]) -> None:
        """Written or lost: a rating waiting for one of them looks in the store now."""
        with self._cond:
            for pending in batch:
                self._unwritten.pop(pending.response_id, None)
            self._cond.notify_all()

    def _count_lost(self, batch: Sequence[PendingExchange], reason: str) -> None:
        for domain, count in Counter(p.domain for p in batch).items():
            self._metrics.capture_lost(domain, reason, count)

    # -- retention ----------------------------------------------------------------

    def _purge_in(self) -> float | None:
        if self._purge_every_s is None:
            return None
        return self._next_purge - time.monotonic()

    def _purge_if_due(self) -> None:
        """Remove each domain's exchanges older than its `retention_days`."""
        purge_in = self._purge_in()
        if self._registry is None or self._purge_every_s is None or purge_in is None:
            return
        if purge_in > 0 or self._closing:
            return
        self._next_purge = time.monotonic() + self._purge_every_s
        try:
            for domain in self._registry.domains():
                setting = self._registry.index(domain).capture
                if setting is None:  # never captured
                    continue
                before = utc_now() - timedelta(days=setting.retention_days)
                removed = self.store.purge(before, domain)
                if removed:
                    logger.info("capture: %d exchanges of %s purged (retention)", removed, domain)
        except (LorastackError, OSError) as error:
            logger.warning("capture: purge skipped: %s", error)
        except Exception as error:  # the store's own failure: the next round tries again
            logger.warning("capture: purge failed (%s)", type(error).__name__)
