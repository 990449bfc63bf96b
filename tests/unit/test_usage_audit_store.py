"""The SQL usage store and audit log, on SQLite and on a real PostgreSQL server.

PostgreSQL runs as a throwaway cluster (tests/postgres.py): skipped without the server
binaries, failed instead under CI (TESTS_REQUIRE_POSTGRES).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from lorastack.audit import AuditEvent, AuditLog, admin_key_actor_of, cli_actor
from lorastack.db import SqlAuditLog, SqlUsageStore, make_engine
from lorastack.errors import DatabaseError
from lorastack.periods import parse_since
from lorastack.usage import UsageEvent, UsageStore, UsageTotals
from tests.servers import free_port

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
# A usage event's fields after its time.
_REST = ("a", None, "coffee", 1, "/v1/chat/completions", 1, 1, 0.1)


def usage(
    minutes: float = 0,
    *,
    key: str | None = "support-widget",
    model: str = "coffee",
    version: int | None = 1,
    prompt: int = 10,
    completion: int = 5,
    latency: float = 0.5,
) -> UsageEvent:
    return UsageEvent(
        created_at=T0 + timedelta(minutes=minutes),
        key_name=key,
        key_hash="ab" * 32 if key else None,
        model=model,
        version=version,
        endpoint="/v1/chat/completions",
        prompt_tokens=prompt,
        completion_tokens=completion,
        latency_s=latency,
    )


def audited(
    minutes: float, action: str, target: str = "coffee@v2", **details: object
) -> AuditEvent:
    return AuditEvent(T0 + timedelta(minutes=minutes), "cli:ops", action, target, dict(details))


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'lorastack.db'}"
    else:  # asked for here: the SQLite cases must not need the server
        url = request.getfixturevalue("postgres_url")
    made = make_engine(url)
    yield made
    made.dispose()


@pytest.fixture
def store(engine: Engine) -> SqlUsageStore:
    return SqlUsageStore(engine)


@pytest.fixture
def log(engine: Engine) -> SqlAuditLog:
    return SqlAuditLog(engine)


def test_they_implement_the_protocols(store: SqlUsageStore, log: SqlAuditLog) -> None:
    usage_store: UsageStore = store
    audit_log: AuditLog = log
    assert usage_store is store and audit_log is log


# -------------------------------------------------------------------- usage


def test_usage_is_summed_by_key_domain_and_version(store: SqlUsageStore) -> None:
    store.add_usage(
        [
            usage(0, version=1, prompt=10, completion=5, latency=1.0),
            usage(1, version=2, prompt=20, completion=10, latency=3.0),
            usage(2, key="batch-job", version=2, prompt=100, completion=50, latency=2.0),
            usage(3, key=None, model="tiny", version=None, prompt=1, completion=1, latency=0.1),
        ]
    )
    store.add_usage([])  # an empty batch: nothing
    since = T0 - timedelta(days=1)

    by_key = store.summary(since, "key")
    assert [(t.label("key"), t.requests, t.total_tokens) for t in by_key] == [
        ("batch-job", 1, 150),
        ("support-widget", 2, 45),
        ("(no key)", 1, 2),
    ]
    widget = by_key[1]
    assert (widget.prompt_tokens, widget.completion_tokens) == (30, 15)
    assert widget.mean_latency_s == pytest.approx(2.0)
    assert (widget.model, widget.version, widget.day) == (None, None, None)

    by_domain = store.summary(since, "domain")
    assert [(t.label("domain"), t.requests, t.total_tokens) for t in by_domain] == [
        ("coffee", 3, 195),
        ("tiny", 1, 2),
    ]
    by_version = store.summary(since, "version")
    assert [(t.label("version"), t.requests, t.total_tokens) for t in by_version] == [
        ("coffee@v2", 2, 180),
        ("coffee@v1", 1, 15),
        ("tiny", 1, 2),  # the base model: no version
    ]
    assert by_version[0] == UsageTotals(None, "coffee", 2, None, 2, 120, 60, 2.5)


def test_usage_since_is_inclusive(store: SqlUsageStore) -> None:
    store.add_usage([usage(0), usage(10), usage(20)])
    assert store.summary(T0 + timedelta(minutes=10), "domain")[0].requests == 2
    assert store.summary(T0 + timedelta(minutes=21), "domain") == []
    # Another zone, the same moment.
    same = (T0 + timedelta(minutes=10)).astimezone(timezone(timedelta(hours=-5)))
    assert store.summary(same, "domain")[0].requests == 2


def test_usage_per_day_is_per_utc_day_oldest_first(store: SqlUsageStore) -> None:
    late = datetime(2026, 11, 1, 23, 30, tzinfo=UTC)
    store.add_usage(
        [
            # 23:30 UTC is already the 2nd in Tokyo, and still the 1st in UTC.
            UsageEvent(late, "a", None, "coffee", 1, "/v1/completions", 1, 1, 0.1),
            UsageEvent(late + timedelta(hours=1), "a", None, "coffee", 1, "/v1/x", 2, 2, 0.3),
            UsageEvent(late + timedelta(hours=2), "a", None, "ledger", 1, "/v1/x", 9, 9, 0.5),
        ]
    )
    daily = store.summary(late - timedelta(days=1), "domain", daily=True)
    assert [(t.day, t.label("domain"), t.total_tokens) for t in daily] == [
        (date(2026, 11, 1), "coffee", 2),
        (date(2026, 11, 2), "ledger", 18),
        (date(2026, 11, 2), "coffee", 4),
    ]


def test_usage_days_are_utc_whatever_the_sessions_zone(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no session time zone")
    tokyo = sa.create_engine(engine.url, connect_args={"options": "-c TimeZone=Asia/Tokyo"})
    try:
        store = SqlUsageStore(tokyo)
        store.add_usage([UsageEvent(datetime(2026, 11, 1, 23, 30, tzinfo=UTC), *_REST)])
        [only] = store.summary(T0 - timedelta(days=1), "domain", daily=True)
        assert only.day == date(2026, 11, 1)
    finally:
        tokyo.dispose()


def test_usage_purge_removes_what_is_older(store: SqlUsageStore) -> None:
    store.add_usage([usage(0), usage(10), usage(20)])
    assert store.purge(T0 + timedelta(minutes=10)) == 1
    assert store.purge(T0 + timedelta(minutes=10)) == 0
    assert store.summary(T0 - timedelta(days=1), "domain")[0].requests == 2


def test_usage_refuses_naive_datetimes_and_unknown_groupings(store: SqlUsageStore) -> None:
    naive = datetime(2026, 11, 1, 9, 0)
    with pytest.raises(ValueError, match="naive"):
        store.add_usage([UsageEvent(naive, *_REST)])
    with pytest.raises(ValueError, match="naive"):
        store.summary(naive, "domain")
    with pytest.raises(ValueError, match="naive"):
        store.purge(naive)
    with pytest.raises(ValueError, match="key, domain or version"):
        store.summary(T0, "model")  # type: ignore[arg-type]


# -------------------------------------------------------------------- audit


def test_audit_events_come_back_newest_first(log: SqlAuditLog) -> None:
    first = audited(0, "adapters.promote", alias="prod", note="Ünïcödé ☕")
    log.record(first)
    log.record(audited(5, "keys.create", "support-widget", domains=["coffee"]))
    log.record(audited(10, "adapters.rollback", alias="prod"))
    assert [e.action for e in log.events()] == [
        "adapters.rollback",
        "keys.create",
        "adapters.promote",
    ]
    assert log.events()[-1] == first
    assert [e.action for e in log.events(limit=1)] == ["adapters.rollback"]
    since = log.events(since=T0 + timedelta(minutes=5))
    assert [e.action for e in since] == ["adapters.rollback", "keys.create"]


def test_audit_filters_one_action_or_a_family(log: SqlAuditLog) -> None:
    for minutes, action in enumerate(
        ["adapters.promote", "adapters.rollback", "keys.create", "adapters_x.promote", "a_b.c"]
    ):
        log.record(audited(minutes, action))
    assert [e.action for e in log.events(action="adapters.promote")] == ["adapters.promote"]
    assert [e.action for e in log.events(action="adapters")] == [
        "adapters.rollback",
        "adapters.promote",
    ]
    assert [e.action for e in log.events(action="keys")] == ["keys.create"]
    assert log.events(action="a%") == []  # a wildcard is a character like any other
    assert log.events(action="axb") == []
    assert [e.action for e in log.events(action="a_b")] == ["a_b.c"]


def test_audit_refuses_naive_datetimes_and_no_limit(log: SqlAuditLog) -> None:
    with pytest.raises(ValueError, match="naive"):
        log.record(AuditEvent(datetime(2026, 11, 1), "cli:ops", "adapters.promote", "x"))
    with pytest.raises(ValueError, match="naive"):
        log.events(since=datetime(2026, 11, 1))
    with pytest.raises(ValueError, match="at least 1"):
        log.events(limit=0)


def test_actors_name_the_credential_never_the_credential() -> None:
    actor = admin_key_actor_of("admin-key-0123456789abcdef")
    assert actor.startswith("admin-key:") and len(actor) == len("admin-key:") + 12
    assert "0123456789abcdef" not in actor
    assert cli_actor().startswith("cli:")


def test_an_unreachable_database_is_a_database_error() -> None:
    engine = make_engine(f"postgresql://gw:pw@127.0.0.1:{free_port()}/x", connect_timeout_s=2)
    with pytest.raises(DatabaseError, match="gw:\\*\\*\\*@"):
        SqlAuditLog(engine)
    engine.dispose()


# -------------------------------------------------------------------- --since


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", datetime(2026, 12, 10, 11, 30, tzinfo=UTC)),
        ("24h", datetime(2026, 12, 9, 12, tzinfo=UTC)),
        ("7d", datetime(2026, 12, 3, 12, tzinfo=UTC)),
        ("2w", datetime(2026, 11, 26, 12, tzinfo=UTC)),
        (" 2026-12-01 ", datetime(2026, 12, 1, tzinfo=UTC)),
        ("2026-12-01T09:30:00+01:00", datetime(2026, 12, 1, 8, 30, tzinfo=UTC)),
    ],
)
def test_since_accepts_ages_dates_and_datetimes(text: str, expected: datetime) -> None:
    assert parse_since(text, datetime(2026, 12, 10, 12, tzinfo=UTC)) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "7 days", "-3d", "3x", "2026-13-01"])
def test_since_refuses_the_rest_saying_what_it_accepts(text: str) -> None:
    with pytest.raises(ValueError, match="expected a date"):
        parse_since(text)


def test_since_too_far_back_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="before the year 1"):
        parse_since("999999999d")
