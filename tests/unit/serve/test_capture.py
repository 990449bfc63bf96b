"""Capture of served answers: per domain, masked as the engine saw them, never in the way."""

from __future__ import annotations

import json
import logging
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import timedelta
from typing import Any

import httpx
import pytest

from lorastack.errors import DatabaseError
from lorastack.feedback import Exchange, key_hash, utc_now
from lorastack.registry import AdapterRegistry
from lorastack.rules import BrandRule
from lorastack.serve.app import open_feedback_store
from lorastack.serve.capture import ExchangeCapture, PendingExchange
from lorastack.serve.keys import KeyStore
from lorastack.serve.metrics import Metrics
from lorastack.settings import load_settings
from tests.fake_feedback import MemoryFeedbackStore
from tests.unit.serve.conftest import COFFEE_VOICE, Running

USER = "Hi, I'm Jane Porter, jane@example.com. Please write back."
RAW = ("Jane Porter", "jane@example.com")


def _events(response: httpx.Response) -> list[dict[str, Any]]:
    lines = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    return [json.loads(line) for line in lines if line != "[DONE]"]


def _sample(gw: Running, name: str, **labels: str) -> float:
    return gw.gateway.metrics.registry.get_sample_value(name, labels) or 0.0


def _dump(feedback: MemoryFeedbackStore) -> str:
    """Everything the store holds, as one text."""
    return json.dumps([asdict(e) for e in feedback.exchanges_by_id.values()], default=str)


@pytest.fixture(name="feedback")
def feedback_store() -> MemoryFeedbackStore:
    return MemoryFeedbackStore()


@pytest.fixture
def capturing(
    start_gateway: Callable[..., Running], feedback: MemoryFeedbackStore, registry: AdapterRegistry
) -> Running:
    """A gateway with a feedback store; coffee-shop's capture is on, ledger-desk's is not."""
    registry.set_capture("coffee-shop", True)
    return start_gateway(feedback_store=feedback)


def test_only_domains_with_capture_on_are_captured(
    capturing: Running, feedback: MemoryFeedbackStore, registry: AdapterRegistry
) -> None:
    assert capturing.chat("ledger-desk", "not captured").status_code == 200
    assert capturing.chat("tiny", "the base model: never").status_code == 200
    answer = capturing.chat("coffee-shop", "captured")
    assert answer.status_code == 200
    assert feedback.wait_for(lambda: len(feedback.exchanges_by_id) == 1)
    (exchange,) = feedback.exchanges_by_id.values()
    assert (exchange.domain, exchange.version) == ("coffee-shop", 1)
    assert exchange.response_id == answer.json()["id"]
    assert exchange.key_hash is None  # an open gateway
    assert exchange.latency_s > 0
    # Off again: the next request is not captured (the registry is read per request).
    registry.set_capture("coffee-shop", False)
    capturing.chat("coffee-shop", "after capture went off")
    registry.set_capture("ledger-desk", True)
    capturing.chat("ledger-desk", "now on")
    assert feedback.wait_for(lambda: len(feedback.exchanges_by_id) == 2)
    assert sorted(e.domain for e in feedback.exchanges_by_id.values()) == [
        "coffee-shop",
        "ledger-desk",
    ]
    assert _sample(capturing, "lorastack_capture_written_total", domain="coffee-shop") == 1


def test_the_stored_exchange_is_masked_as_the_engine_saw_it(
    capturing: Running, feedback: MemoryFeedbackStore
) -> None:
    response = capturing.chat("coffee-shop", USER)
    shown = response.json()["choices"][0]["message"]["content"]
    # The engine's answer repeats the placeholders: the client sees its values again...
    assert all(value in shown for value in RAW)
    assert feedback.wait_for(lambda: len(feedback.exchanges_by_id) == 1)
    (exchange,) = feedback.exchanges_by_id.values()
    # ...the store keeps the conversation and the answer with them masked.
    assert exchange.messages == [
        {"role": "system", "content": COFFEE_VOICE},
        {"role": "user", "content": "Hi, I'm <PERSON_1>, <EMAIL_ADDRESS_1>. Please write back."},
    ]
    assert exchange.answer == (
        "echo from coffee-shop@v1: Hi, I'm <PERSON_1>, <EMAIL_ADDRESS_1>. Please write back."
    )
    assert not any(value in _dump(feedback) for value in RAW)


def test_a_streamed_answer_is_captured_masked_with_the_id_of_every_chunk(
    capturing: Running, feedback: MemoryFeedbackStore
) -> None:
    response = capturing.chat("coffee-shop", USER, stream=True)
    events = _events(response)
    ids = {event["id"] for event in events}
    assert len(ids) == 1 and next(iter(ids)).startswith("chatcmpl-")
    shown = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    assert all(value in shown for value in RAW)
    assert feedback.wait_for(lambda: len(feedback.exchanges_by_id) == 1)
    (exchange,) = feedback.exchanges_by_id.values()
    assert exchange.response_id == next(iter(ids))
    assert exchange.answer == (
        "echo from coffee-shop@v1: Hi, I'm <PERSON_1>, <EMAIL_ADDRESS_1>. Please write back."
    )
    assert not any(value in _dump(feedback) for value in RAW)


