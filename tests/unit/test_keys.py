"""Managed keys: their limits and periods, the database that keeps them, `lorastack keys`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from lorastack.db import make_engine
from lorastack.db.audit_store import SqlAuditLog
from lorastack.db.key_store import SqlKeyStore
from lorastack.errors import KeyNameTaken, KeyNotFound
from lorastack.keys import (
    KeyLimits,
    budget_window,
    key_sha256,
    parse_domains,
    parse_expiry,
)

NOW = datetime(2026, 12, 3, 10, 30, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return make_engine(f"sqlite:///{tmp_path / 'keys.db'}")


@pytest.fixture
def keys(engine: Engine) -> SqlKeyStore:
    return SqlKeyStore(engine)


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"rpm": 0}, "rpm must be at least 1"),
        ({"tpm": -5}, "tpm must be at least 1"),
        ({"budget_tokens": 100}, "needs both its tokens and its period"),
        ({"budget_period": "month"}, "needs both its tokens and its period"),
        ({"budget_tokens": 100, "budget_period": "year"}, "day, week, month"),
    ],
)
def test_bad_limits_say_why(limits: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KeyLimits(**limits)


@pytest.mark.parametrize(
    ("period", "now", "label", "ends"),
    [
        ("day", NOW, "2026-12-03", datetime(2026, 12, 4, tzinfo=UTC)),
        ("week", NOW, "2026-W49", datetime(2026, 12, 7, tzinfo=UTC)),  # a Thursday
        ("month", NOW, "2026-12", datetime(2027, 1, 1, tzinfo=UTC)),
        (
            "month",
            datetime(2028, 2, 29, 23, 59, tzinfo=UTC),
            "2028-02",
            datetime(2028, 3, 1, tzinfo=UTC),
        ),
        ("week", datetime(2027, 1, 1, tzinfo=UTC), "2026-W53", datetime(2027, 1, 4, tzinfo=UTC)),
    ],
)
def test_budget_periods_are_calendar_periods_in_utc(
    period: Any, now: datetime, label: str, ends: datetime
) -> None:
    window = budget_window(period, now)
    assert (window.label, window.ends_at) == (label, ends)


def test_the_next_period_is_another_window() -> None:
    this = budget_window("month", NOW)
    assert budget_window("month", this.ends_at).label == "2027-01"
    assert budget_window("month", this.ends_at - timedelta(microseconds=1)).label == "2026-12"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", NOW + timedelta(days=30)),
        ("12h", NOW + timedelta(hours=12)),
        ("2027-01-31", datetime(2027, 2, 1, tzinfo=UTC)),  # through that day
        ("2027-01-31T18:00+01:00", datetime(2027, 1, 31, 17, tzinfo=UTC)),
    ],
)
def test_expiry_as_a_date_a_time_or_a_span(text: str, expected: datetime) -> None:
    assert parse_expiry(text, NOW) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2020-01-01", "in the past"),
        ("2027-01-31T18:00", "give the time's zone"),
        ("next week", "not a date, time or span"),
    ],
)
def test_bad_expiry_says_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_expiry(text, NOW)


def test_domains_are_a_comma_list() -> None:
    assert parse_domains("coffee-shop, ledger-desk") == ("coffee-shop", "ledger-desk")
    with pytest.raises(ValueError, match="at least one domain"):
        parse_domains(" , ")


def test_a_key_is_stored_as_its_hash_with_its_limits(keys: SqlKeyStore, engine: Engine) -> None:
    limits = KeyLimits(rpm=60, tpm=10_000, budget_tokens=1_000_000, budget_period="month")
    key, secret = keys.create(
        "team-a", domains=("coffee-shop",), limits=limits, expires_at=NOW + timedelta(days=9)
    )
    assert secret.startswith("lsk-") and len(secret) > 40
    assert (key.key_sha256, key.hint) == (key_sha256(secret), secret[-4:])
    assert keys.get("team-a") == key
    assert key.limits == limits and key.domains == ("coffee-shop",)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT * FROM api_keys")).mappings().all()
    assert not any(secret in str(value) for value in rows[0].values())


def test_names_are_unique_and_plain(keys: SqlKeyStore) -> None:
    keys.create("team-a")
    with pytest.raises(KeyNameTaken, match="team-a"):
        keys.create("team-a")
    with pytest.raises(ValueError, match="invalid key name"):
        keys.create("team a")


def test_revoke_and_rotate(keys: SqlKeyStore) -> None:
    first, old = keys.create("team-a", limits=KeyLimits(rpm=5))
    rotated, new = keys.rotate("team-a")
    assert new != old and rotated.key_sha256 == key_sha256(new)
    assert rotated.limits == first.limits and rotated.rotated_at is not None
    revoked = keys.revoke("team-a")
    assert revoked.revoked_at is not None
    assert keys.list() == [] and [k.name for k in keys.list(include_revoked=True)] == ["team-a"]
    with pytest.raises(KeyNotFound):
        keys.revoke("team-a")
    with pytest.raises(KeyNotFound):
        keys.rotate("nobody")


def test_last_use_is_recorded_in_batches(keys: SqlKeyStore) -> None:
    keys.create("team-a")
    keys.touch({"team-a": NOW})
    assert keys.get("team-a").last_used_at == NOW


def test_the_cli_prints_a_key_once_and_audits_every_change(
    cli: Callable[..., Any], home: Path
) -> None:
    created = cli("keys", "create", "--name", "team-a", "--rpm", "60", "--domains", "coffee-shop")
    assert created.code == 0, created.err
    secret = created.out.strip()
    assert secret.startswith("lsk-") and "60 rpm" in created.err
    listed = cli("keys", "list")
    assert "team-a" in listed.out and f"...{secret[-4:]}" in listed.out
    assert secret not in listed.out
    rotated = cli("keys", "rotate", "team-a")
    assert rotated.code == 0 and rotated.out.strip() != secret
    assert cli("keys", "revoke", "team-a").code == 0
    assert "team-a" not in cli("keys", "list").out
    assert "revoked" in cli("keys", "list", "--all").out
    engine = make_engine(f"sqlite:///{home / 'lorastack.db'}")
    events = SqlAuditLog(engine).events()
    assert [(e.action, e.target) for e in reversed(events)] == [
        ("keys.create", "team-a"),
        ("keys.rotate", "team-a"),
        ("keys.revoke", "team-a"),
    ]
    assert all(e.actor.startswith("cli:") for e in events)
    assert not any(secret in str(e.details) for e in events)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", "a b"], "invalid key name"),
        (["--name", "x", "--expires", "2020-01-01"], "in the past"),
        (["--name", "x", "--period", "year", "--budget", "5"], "one of day, week, month"),
        (["--name", "x", "--rpm", "0"], "--rpm"),
    ],
)
def test_cli_mistakes_are_one_clear_line(
    cli: Callable[..., Any], args: list[str], message: str
) -> None:
    result = cli("keys", "create", *args)
    assert result.code == 2 and message in result.err and "Traceback" not in result.err


def test_cli_unknown_and_taken_names(cli: Callable[..., Any]) -> None:
    assert cli("keys", "create", "--name", "team-a").code == 0
    taken = cli("keys", "create", "--name", "team-a")
    assert taken.code == 1 and "exists already" in taken.err
    missing = cli("keys", "revoke", "nobody")
    assert missing.code == 1 and "no live key named 'nobody'" in missing.err
