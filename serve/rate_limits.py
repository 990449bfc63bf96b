"""Each key's limits, enforced: requests and tokens per minute, a token budget per period,
and a cap on each domain's requests in flight.

The counting is `limits`' fixed-window strategy on a storage the gateways share (the
lorastack database by default, `lorastack.db.rate_storage`; Redis or memory by setting).
A request is admitted or refused before its body is read (`Admission`): its request is
counted, and it is refused if the key is over its requests per minute, or has spent its
tokens for this minute or its budget for this period. Tokens are known only once an answer
ends; they are counted then, off the request path (`spend`), so an answer under way always
finishes and the next request is refused.

Answers carry OpenAI's `x-ratelimit-*` headers; a refusal is a 429 with `Retry-After`
(`RateLimited`), so the official clients wait and retry by themselves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from limits import RateLimitItem, RateLimitItemPerDay, RateLimitItemPerMinute, WindowStats
from limits.errors import StorageError
from limits.storage import MemoryStorage, Storage
from limits.strategies import FixedWindowRateLimiter

from lorastack.keys import KeyLimits, budget_window
from lorastack.serve.errors import EngineUnavailable, RateLimited
from lorastack.serve.keys import ClientKey
from lorastack.usage import UsageEvent

logger = logging.getLogger(__name__)


class KeyLimiter:
    """Admits requests and counts tokens against each key's `KeyLimits`."""

    def __init__(self, storage: Storage, *, clock: Callable[[], float] = time.time) -> None:
        self._limiter = FixedWindowRateLimiter(storage)
        self._clock = clock
        # Counting an answer's tokens must not hold up the event loop when the counters
        # are in a database or Redis: one thread does it, in order.
        self._remote = not isinstance(storage, MemoryStorage)
        self._spender = ThreadPoolExecutor(1, "lorastack-spend") if self._remote else None

    async def admit(self, key: ClientKey | None) -> dict[str, str]:
        """Count the request; raise `RateLimited` if the key is over a limit. Returns the
        `x-ratelimit-*` headers for the answer."""
        if key is None or not key.limits.any:
            return {}
        if self._remote:
            return await asyncio.to_thread(self._admit, key.name, key.limits)
        return self._admit(key.name, key.limits)

    def spend_later(self, key: ClientKey | None, tokens: int) -> None:
        """Count an answer's tokens against the key's per-minute and budget limits."""
        if key is None or tokens <= 0 or not (key.limits.tpm or key.limits.budget_tokens):
            return
        if self._spender is None:
            self._spend(key.name, key.limits, tokens)
        else:
            self._spender.submit(self._spend, key.name, key.limits, tokens)

    def flush(self) -> None:
        """Wait until the tokens of every answer so far are counted."""
        if self._spender is not None:
            self._spender.submit(_nothing).result()

    def close(self) -> None:
        if self._spender is not None:
            self._spender.shutdown(wait=True)

    def _admit(self, name: str, limits: KeyLimits) -> dict[str, str]:
        try:
            return self._check(name, limits)
        except StorageError as error:
            # Fail closed: a key with limits is not let through uncounted.
            logger.warning("rate limits unavailable: %s", error)
            raise EngineUnavailable(
                "the gateway cannot check this key's limits now; try again",
                code="limits_unavailable",
            ) from None

    def _check(self, name: str, limits: KeyLimits) -> dict[str, str]:
        now = self._clock()
        headers: dict[str, str] = {}
        item: RateLimitItem
        if limits.rpm is not None:
            item = RateLimitItemPerMinute(limits.rpm)
            allowed, stats = self._window(item, ("rpm", name), hit=True)
            reset_s = _headers(headers, "requests", item, stats, now)
            if not allowed:
                raise RateLimited(
                    f"rate limit reached for key {name}: {limits.rpm} requests per minute",
                    reset_s,
                    code="rate_limit_exceeded",
                    limit_headers=headers,
                )
        if limits.tpm is not None:
            item = RateLimitItemPerMinute(limits.tpm)
            _, stats = self._window(item, ("tpm", name))
            reset_s = _headers(headers, "tokens", item, stats, now)
            if stats.remaining <= 0:
                raise RateLimited(
                    f"rate limit reached for key {name}: {limits.tpm} tokens per minute",
                    reset_s,
                    code="rate_limit_exceeded",
                    limit_headers=headers,
                )
        if limits.budget_tokens is not None and limits.budget_period is not None:
            window = budget_window(limits.budget_period, datetime.fromtimestamp(now, UTC))
            item = _budget_item(limits.budget_tokens, window.ends_at, now)
            _, stats = self._window(item, ("budget", name, window.label))
            headers["x-lorastack-budget-remaining"] = str(stats.remaining)
            if stats.remaining <= 0:
                raise RateLimited(
                    f"key {name} has used its budget of {limits.budget_tokens} tokens this "
                    f"{limits.budget_period}; it renews at {window.ends_at.isoformat()}",
                    window.ends_at.timestamp() - now,
                    code="insufficient_quota",
                    retry=False,
                    limit_headers=headers,
                )
        return headers

    def _window(
        self, item: RateLimitItem, identifiers: tuple[str, ...], *, hit: bool = False
    ) -> tuple[bool, WindowStats]:
        """Count a request in the window (`hit`) or only read it: whether it is within the
        limit, and the window's reset time and what remains. A storage that reads a
        window's count and end in one statement (the database's) is asked once; `limits`'
        own API asks twice more for the stats."""
        storage = self._limiter.storage
        if isinstance(storage, WindowReads):
            key = item.key_for(*identifiers)
            if hit:
                count, ends = storage.hit_window(key, item.get_expiry())
            else:
                count, ends = storage.window(key)
            return count <= item.amount, WindowStats(ends, max(0, item.amount - count))
        allowed = self._limiter.hit(item, *identifiers) if hit else True
        return allowed, self._limiter.get_window_stats(item, *identifiers)

    def _spend(self, name: str, limits: KeyLimits, tokens: int) -> None:
        now = self._clock()
        try:
            if limits.tpm is not None:
                self._limiter.hit(RateLimitItemPerMinute(limits.tpm), "tpm", name, cost=tokens)
            if limits.budget_tokens is not None and limits.budget_period is not None:
                window = budget_window(limits.budget_period, datetime.fromtimestamp(now, UTC))
                item = _budget_item(limits.budget_tokens, window.ends_at, now)
                self._limiter.hit(item, "budget", name, window.label, cost=tokens)
        except StorageError as error:
            logger.warning("tokens of key %s were not counted: %s", name, error)


