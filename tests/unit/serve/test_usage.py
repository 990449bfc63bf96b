"""Usage: every answer's tokens and latency recorded off the request path, by key, domain
and version; the recorder's queue on its own; `GET /admin/usage`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from lorastack.db import SqlFeedbackStore
from lorastack.errors import DatabaseError
from lorastack.feedback import key_hash
from lorastack.serve.metrics import Metrics
from lorastack.serve.usage import UsageRecorder
from lorastack.usage import UsageEvent, UsageGrouping, UsageTotals
from tests.unit.serve.conftest import ADMIN_KEY, Running

KEY = "sk-usage-0123456789abcdef"
USER = {"authorization": f"Bearer {KEY}"}
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


class MemoryUsageStore:
    """The recorder's store, scriptable: `fail` (the database is down), `hold()` (slow)."""

    def __init__(self) -> None:
        self.events: list[UsageEvent] = []
        self.batches: list[int] = []
        self.fail: BaseException | None = None
        self.writing = threading.Event()  # a write has started
        self._open = threading.Event()
        self._open.set()

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def add_usage(self, events: Sequence[UsageEvent]) -> None:
        self.writing.set()
        self._open.wait(timeout=30)
        if self.fail is not None:
            raise self.fail
        self.batches.append(len(events))
        self.events.extend(events)

    def summary(
        self, since: datetime, by: UsageGrouping, *, daily: bool = False
    ) -> list[UsageTotals]:
        raise NotImplementedError

    def purge(self, before: datetime) -> int:
        kept = [e for e in self.events if e.created_at >= before]
        removed, self.events = len(self.events) - len(kept), kept
        return removed


def _event(number: int = 0) -> UsageEvent:
    return UsageEvent(datetime.now(UTC), "k", None, "coffee", 1, "/v1/x", number, 1, 0.1)


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


# -- the recorder on its own ------------------------------------------------------------


def test_the_recorder_batches_and_close_writes_what_is_queued() -> None:
    store, metrics = MemoryUsageStore(), Metrics()
    recorder = UsageRecorder(store, metrics, batch_size=4, batch_wait_s=60)
    for number in range(10):
        recorder.submit(_event(number))
    assert wait_for(lambda: store.batches == [4, 4])  # full batches go at once
    recorder.close()  # the rest is written, not dropped
    assert store.batches == [4, 4, 2]
    assert [e.prompt_tokens for e in store.events] == list(range(10))
    assert _sample(metrics, "lorastack_usage_written_total") == 10
    recorder.submit(_event())  # after close: counted, never raised
    assert _sample(metrics, "lorastack_usage_dropped_total", reason="shutdown") == 1


def test_a_full_queue_drops_and_counts_never_waits(caplog: pytest.LogCaptureFixture) -> None:
    store, metrics = MemoryUsageStore(), Metrics()
    recorder = UsageRecorder(store, metrics, max_pending=2, batch_size=1, batch_wait_s=0)
    store.hold()  # the database takes its time
    recorder.submit(_event(0))
    assert store.writing.wait(5)  # the writer holds the first, the queue is empty
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="lorastack.serve.usage"):
        for number in range(1, 6):
            recorder.submit(_event(number))
    assert time.monotonic() - started < 1.0
    assert _sample(metrics, "lorastack_usage_dropped_total", reason="queue_full") == 3
    assert sum("newer ones are dropped" in r.getMessage() for r in caplog.records) == 1
    store.release()
    recorder.close()
    assert [e.prompt_tokens for e in store.events] == [0, 1, 2]


def test_a_database_that_fails_costs_the_records_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, metrics = MemoryUsageStore(), Metrics()
    recorder = UsageRecorder(store, metrics, batch_size=1, batch_wait_s=0)
    store.fail = DatabaseError("database down: INSERT ... ('secret-row')")
    with caplog.at_level(logging.WARNING, logger="lorastack.serve.usage"):
        for number in range(3):
            recorder.submit(_event(number))
        lost = {"reason": "store_error"}
        assert wait_for(lambda: _sample(metrics, "lorastack_usage_dropped_total", **lost) == 3)
        failures = [r for r in caplog.records if "the database failed" in r.getMessage()]
        assert len(failures) == 1 and "DatabaseError" in failures[0].getMessage()
        assert "secret-row" not in caplog.text  # the type only
        store.fail = None
        recorder.submit(_event(9))
        assert wait_for(lambda: len(store.events) == 1)
        assert wait_for(lambda: "3 usage records were lost" in caplog.text)
    recorder.close()


