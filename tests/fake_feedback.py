"""An in-memory `FeedbackStore` for the gateway's unit tests, scriptable like the fake engine.

It keeps exchanges and ratings in dicts under one lock, and can be told to fail
(`fail = DatabaseError(...)`: the database is down) or to hold writes until released
(`hold()` / `release()`: a slow database), so tests see what the gateway does meanwhile::

    store = MemoryFeedbackStore()
    store.hold()                      # add_exchanges blocks...
    ...                               # ...while answers go on
    store.release()
    assert store.wait_for(lambda: len(store.exchanges_by_id) == 3)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from lorastack.errors import ExchangeNotFound
from lorastack.feedback import Exchange, RatedExchange, Rating


class MemoryFeedbackStore:
    def __init__(self) -> None:
        self.exchanges_by_id: dict[str, Exchange] = {}
        self.ratings: list[Rating] = []
        self.batches: list[int] = []
        """The size of each batch written, in order."""
        self.fail: BaseException | None = None
        """Raised by every call while set: the database is down."""
        self._lock = threading.Lock()
        self._open = threading.Event()
        self._open.set()

    # -- scripting -----------------------------------------------------------------

    def hold(self) -> None:
        """Block `add_exchanges` until `release` (a database that takes its time)."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    def _check(self) -> None:
        if self.fail is not None:
            raise self.fail

    # -- the protocol ----------------------------------------------------------------

    def add_exchanges(self, exchanges: Sequence[Exchange]) -> None:
        self._open.wait(timeout=30)
        self._check()
        with self._lock:
            for exchange in exchanges:
                self.exchanges_by_id.setdefault(exchange.response_id, exchange)
            self.batches.append(len(exchanges))

    def get_exchange(self, response_id: str) -> Exchange | None:
        self._check()
        with self._lock:
            return self.exchanges_by_id.get(response_id)

    def add_rating(self, rating: Rating) -> None:
        self._check()
        with self._lock:
            if rating.response_id not in self.exchanges_by_id:
                raise ExchangeNotFound(f"no exchange {rating.response_id}")
            self.ratings.append(rating)

    def rated_exchanges(self, domain: str, since: datetime | None = None) -> list[RatedExchange]:
        self._check()
        with self._lock:
            return [
                RatedExchange(e, [r for r in self.ratings if r.response_id == e.response_id])
                for e in self._of(domain, since)
                if any(r.response_id == e.response_id for r in self.ratings)
            ]

    def exchanges(self, domain: str, since: datetime | None = None) -> list[Exchange]:
        self._check()
        with self._lock:
            return self._of(domain, since)

    def purge(self, before: datetime, domain: str | None = None) -> int:
        self._check()
        with self._lock:
            gone = [
                e.response_id
                for e in self.exchanges_by_id.values()
                if e.created_at < before and (domain is None or e.domain == domain)
            ]
            for response_id in gone:
                del self.exchanges_by_id[response_id]
            self.ratings = [r for r in self.ratings if r.response_id not in gone]
            return len(gone)

    def counts(self, domain: str) -> dict[int, dict[str, int]]:
        self._check()
        with self._lock:
            counts: dict[int, dict[str, int]] = {}
            for exchange in self._of(domain, None):
                version = counts.setdefault(
                    exchange.version, {"captured": 0, "up": 0, "down": 0, "corrections": 0}
                )
                version["captured"] += 1
                for rating in self.ratings:
                    if rating.response_id == exchange.response_id:
                        version["up" if rating.rating == 1 else "down"] += 1
                        version["corrections"] += rating.correction is not None
            return counts

    def _of(self, domain: str, since: datetime | None) -> list[Exchange]:
        found = [
            e
            for e in self.exchanges_by_id.values()
            if e.domain == domain and (since is None or e.created_at >= since)
        ]
        return sorted(found, key=lambda e: e.created_at)