@runtime_checkable
class WindowReads(Protocol):
    """A storage that returns a window's count with its end (Unix time) in one call."""

    def hit_window(self, key: str, expiry: int, amount: int = 1) -> tuple[int, float]: ...

    def window(self, key: str) -> tuple[int, float]: ...


def _headers(
    headers: dict[str, str], kind: str, item: RateLimitItem, stats: WindowStats, now: float
) -> float:
    """OpenAI's headers for one limit; returns the seconds until its window resets (never
    more than the window: a storage's clock, Redis's, may be a little ahead of ours)."""
    reset_s = min(max(0.0, stats.reset_time - now), float(item.get_expiry()))
    headers[f"x-ratelimit-limit-{kind}"] = str(item.amount)
    headers[f"x-ratelimit-remaining-{kind}"] = str(stats.remaining)
    headers[f"x-ratelimit-reset-{kind}"] = openai_duration(reset_s)
    return reset_s


def _budget_item(tokens: int, ends_at: datetime, now: float) -> RateLimitItem:
    """A window that outlives the calendar period it counts (its label is in the key):
    the counter of the next period is another counter, starting from zero."""
    days = int((ends_at.timestamp() - now) // 86_400) + 2
    return RateLimitItemPerDay(tokens, days)


def openai_duration(seconds: float) -> str:
    """A reset time as OpenAI writes it: `20ms`, `1s`, `6m0s`, `1h2m3s`."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


class DomainCaps:
    """At most N requests of one domain in flight on this gateway (429 above)."""

    def __init__(self, default: int | None, per_domain: Mapping[str, int]) -> None:
        self._default = default
        self._caps = dict(per_domain)
        self._in_flight: Counter[str] = Counter()

    def enter(self, domain: str) -> Callable[[], None]:
        """Take a place for a request of `domain`; returns what gives it back (once)."""
        cap = self._caps.get(domain, self._default)
        if cap is None:
            return _nothing
        if self._in_flight[domain] >= cap:
            raise RateLimited(
                f"{domain} has {cap} requests in flight, its most; try again shortly",
                1.0,
                code="domain_busy",
            )
        self._in_flight[domain] += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._in_flight[domain] -= 1

        return release

    def in_flight(self, domain: str) -> int:
        return self._in_flight[domain]


def _nothing() -> None:
    return None


def usage_spender(
    limiter: KeyLimiter, lookup: Callable[[str], ClientKey | None]
) -> Callable[[UsageEvent], None]:
    """A usage sink (serve/call.py) that counts each answer's tokens against its key."""

    def spend(event: UsageEvent) -> None:
        if event.key_name is not None:
            limiter.spend_later(lookup(event.key_name), event.total_tokens)

    return spend