def test_usage_past_its_retention_is_purged_between_batches() -> None:
    store, metrics = MemoryUsageStore(), Metrics()
    old = UsageEvent(
        datetime.now(UTC) - timedelta(days=31), "k", None, "coffee", 1, "/v1/x", 7, 1, 0.1
    )
    store.events.append(old)
    recorder = UsageRecorder(
        store, metrics, batch_size=1, batch_wait_s=0, retention_days=30, purge_every_s=0.05
    )
    recorder.submit(_event(1))
    assert wait_for(lambda: [e.prompt_tokens for e in store.events] == [1])
    recorder.close()

    kept = MemoryUsageStore()
    kept.events.append(old)
    recorder = UsageRecorder(kept, metrics, batch_size=1, batch_wait_s=0)  # no retention
    recorder.submit(_event(2))
    assert wait_for(lambda: len(kept.events) == 2)
    recorder.close()
    assert [e.prompt_tokens for e in kept.events] == [7, 2]


def test_close_gives_up_on_a_database_that_hangs() -> None:
    store, metrics = MemoryUsageStore(), Metrics()
    recorder = UsageRecorder(store, metrics, batch_size=1, batch_wait_s=0)
    store.hold()
    for number in range(3):
        recorder.submit(_event(number))
    assert store.writing.wait(5)
    recorder.close(timeout_s=0.2)  # one batch is in the database's hands, two still queued
    assert _sample(metrics, "lorastack_usage_dropped_total", reason="shutdown") == 2
    store.release()


# -- through the gateway ------------------------------------------------------------------


@pytest.fixture
def gw(database: SqlFeedbackStore, start_gateway: Callable[..., Running]) -> Running:
    return start_gateway(feedback_store=database, api_keys=[KEY])


def _ask(gw: Running, model: str, content: str = "Oat milk?") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    return gw.client.post("/v1/chat/completions", json=body, headers=USER)


def _recorded(gw: Running, count: int, by: UsageGrouping = "version") -> list[UsageTotals]:
    """The usage once `count` answers are in the database."""
    assert gw.gateway.usage is not None
    store = gw.gateway.usage.store

    def answers() -> int:
        return sum(t.requests for t in store.summary(LONG_AGO, "domain"))

    assert wait_for(lambda: answers() >= count)
    assert answers() == count
    return store.summary(LONG_AGO, by)


def test_an_answer_records_its_key_domain_version_and_tokens(
    gw: Running, database: SqlFeedbackStore
) -> None:
    answer = _ask(gw, "coffee-shop")
    assert answer.status_code == 200, answer.text
    [only] = _recorded(gw, 1, "key")
    tokens = answer.json()["usage"]
    assert only.key_name == "key-1"  # the settings' first key
    assert (only.prompt_tokens, only.completion_tokens) == (
        tokens["prompt_tokens"],
        tokens["completion_tokens"],
    )
    assert only.prompt_tokens > 0 and only.completion_tokens > 0
    assert only.mean_latency_s > 0
    [version] = gw.gateway.usage.store.summary(LONG_AGO, "version")  # type: ignore[union-attr]
    assert version.label("version") == "coffee-shop@v1"
    with database.engine.connect() as connection:
        row = connection.execute(sa.text("SELECT * FROM usage")).mappings().one()
    assert row["key_hash"] == key_hash(KEY)
    assert row["endpoint"] == "/v1/chat/completions"
    assert KEY not in str(dict(row))  # the key's name and hash, never the key


def test_streams_the_base_model_and_completions_are_recorded_too(gw: Running) -> None:
    body = {"model": "ledger-desk", "messages": [{"role": "user", "content": "Hello"}]}
    streamed = gw.client.post("/v1/chat/completions", json={**body, "stream": True}, headers=USER)
    assert streamed.status_code == 200 and "[DONE]" in streamed.text
    base = gw.client.post("/v1/completions", json={"model": "tiny", "prompt": "Hi"}, headers=USER)
    assert base.status_code == 200
    refused = gw.client.post(
        "/v1/chat/completions", json={**body, "model": "no-such-domain"}, headers=USER
    )
    assert refused.status_code == 404  # no answer, no usage
    recorded = {t.label("version"): t for t in _recorded(gw, 2)}
    assert set(recorded) == {"ledger-desk@v1", "tiny"}
    # A stream's usage comes from the engine even when the client did not ask for it.
    assert recorded["ledger-desk@v1"].completion_tokens > 0
    assert recorded["tiny"].version is None


