"""Each answer's usage on its way to the database: queued, batched, off the request path.

`CompletionService` hands every answer's `UsageEvent` (its key, domain, version, tokens and
latency; never a text) to `submit` once the answer was sent. `submit` only appends to a
bounded queue; one writer thread (a `BatchWriter`) stores the queue in batches with one
`store.add_usage` each. Losses (a full queue, a batch the database refused, what was still
queued at shutdown) are counted in `lorastack_usage_dropped_total` and logged once per
streak; an answer never waits for, nor fails with, its usage.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from lorastack.errors import LorastackError
from lorastack.serve.batch_writer import BatchWriter, Periodic, Wording
from lorastack.serve.metrics import Metrics
from lorastack.usage import UsageEvent, UsageStore

logger = logging.getLogger(__name__)

MAX_PENDING = 4096
"""Usage records waiting for the database, at most; later ones are dropped (and counted)."""
BATCH_SIZE = 256
BATCH_WAIT_S = 1.0
CLOSE_TIMEOUT_S = 10.0
PURGE_EVERY_S = 3600.0


class UsageRecorder:
    """Writes answers' usage to `store` from one thread, never failing a request."""

    def __init__(
        self,
        store: UsageStore,
        metrics: Metrics,
        *,
        max_pending: int = MAX_PENDING,
        batch_size: int = BATCH_SIZE,
        batch_wait_s: float = BATCH_WAIT_S,
        retention_days: int | None = None,
        purge_every_s: float = PURGE_EVERY_S,
    ) -> None:
        """`retention_days`: usage older than this is purged every `purge_every_s`, between
        batches (None: kept)."""
        self.store = store
        self._metrics = metrics
        self._retention_days = retention_days
        self.writer = BatchWriter(
            self._write,
            self._lost,
            Wording(logger, "usage", "usage records", "the database"),
            max_pending=max_pending,
            batch_size=batch_size,
            batch_wait_s=batch_wait_s,
            periodic=None if retention_days is None else Periodic(self._purge, purge_every_s),
        )

    def submit(self, event: UsageEvent) -> None:
        """Queue one answer's usage (a `UsageSink`); returns at once."""
        self.writer.submit(event)

    def start(self) -> None:
        self.writer.start()

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Write what is queued, then stop; what the database did not take in time is lost."""
        self.writer.close(timeout_s)

    def _write(self, batch: list[UsageEvent]) -> None:
        self.store.add_usage(batch)  # a failure: the writer counts the batch lost
        self._metrics.usage_recorded(len(batch))

    def _lost(self, batch: Sequence[UsageEvent], reason: str) -> None:
        self._metrics.usage_lost(reason, len(batch))

    def _purge(self) -> None:
        assert self._retention_days is not None  # only scheduled with a retention
        before = datetime.now(UTC) - timedelta(days=self._retention_days)
        try:
            removed = self.store.purge(before)
        except LorastackError as error:  # the next round tries again
            logger.warning("usage: purge skipped: %s", error)
            return
        if removed:
            logger.info(
                "usage: %d records older than %d days purged", removed, self._retention_days
            )
