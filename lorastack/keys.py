"""Managed client keys: each with a name, the domains it may use, and its limits.

`lorastack keys create` (or `POST /admin/keys`) makes a key and prints it once; the
database keeps its sha256 and its last four characters, never the key. Gateways sharing
the database accept it within `keys_refresh_s`; revoking or rotating it takes effect the
same way. Limits are enforced by the gateway (serve/rate_limits.py): requests and tokens
per minute, and a token budget per calendar period (UTC).
"""

from __future__ import annotations

import calendar
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

Period = Literal["day", "week", "month"]
PERIODS: tuple[str, ...] = get_args(Period)
ALL_DOMAINS = "*"
KEY_PREFIX = "lsk-"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def new_secret() -> str:
    """A new client key: 256 random bits, URL-safe, with a prefix that secret scanners
    and people can recognise."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def check_key_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"invalid key name {name!r}: 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class KeyLimits:
    """What a key may use; None: no limit of that kind."""

    rpm: int | None = None
    """Requests per minute."""
    tpm: int | None = None
    """Tokens (prompt + completion) per minute."""
    budget_tokens: int | None = None
    """Tokens per `budget_period`; an answer under way when it runs out still finishes."""
    budget_period: Period | None = None

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm", "budget_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if (self.budget_tokens is None) != (self.budget_period is None):
            raise ValueError("a budget needs both its tokens and its period")
        if self.budget_period is not None and self.budget_period not in PERIODS:
            raise ValueError(f"budget period must be one of {', '.join(PERIODS)}")

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.rpm, self.tpm, self.budget_tokens))

    @property
    def described(self) -> str:
        return describe_limits(self.rpm, self.tpm, self.budget_tokens, self.budget_period)


def describe_limits(
    rpm: int | None, tpm: int | None, budget: int | None, period: str | None
) -> str:
    """Limits as `lorastack keys` and the UI word them (`60 rpm, 2000000 tokens/month`)."""
    parts = []
    if rpm:
        parts.append(f"{rpm} rpm")
    if tpm:
        parts.append(f"{tpm} tpm")
    if budget:
        parts.append(f"{budget} tokens/{period or 'month'}")
    return ", ".join(parts) or "no limits"


@dataclass(frozen=True)
class ManagedKey:
    """A key as the database keeps it: never the key itself."""

    name: str
    key_sha256: str
    hint: str
    """The key's last four characters."""
    domains: tuple[str, ...] = (ALL_DOMAINS,)
    limits: KeyLimits = field(default_factory=KeyLimits)
    expires_at: datetime | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    rotated_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def audit_details(self) -> dict[str, object]:
        """What the audit trail keeps of the key's settings, from the CLI or the API alike
        (never the key)."""
        return {
            "domains": list(self.domains),
            "rpm": self.limits.rpm,
            "tpm": self.limits.tpm,
            "budget": self.limits.budget_tokens,
            "period": self.limits.budget_period,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }


@dataclass(frozen=True)
class BudgetWindow:
    """One calendar period of a budget: its name (part of the counter's key) and its end."""

    label: str
    ends_at: datetime


def budget_window(period: Period, now: datetime) -> BudgetWindow:
    """The calendar period (UTC) that `now` falls in: a day, an ISO week, a month."""
    now = now.astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return BudgetWindow(day.strftime("%Y-%m-%d"), day + timedelta(days=1))
    if period == "week":
        start = day - timedelta(days=day.weekday())
        year, week, _ = start.isocalendar()
        return BudgetWindow(f"{year}-W{week:02d}", start + timedelta(days=7))
    days = calendar.monthrange(now.year, now.month)[1]
    start = day.replace(day=1)
    return BudgetWindow(start.strftime("%Y-%m"), start + timedelta(days=days))


def parse_expiry(text: str, now: datetime) -> datetime:
    """`--expires`: a date (the key works through that day, UTC), a time with its zone, or a
    span from now (`30d`, `12h`). Raises ValueError for anything else or for the past."""
    text = text.strip()
    span = re.fullmatch(r"(\d+)([dh])", text)
    if span:
        amount = int(span.group(1))
        at = now + (timedelta(days=amount) if span.group(2) == "d" else timedelta(hours=amount))
    else:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"not a date, time or span: {text!r} (e.g. 2027-01-31, 2027-01-31T18:00Z, 30d)"
            ) from None
        if len(text) == 10:  # a date alone: through the end of that day
            at = parsed.replace(tzinfo=UTC) + timedelta(days=1)
        elif parsed.tzinfo is None:
            raise ValueError(f"give the time's zone: {text!r} (e.g. {text}Z)")
        else:
            at = parsed.astimezone(UTC)
    if at <= now:
        raise ValueError(f"{text!r} is in the past")
    return at


def parse_domains(text: str) -> tuple[str, ...]:
    """`--domains a,b`: the domains a key may use; `*` (the default) for every one."""
    domains = tuple(d.strip() for d in text.split(",") if d.strip())
    if not domains:
        raise ValueError("give at least one domain, or * for every domain")
    return domains