def test_usage_is_recorded_with_the_guardrails_off(
    database: SqlFeedbackStore, start_gateway: Callable[..., Running]
) -> None:
    gw = start_gateway(feedback_store=database, api_keys=[KEY], guardrails=False)
    assert gw.gateway.capture is None  # nothing would mask a captured text
    assert _ask(gw, "coffee-shop").status_code == 200
    assert [t.label("version") for t in _recorded(gw, 1)] == ["coffee-shop@v1"]


def test_a_gateway_without_a_database_records_nothing(gw_plain: Running) -> None:
    assert gw_plain.gateway.usage is None
    assert gw_plain.chat("coffee-shop", "hi").status_code == 200
    refused = gw_plain.client.get("/admin/usage", headers=ADMIN)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "database_unavailable"
    assert "no database" in refused.json()["error"]["message"]


@pytest.fixture
def gw_plain(start_gateway: Callable[..., Running]) -> Running:
    return start_gateway()


# -- GET /admin/usage ---------------------------------------------------------------------


def _usage(gw: Running, headers: dict[str, str] = ADMIN, **params: Any) -> httpx.Response:
    return gw.client.get("/admin/usage", params=params, headers=headers)


def test_the_usage_report_needs_the_admin_key(gw: Running) -> None:
    for headers in ({}, USER, {"authorization": "Bearer not-the-admin-key-000"}):
        refused = _usage(gw, headers)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_admin_key"


def test_the_usage_report_by_key_domain_and_version(gw: Running) -> None:
    for model in ("coffee-shop", "coffee-shop", "ledger-desk"):
        assert _ask(gw, model, "one two three").status_code == 200
    _recorded(gw, 3)
    by_domain = _usage(gw)
    assert by_domain.status_code == 200, by_domain.text
    report = by_domain.json()
    assert (report["by"], report["daily"]) == ("domain", False)
    assert datetime.fromisoformat(report["since"]) < datetime.now(UTC) - timedelta(days=6)
    coffee = report["groups"][0]
    assert coffee["domain"] == "coffee-shop" and coffee["requests"] == 2
    assert set(coffee) == {
        "key",
        "domain",
        "version",
        "day",
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "mean_latency_s",
    }
    assert coffee["total_tokens"] == coffee["prompt_tokens"] + coffee["completion_tokens"]
    by_key = _usage(gw, by="key", since="1h").json()["groups"]
    assert [(g["key"], g["requests"]) for g in by_key] == [("key-1", 3)]
    daily = _usage(gw, by="version", daily="true", since="2026-01-01").json()["groups"]
    assert {(g["domain"], g["version"]) for g in daily} == {("coffee-shop", 1), ("ledger-desk", 1)}
    assert all(g["day"] == datetime.now(UTC).date().isoformat() for g in daily)
    assert _usage(gw, since="2999-01-01").json()["groups"] == []


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"since": "3x"}, "query.since"),
        ({"since": "yesterday"}, "query.since"),
        ({"by": "model"}, "query.by"),
    ],
)
def test_bad_parameters_are_400s_naming_them(
    gw: Running, params: dict[str, str], param: str
) -> None:
    refused = _usage(gw, **params)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        param,
        "invalid_value",
    )
    assert error["message"].startswith(f"{param}: ")


def test_a_database_that_fails_is_a_503(gw: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    assert gw.gateway.usage is not None

    def down(*_: Any, **__: Any) -> list[UsageTotals]:
        raise DatabaseError("database sqlite:///x: disk I/O error")

    monkeypatch.setattr(gw.gateway.usage.store, "summary", down)
    refused = _usage(gw)
    assert refused.status_code == 503
    assert refused.json()["error"] == {
        "message": "the database is unavailable; try again later",
        "type": "service_unavailable",
        "param": None,
        "code": "database_unavailable",
    }
