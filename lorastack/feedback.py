"""Captured exchanges and users' ratings of them: the records, and the store's interface.

A domain with capture on (its `CaptureSetting` in the registry) has each served answer
stored as the engine saw it: the conversation with personal data masked (placeholders,
never the raw values), the answer before the user's values were restored, which version
wrote it, when, how long it took and which brand rules it followed. A client may then rate
the answer (`POST /v1/feedback`), with a correction or a comment, masked the same way.
`lorastack feedback export` turns the rated exchanges into KTO, DPO or SFT datasets.

The gateway writes through a queue, off the request path (serve/capture.py); the store
behind this interface is SQL (lorastack/db/), SQLite by default and PostgreSQL when
several gateways share one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

Vote = Literal[1, -1]


def utc_now() -> datetime:
    return datetime.now(UTC)


def key_hash(key: str | None) -> str | None:
    """What the store keeps of a client key: its sha256, hex (None on a gateway without keys)."""
    if key is None:
        return None
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def prompt_hash(messages: Sequence[dict[str, Any]]) -> str:
    """One conversation's identity, the same for every retry of it (masked messages, hex)."""
    canonical = json.dumps(list(messages), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Exchange:
    """One served answer, as the engine saw it."""

    response_id: str
    """The `id` of the completion the client received (every chunk of a stream has it)."""
    domain: str
    version: int
    key_hash: str | None
    messages: list[dict[str, Any]]
    """The conversation the engine answered: masked, brand voice included."""
    answer: str
    """The engine's answer (the first choice), masked: before the user's values came back."""
    latency_s: float
    rules: dict[str, bool] = field(default_factory=dict)
    """Brand rule label -> followed, for the answering version's rules."""
    created_at: datetime = field(default_factory=utc_now)

    @property
    def prompt_hash(self) -> str:
        return prompt_hash(self.messages)


@dataclass(frozen=True)
class Rating:
    """A client's verdict on one exchange."""

    response_id: str
    rating: Vote
    key_hash: str | None
    correction: str | None = None
    """A better answer, masked like the exchange."""
    comment: str | None = None
    """Masked like the exchange."""
    created_at: datetime = field(default_factory=utc_now)


@dataclass(frozen=True)
class RatedExchange:
    exchange: Exchange
    ratings: list[Rating]
    """Oldest first."""


class FeedbackStore(Protocol):
    """Where exchanges and ratings live. Every method is blocking: call it off the event loop."""

    def add_exchanges(self, exchanges: Sequence[Exchange]) -> None:
        """Store a batch in one transaction (a response id stored twice keeps the first)."""

    def get_exchange(self, response_id: str) -> Exchange | None: ...

    def add_rating(self, rating: Rating) -> None:
        """Store a rating of a stored exchange."""

    def rated_exchanges(self, domain: str, since: datetime | None = None) -> list[RatedExchange]:
        """The domain's exchanges since `since` that have at least one rating, oldest first."""

    def exchanges(self, domain: str, since: datetime | None = None) -> list[Exchange]:
        """Every captured exchange of the domain since `since`, oldest first."""

    def purge(self, before: datetime, domain: str | None = None) -> int:
        """Remove exchanges (and their ratings) older than `before`; how many exchanges went."""

    def counts(self, domain: str) -> dict[int, dict[str, int]]:
        """Per version: `captured`, `up`, `down` and `corrections`."""
