"""What each answer cost: its tokens and latency, by key, domain and version.

The gateway records one `UsageEvent` per answer, off the request path (serve/usage.py),
into a `UsageStore` (SQL, lorastack/db/); `lorastack usage` and `GET /admin/usage` read
it back summed. The key is kept by name and by hash, never the key itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal, Protocol, get_args

UsageGrouping = Literal["key", "domain", "version"]
"""What usage is summed by: the client key's name, the domain, or the domain's version."""
USAGE_GROUPINGS: tuple[str, ...] = get_args(UsageGrouping)
NO_KEY = "(no key)"
"""How a report names the answers of a gateway without keys."""


@dataclass(frozen=True)
class UsageEvent:
    created_at: datetime
    key_name: str | None
    """The client key's name; None on a gateway without keys."""
    key_hash: str | None
    """The client key's sha256, hex."""
    model: str
    """The domain that answered, or the base model's name."""
    version: int | None
    """The adapter version that answered; None for the base model."""
    endpoint: str
    """The API path answered (`/v1/chat/completions`, ...)."""
    prompt_tokens: int
    completion_tokens: int
    latency_s: float

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class UsageTotals:
    """What one group of answers cost: one key's, one domain's or one version's, over the
    whole period or one day of it. The fields that do not define the group are None."""

    key_name: str | None
    model: str | None
    version: int | None
    day: date | None
    """The UTC day, when summed per day."""
    requests: int
    prompt_tokens: int
    completion_tokens: int
    mean_latency_s: float

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def label(self, by: UsageGrouping) -> str:
        """The group as a person reads it: a key's name, `coffee-shop`, `coffee-shop@v3`."""
        if by == "key":
            return self.key_name or NO_KEY
        model = self.model or ""
        if by == "version" and self.version is not None:
            return f"{model}@v{self.version}"
        return model


class UsageStore(Protocol):
    def add_usage(self, events: Sequence[UsageEvent]) -> None:
        """Store a batch in one transaction."""
        ...

    def summary(
        self, since: datetime, by: UsageGrouping, *, daily: bool = False
    ) -> list[UsageTotals]:
        """The totals of the answers since `since` (inclusive) per group (per day too,
        with `daily`): the biggest first (each day's, oldest day first)."""
        ...

    def purge(self, before: datetime) -> int:
        """Remove the usage of answers older than `before`; how many rows went."""
        ...
