"""Each key's limits: requests and tokens per minute, budgets per period, domain caps; the
counters in memory and in the database; OpenAI's headers."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage, Storage
from limits.strategies import FixedWindowRateLimiter

from lorastack.db import make_engine
from lorastack.db.rate_storage import SqlRateStorage
from lorastack.keys import KeyLimits
from lorastack.serve.errors import EngineUnavailable, RateLimited
from lorastack.serve.keys import ClientKey
from lorastack.serve.rate_limits import DomainCaps, KeyLimiter, openai_duration

NOW = datetime(2026, 12, 31, 23, 59, 30, tzinfo=UTC).timestamp()


def _key(**limits: object) -> ClientKey:
    return ClientKey("team-a", b"\0" * 32, frozenset({"*"}), KeyLimits(**limits))  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "database"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "memory":
        return MemoryStorage()
    return SqlRateStorage(make_engine(f"sqlite:///{tmp_path / 'limits.db'}"))


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _admit(limiter: KeyLimiter, key: ClientKey | None) -> dict[str, str]:
    return asyncio.run(limiter.admit(key))


def test_requests_per_minute_under_at_and_over(storage: Storage) -> None:
    limiter = KeyLimiter(storage)
    key = _key(rpm=2)
    first = _admit(limiter, key)
    assert first["x-ratelimit-limit-requests"] == "2"
    assert first["x-ratelimit-remaining-requests"] == "1"
    assert first["x-ratelimit-reset-requests"].endswith("s")
    second = _admit(limiter, key)
    assert second["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(RateLimited) as refused:
        _admit(limiter, key)
    error = refused.value
    assert (error.status, error.type, error.code) == (
        429,
        "rate_limit_error",
        "rate_limit_exceeded",
    )
    assert "2 requests per minute" in str(error)
    assert 1 <= int(error.headers["Retry-After"]) <= 60
    assert int(error.headers["retry-after-ms"]) <= 60_000
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-should-retry" not in error.headers  # waiting helps: the client retries
    limiter.close()


def test_a_key_without_limits_is_not_counted(storage: Storage) -> None:
    limiter = KeyLimiter(storage)
    assert _admit(limiter, _key()) == {}
    assert _admit(limiter, None) == {}
    limiter.close()


def test_tokens_per_minute_refuse_the_request_after_the_one_that_spent_them(
    storage: Storage,
) -> None:
    limiter = KeyLimiter(storage)
    key = _key(tpm=100)
    headers = _admit(limiter, key)
    assert headers["x-ratelimit-remaining-tokens"] == "100"
    limiter.spend_later(key, 60)
    limiter.close()  # counted (the spender thread has finished)
    limiter = KeyLimiter(storage)
    assert (_admit(limiter, key))["x-ratelimit-remaining-tokens"] == "40"
    limiter.spend_later(key, 60)  # the answer under way finished: 120 of 100
    limiter.close()
    limiter = KeyLimiter(storage)
    with pytest.raises(RateLimited, match="100 tokens per minute") as refused:
        _admit(limiter, key)
    assert refused.value.headers["x-ratelimit-remaining-tokens"] == "0"
    limiter.close()


def test_a_spent_budget_refuses_until_the_period_ends_and_says_not_to_retry(
    storage: Storage,
) -> None:
    clock = Clock(NOW)  # 30 s before the new year
    limiter = KeyLimiter(storage, clock=clock)
    key = _key(budget_tokens=500, budget_period="month")
    assert (_admit(limiter, key))["x-lorastack-budget-remaining"] == "500"
    limiter.spend_later(key, 499)
    limiter.close()
    limiter = KeyLimiter(storage, clock=clock)
    _admit(limiter, key)  # 1 token left: admitted, and its answer finishes
    limiter.spend_later(key, 50)
    limiter.close()
    limiter = KeyLimiter(storage, clock=clock)
    with pytest.raises(RateLimited) as refused:
        _admit(limiter, key)
    error = refused.value
    assert error.code == "insufficient_quota"
    assert "budget of 500 tokens this month" in str(error) and "2027-01-01" in str(error)
    assert error.headers["x-should-retry"] == "false"
    assert error.headers["Retry-After"] == "30"
    clock.now = NOW + 31  # January: a new budget
    assert (_admit(limiter, key))["x-lorastack-budget-remaining"] == "500"
    limiter.close()


def test_counters_that_cannot_be_read_refuse_rather_than_let_through(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'limits.db'}")
    storage = SqlRateStorage(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE rate_windows")
    limiter = KeyLimiter(storage)
    with pytest.raises(EngineUnavailable, match="limits") as refused:
        _admit(limiter, _key(rpm=5))
    assert refused.value.code == "limits_unavailable"
    limiter.close()


def test_database_counters_lose_no_hit_between_threads(tmp_path: Path) -> None:
    """Two gateways' worth of hits on one counter at once: every one is counted."""
    url = f"sqlite:///{tmp_path / 'limits.db'}"
    limiters = [FixedWindowRateLimiter(SqlRateStorage(make_engine(url))) for _ in range(2)]
    item = RateLimitItemPerMinute(1000)
    threads = [
        threading.Thread(target=lambda lim=lim: [lim.hit(item, "k") for _ in range(40)])
        for lim in limiters
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert limiters[0].get_window_stats(item, "k").remaining == 1000 - 160


def test_a_counter_starts_again_when_its_window_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = SqlRateStorage(make_engine(f"sqlite:///{tmp_path / 'limits.db'}"))
    assert storage.incr("k", 60, 5) == 5
    assert storage.incr("k", 60, 2) == 7 and storage.get("k") == 7
    real = __import__("time").time
    monkeypatch.setattr("lorastack.db.rate_storage.time.time", lambda: real() + 61)
    assert storage.get("k") == 0
    assert storage.incr("k", 60, 3) == 3
    assert storage.purge_expired() == 0
    storage.clear("k")
    assert storage.get("k") == 0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.02, "20ms"), (1.0, "1s"), (59.6, "1m0s"), (360, "6m0s"), (3723, "1h2m3s")],
)
def test_reset_times_are_written_as_openai_writes_them(seconds: float, text: str) -> None:
    assert openai_duration(seconds) == text