@pytest.mark.parametrize("stream", [False, True])
def test_personal_data_the_model_writes_is_stored_redacted(
    capturing: Running, feedback: MemoryFeedbackStore, stream: bool
) -> None:
    capturing.fake.enqueue(["Ask Jo", "sé García at ", "olu@exa", "mple.org."])
    assert capturing.chat("coffee-shop", "who?", stream=stream).status_code == 200
    assert feedback.wait_for(lambda: len(feedback.exchanges_by_id) == 1)
    (exchange,) = feedback.exchanges_by_id.values()
    assert exchange.answer == "Ask <PERSON> at <EMAIL_ADDRESS>."


def test_each_answer_gets_the_gateways_own_id(capturing: Running) -> None:
    ids = {capturing.chat("ledger-desk", "same question").json()["id"] for _ in range(3)}
    assert len(ids) == 3 and all(i.startswith("chatcmpl-") for i in ids)
    text = capturing.client.post(
        "/v1/completions", json={"model": "ledger-desk", "prompt": "x", "stream": True}
    )
    assert {e["id"][:5] for e in _events(text)} == {"cmpl-"}


def test_a_text_completion_is_stored_as_one_user_message(
    capturing: Running, feedback: MemoryFeedbackStore
) -> None:
    body = {"model": "coffee-shop", "prompt": f"Ticket: {USER}\nDepartment:", "max_tokens": 5}
    response = capturing.client.post("/v1/completions", json=body)
    assert response.status_code == 200, response.text
    assert feedback.wait_for(lambda: len(feedback.exchanges_by_id) == 1)
    exchange = feedback.exchanges_by_id[response.json()["id"]]
    masked = "Ticket: Hi, I'm <PERSON_1>, <EMAIL_ADDRESS_1>. Please write back.\nDepartment:"
    assert exchange.messages == [{"role": "user", "content": masked}]
    assert "<EMAIL_ADDRESS_1>" in exchange.answer
    assert not any(value in _dump(feedback) for value in RAW)


def test_the_answering_versions_rules_are_checked_on_the_stored_answer(
    start_gateway: Callable[..., Running],
    feedback: MemoryFeedbackStore,
    registry: AdapterRegistry,
    publish: Callable[..., Any],
) -> None:
    rules = [BrandRule(must_mention=["coffee"]), BrandRule(max_words=50)]
    publish("trail", 5, rules=rules, promote="prod", capture=True)
    gw = start_gateway(feedback_store=feedback)
    gw.chat("trail", "any coffee?")
    assert feedback.wait_for(lambda: len(feedback.exchanges_by_id) == 1)
    (exchange,) = feedback.exchanges_by_id.values()
    assert exchange.rules == {"must_mention": True, "max_words": True}


def test_a_key_is_stored_as_its_hash(
    start_gateway: Callable[..., Running], feedback: MemoryFeedbackStore, registry: AdapterRegistry
) -> None:
    registry.set_capture("coffee-shop", True)
    key = "sk-capture-test-0123456789"
    gw = start_gateway(feedback_store=feedback, api_keys=[key])
    gw.client.headers["authorization"] = f"Bearer {key}"
    gw.chat("coffee-shop", "hello")
    assert feedback.wait_for(lambda: len(feedback.exchanges_by_id) == 1)
    (exchange,) = feedback.exchanges_by_id.values()
    assert exchange.key_hash == key_hash(key)
    assert KeyStore.from_settings([key], None, None).client(f"Bearer {key}").sha256 == key_hash(key)
    assert key not in _dump(feedback)


def test_a_store_that_is_down_costs_the_captures_never_an_answer(
    capturing: Running, feedback: MemoryFeedbackStore, caplog: pytest.LogCaptureFixture
) -> None:
    feedback.fail = DatabaseError("connection refused")
    lost = {"domain": "coffee-shop", "reason": "store_error"}

    def dropped(count: int) -> bool:
        return _sample(capturing, "lorastack_capture_dropped_total", **lost) == count

    with caplog.at_level(logging.WARNING, logger="lorastack.serve.capture"):
        for count, stream in enumerate((False, True, False), start=1):
            assert capturing.chat("coffee-shop", "hello", stream=stream).status_code == 200
            assert feedback.wait_for(lambda: dropped(count))  # noqa: B023 (waited for here)
        failures = [r for r in caplog.records if "feedback store failed" in r.getMessage()]
        assert len(failures) == 1  # once per streak of failures
        assert "DatabaseError" in failures[0].getMessage()
        assert "connection refused" not in caplog.text  # the type only
        feedback.fail = None
        capturing.chat("coffee-shop", "back")
        assert feedback.wait_for(lambda: len(feedback.exchanges_by_id) == 1)
        assert feedback.wait_for(lambda: "3 exchanges were lost" in caplog.text)


