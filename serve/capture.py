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
and waits for it. `close` writes what is queued, within a time limit. The queue and its
thread are a `BatchWriter` (batch_writer.py), shared with the usage recorder.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from lorastack.errors import LorastackError
from lorastack.feedback import Exchange, FeedbackStore, utc_now
from lorastack.registry import AdapterRegistry
from lorastack.rules import BrandRule, check_answer
from lorastack.serve.batch_writer import BatchWriter, Periodic, Wording
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
        purge = None
        if registry is not None and purge_every_s is not None:
            purge = Periodic(self._purge, purge_every_s)
        self.writer = BatchWriter(
            self._write,
            self._count_lost,
            Wording(logger, "capture", "exchanges", "the feedback store"),
            max_pending=max_pending,
            batch_size=batch_size,
            batch_wait_s=batch_wait_s,
            finished=self._written,
            periodic=purge,
        )
        self._cond = threading.Condition()
        # Queued or in the batch being written: what a rating may have to wait for.
        self._unwritten: dict[str, PendingExchange] = {}

    # -- the request path: append and return --------------------------------------

    def submit(self, pending: PendingExchange) -> None:
        """Queue one exchange for the store; returns at once, whatever becomes of it."""
        # Noted before it is queued: the writer may write it before `submit` returns.
        with self._cond:
            self._unwritten[pending.response_id] = pending
        if not self.writer.submit(pending):
            self._written([pending])

    def is_pending(self, response_id: str) -> bool:
        with self._cond:
            return response_id in self._unwritten

    def wait_written(self, response_id: str, timeout_s: float) -> None:
        """Block until the exchange `response_id`, if it is queued, was written (or lost);
        the writer does not wait for a fuller batch meanwhile."""
        if not self.is_pending(response_id):
            return
        self.writer.hurry()
        with self._cond:
            self._cond.wait_for(lambda: response_id not in self._unwritten, timeout_s)

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        """Start the writer (also started by the first `submit`): it purges while idle."""
        self.writer.start()

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Write what is queued, then stop; what the store did not take in time is lost."""
        self.writer.close(timeout_s)

    # -- the writer thread ----------------------------------------------------------

    def _write(self, batch: list[PendingExchange]) -> None:
        try:
            exchanges = [pending.exchange() for pending in batch]
        except Exception as error:  # a bug must not kill the writer, nor quote an answer
            logger.error("capture: exchanges could not be prepared (%s)", type(error).__name__)
            self._count_lost(batch, "error")
            return
        self.store.add_exchanges(exchanges)  # a failure: the writer counts the batch lost
        for domain, count in Counter(p.domain for p in batch).items():
            self._metrics.captured(domain, count)

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

    def _purge(self) -> None:
        """Remove each domain's exchanges older than its `retention_days`."""
        assert self._registry is not None  # only scheduled with a registry
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