def test_a_domain_cap_refuses_above_it_and_each_release_counts_once() -> None:
    caps = DomainCaps(2, {"ledger-desk": 1})
    release = [caps.enter("coffee-shop"), caps.enter("coffee-shop")]
    with pytest.raises(RateLimited) as refused:
        caps.enter("coffee-shop")
    assert refused.value.code == "domain_busy" and refused.value.headers["Retry-After"] == "1"
    caps.enter("ledger-desk")
    with pytest.raises(RateLimited):
        caps.enter("ledger-desk")
    release[0]()
    release[0]()  # a second call gives nothing back twice
    assert caps.in_flight("coffee-shop") == 1
    caps.enter("coffee-shop")
    uncapped = DomainCaps(None, {"ledger-desk": 1})
    for _ in range(10):
        uncapped.enter("coffee-shop")
    assert uncapped.in_flight("coffee-shop") == 0


def test_where_the_counters_live_is_a_setting_with_clear_mistakes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from lorastack.errors import SettingsError
    from lorastack.serve.tenancy import build_tenancy
    from lorastack.settings import GatewaySettings

    engine = make_engine(f"sqlite:///{tmp_path / 'limits.db'}")
    on_database = build_tenancy(GatewaySettings(), engine)
    assert isinstance(on_database.limiter._limiter.storage, SqlRateStorage)
    in_memory = build_tenancy(GatewaySettings(limits_storage="memory"), engine)
    assert isinstance(in_memory.limiter._limiter.storage, MemoryStorage)
    without_database = build_tenancy(GatewaySettings(), None)
    assert isinstance(without_database.limiter._limiter.storage, MemoryStorage)
    assert "counted in this process only" in caplog.text
    for setting in ("nosuch://host", "memcached"):
        with pytest.raises(SettingsError, match=r"gateway.limits_storage"):
            build_tenancy(GatewaySettings(limits_storage=setting), engine)
    caps = build_tenancy(GatewaySettings(domain_concurrency={"coffee-shop": 2}), engine).caps
    assert caps is not None
    with pytest.raises(ValueError, match="at least 1"):
        GatewaySettings(domain_concurrency={"coffee-shop": 0})