def test_a_full_queue_drops_and_counts_never_waits(
    capturing: Running, feedback: MemoryFeedbackStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture = capturing.gateway.capture
    assert capture is not None
    monkeypatch.setattr(capture.writer, "max_pending", 2)
    feedback.hold()  # the database takes its time
    for _ in range(6):
        assert capturing.chat("coffee-shop", "hello").status_code == 200
    full = {"domain": "coffee-shop", "reason": "queue_full"}
    dropped = "lorastack_capture_dropped_total"
    assert feedback.wait_for(lambda: _sample(capturing, dropped, **full) >= 2)
    feedback.release()

    def accounted() -> bool:
        written = _sample(capturing, "lorastack_capture_written_total", domain="coffee-shop")
        return written + _sample(capturing, dropped, **full) == 6

    assert feedback.wait_for(accounted)


def test_guardrails_off_capture_nothing(
    start_gateway: Callable[..., Running],
    feedback: MemoryFeedbackStore,
    registry: AdapterRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry.set_capture("coffee-shop", True)
    with caplog.at_level(logging.WARNING, logger="lorastack.serve.app"):
        gw = start_gateway(feedback_store=feedback, guardrails=False)
    assert gw.gateway.capture is None
    assert any("guardrails are off" in r.getMessage() for r in caplog.records)
    assert gw.chat("coffee-shop", USER).status_code == 200
    refused = gw.client.post("/v1/feedback", json={"response_id": "x", "rating": 1})
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "feedback_unavailable"
    assert feedback.exchanges_by_id == {}


# -- the writer, on its own ------------------------------------------------------------


def _pending(number: int, domain: str = "d") -> PendingExchange:
    return PendingExchange(
        Exchange(f"id-{number}", domain, 1, None, [], f"answer {number}", 0.1), ()
    )


def test_the_writer_batches_and_close_writes_what_is_queued() -> None:
    store, metrics = MemoryFeedbackStore(), Metrics()
    capture = ExchangeCapture(store, metrics, batch_size=4, batch_wait_s=60)
    for number in range(10):
        capture.submit(_pending(number))
    assert store.wait_for(lambda: store.batches == [4, 4])  # full batches go at once
    capture.close()  # the rest is written, not dropped
    assert store.batches == [4, 4, 2]
    assert sorted(store.exchanges_by_id) == sorted(f"id-{n}" for n in range(10))
    capture.submit(_pending(99))  # after close: counted, never raised
    assert metrics.registry.get_sample_value(
        "lorastack_capture_dropped_total", {"domain": "d", "reason": "shutdown"}
    )


def test_a_rating_hurries_the_writer_for_its_exchange() -> None:
    store = MemoryFeedbackStore()
    capture = ExchangeCapture(store, Metrics(), batch_wait_s=60)
    capture.submit(_pending(1))
    assert capture.is_pending("id-1")
    capture.wait_written("id-1", timeout_s=5)  # long before the 60 s batch wait
    assert "id-1" in store.exchanges_by_id and not capture.is_pending("id-1")
    capture.wait_written("never-queued", timeout_s=5)  # returns at once
    capture.close()


def test_retention_purges_each_domains_old_exchanges(
    registry: AdapterRegistry, publish: Callable[..., Any]
) -> None:
    publish("kept", 1, capture=True, retention_days=7)
    publish("never-captured", 2)
    store = MemoryFeedbackStore()
    old = Exchange("old", "kept", 1, None, [], "a", 0.1, created_at=utc_now() - timedelta(8))
    recent = Exchange("new", "kept", 1, None, [], "a", 0.1, created_at=utc_now())
    store.add_exchanges([old, recent])
    capture = ExchangeCapture(store, Metrics(), registry)
    capture.start()  # purges once it is idle
    assert store.wait_for(lambda: "old" not in store.exchanges_by_id)
    assert "new" in store.exchanges_by_id
    capture.close()


# -- where the real store is opened -------------------------------------------------------


def test_the_store_is_opened_by_lorastack_db_or_the_gateway_goes_without(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings()
    module = types.ModuleType("lorastack.db")  # stands in for the SQL store's module
    monkeypatch.setitem(sys.modules, "lorastack.db", module)
    with caplog.at_level(logging.WARNING, logger="lorastack.serve.app"):
        with open_feedback_store(settings) as missing:
            assert missing is None
        assert "capture and feedback are unavailable" in caplog.text
        store, events = MemoryFeedbackStore(), []

        @contextmanager
        def opener(given: Any) -> Iterator[MemoryFeedbackStore]:
            events.append("opened")
            yield store
            events.append("closed")

        monkeypatch.setattr(module, "open_feedback_store", opener, raising=False)
        with open_feedback_store(settings) as opened:
            assert opened is store and events == ["opened"]
        assert events == ["opened", "closed"]

        @contextmanager
        def failing(given: Any) -> Iterator[MemoryFeedbackStore]:
            raise DatabaseError("database sqlite:///x.db: disk I/O error")
            yield store

        monkeypatch.setattr(module, "open_feedback_store", failing)
        with open_feedback_store(settings) as down:
            assert down is None
        assert "did not open: DatabaseError: database sqlite:///x.db: disk I/O" in caplog.text
