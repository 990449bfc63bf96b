"""`POST /v1/feedback`: who may rate what, bodies refused with reasons, masking, the admin
switch for capture."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from lorastack.errors import DatabaseError
from lorastack.feedback import key_hash
from lorastack.registry import AdapterRegistry
from tests.fake_feedback import MemoryFeedbackStore
from tests.fakes import RegexDetector
from tests.unit.serve.conftest import ADMIN_KEY, Running

KEY_A = "sk-feedback-key-a-0123456789"
KEY_B = "sk-feedback-key-b-0123456789"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


def _as(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.fixture(name="feedback")
def feedback_store() -> MemoryFeedbackStore:
    return MemoryFeedbackStore()


@pytest.fixture
def detector() -> RegexDetector:
    return RegexDetector()


@pytest.fixture
def gw(
    start_gateway: Callable[..., Running],
    feedback: MemoryFeedbackStore,
    registry: AdapterRegistry,
    detector: RegexDetector,
) -> Running:
    """Two keys; coffee-shop's answers are captured."""
    registry.set_capture("coffee-shop", True)
    return start_gateway(detector=detector, feedback_store=feedback, api_keys=[KEY_A, KEY_B])


def _answer(gw: Running, key: str = KEY_A, model: str = "coffee-shop", **extra: Any) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": "Hi!"}], **extra}
    response = gw.client.post("/v1/chat/completions", json=body, headers=_as(key))
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def _rate(gw: Running, body: Any, key: str = KEY_A) -> httpx.Response:
    # Escaped JSON: a lone surrogate travels as `\ud800`, as a client may send it.
    headers = {**_as(key), "content-type": "application/json"}
    return gw.client.post("/v1/feedback", content=json.dumps(body), headers=headers)


def test_a_client_rates_the_answer_it_got(gw: Running, feedback: MemoryFeedbackStore) -> None:
    answer = _answer(gw)
    response = _rate(gw, {"response_id": answer, "rating": -1, "comment": "too short"})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "object": "feedback",
        "response_id": answer,
        "rating": -1,
        "saved": True,
    }
    (rating,) = feedback.ratings
    assert (rating.response_id, rating.rating, rating.comment) == (answer, -1, "too short")
    assert rating.key_hash == key_hash(KEY_A) and rating.correction is None
    assert _rate(gw, {"response_id": answer, "rating": 1}).status_code == 200
    samples = gw.gateway.metrics.registry.get_sample_value
    labels = {"domain": "coffee-shop", "version": "v1"}
    assert samples("lorastack_feedback_ratings_total", {**labels, "rating": "down"}) == 1
    assert samples("lorastack_feedback_ratings_total", {**labels, "rating": "up"}) == 1


def test_another_key_cannot_rate_it_nor_learn_it_exists(
    gw: Running, feedback: MemoryFeedbackStore
) -> None:
    answer = _answer(gw, KEY_A)
    others = _rate(gw, {"response_id": answer, "rating": 1}, key=KEY_B)
    unknown = _rate(gw, {"response_id": "chatcmpl-nope", "rating": 1}, key=KEY_B)
    assert others.status_code == unknown.status_code == 404
    assert others.json() == unknown.json()
    assert others.json()["error"]["code"] == "not_found"
    assert feedback.ratings == []
    no_key = gw.client.post("/v1/feedback", json={"response_id": answer, "rating": 1})
    assert no_key.status_code == 401


def test_answers_that_were_not_captured_cannot_be_rated(gw: Running) -> None:
    for model in ("ledger-desk", "tiny"):  # capture off; the base model
        answer = _answer(gw, model=model)
        assert _rate(gw, {"response_id": answer, "rating": 1}).status_code == 404


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"response_id": "x", "rating": 2}, "rating: must be exactly 1 (good) or -1 (bad)"),
        ({"response_id": "x", "rating": True}, "rating: must be exactly 1"),
        ({"response_id": "x", "rating": 1.0}, "rating: must be exactly 1"),
        ({"response_id": "x", "rating": "1"}, "rating: must be exactly 1"),
        ({"response_id": "x"}, "rating: Field required"),
        ({"rating": 1}, "response_id: Field required"),
        ({"response_id": "", "rating": 1}, "response_id: String should have at least 1"),
        ({"response_id": "x", "rating": 1, "stars": 5}, "stars: Extra inputs are not permitted"),
        ({"response_id": "x", "rating": 1, "comment": 5}, "comment: Input should be a valid str"),
        ({"response_id": "x", "rating": 1, "comment": "c" * 2001}, "comment: String should have"),
        (
            {"response_id": "x", "rating": 1, "correction": "\ud800"},
            "correction: Input should be a valid str",
        ),
        ([1, -1], "the request body must be a JSON object"),
    ],
)
def test_bad_bodies_are_400s_with_the_reason(gw: Running, body: Any, reason: str) -> None:
    response = _rate(gw, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(reason), error["message"]


def test_the_correction_and_comment_are_masked_before_they_are_stored(
    gw: Running, feedback: MemoryFeedbackStore
) -> None:
    answer = _answer(gw)
    body = {
        "response_id": answer,
        "rating": -1,
        "correction": "Hello Jane Porter! We wrote to jane@example.com.",
        "comment": "I am Jane Porter",
    }
    assert _rate(gw, body).status_code == 200
    (rating,) = feedback.ratings
    assert rating.correction == "Hello <PERSON_1>! We wrote to <EMAIL_ADDRESS_1>."
    assert rating.comment == "I am <PERSON_1>"


def test_a_correction_keeps_the_rated_version_s_vocabulary_and_another_version_masks_it(
    gw: Running, feedback: MemoryFeedbackStore, publish: Callable[..., Any]
) -> None:
    # A business whose training data named its lounge "Jane Porter" in every chat.
    publish("coffee-shop", 3, vocabulary=["jane porter"], promote="prod")
    correction = "Ask at Jane Porter or mail jane@example.com."
    for model in ("coffee-shop", "coffee-shop@v1"):
        body = {"response_id": _answer(gw, model=model), "rating": -1, "correction": correction}
        assert _rate(gw, body).status_code == 200
    assert [rating.correction for rating in feedback.ratings] == [
        "Ask at Jane Porter or mail <EMAIL_ADDRESS_1>.",
        "Ask at <PERSON_1> or mail <EMAIL_ADDRESS_1>.",
    ]


@pytest.mark.parametrize("fail_open", [False, True])
def test_a_failed_screening_refuses_the_rating_never_stores_it_raw(
    gw: Running,
    feedback: MemoryFeedbackStore,
    detector: RegexDetector,
    home: Path,
    fail_open: bool,
) -> None:
    answer = _answer(gw)
    (home / "policies").mkdir(exist_ok=True)
    # Failing open passes a prompt on unscanned; what is stored never is.
    policy = f"name: fresh\nfail_open: {str(fail_open).lower()}\n"
    (home / "policies" / "coffee-shop.yaml").write_text(policy)
    detector.fail = RuntimeError("spaCy")
    body = {"response_id": answer, "rating": -1, "correction": "Mail jane@example.com"}
    response = _rate(gw, body)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "guardrails_unavailable"
    assert feedback.ratings == []
    # Without a text to mask, a rating needs no screening.
    assert _rate(gw, {"response_id": answer, "rating": 1}).status_code == 200


@pytest.mark.parametrize("error", [DatabaseError("connection refused"), RuntimeError("driver")])
def test_a_store_that_fails_is_a_503(
    gw: Running, feedback: MemoryFeedbackStore, error: Exception
) -> None:
    answer = _answer(gw)
    assert feedback.wait_for(lambda: answer in feedback.exchanges_by_id)
    feedback.fail = error
    response = _rate(gw, {"response_id": answer, "rating": 1})
    assert response.status_code == 503
    assert response.json()["error"] == {
        "message": "the feedback store is unavailable; try again later",
        "type": "service_unavailable",
        "param": None,
        "code": "feedback_unavailable",
    }


def test_a_rating_right_after_the_answer_waits_for_its_exchange(
    gw: Running, feedback: MemoryFeedbackStore
) -> None:
    feedback.hold()  # the exchange is still queued when the rating arrives
    answer = _answer(gw, stream=False)
    threading.Timer(0.3, feedback.release).start()
    response = _rate(gw, {"response_id": answer, "rating": 1})
    assert response.status_code == 200, response.text
    # Streamed too, rated at once (the writer is hurried, not left to its batch wait).
    events = gw.client.post(
        "/v1/chat/completions",
        json={
            "model": "coffee-shop",
            "messages": [{"role": "user", "content": "Hi"}],
            "stream": True,
        },
        headers=_as(KEY_A),
    )
    streamed = next(line for line in events.text.splitlines() if line.startswith("data: {"))
    streamed_id = json.loads(streamed[6:])["id"]
    assert _rate(gw, {"response_id": streamed_id, "rating": -1}).status_code == 200
    assert [r.response_id for r in feedback.ratings] == [answer, streamed_id]


# -- the admin switch -------------------------------------------------------------------


def test_the_admin_api_turns_capture_on_and_off(
    gw: Running, feedback: MemoryFeedbackStore, registry: AdapterRegistry
) -> None:
    listed = gw.client.get("/admin/adapters", headers=ADMIN).json()
    assert listed["capture_available"] is True
    capture = {d["domain"]: d["capture"] for d in listed["domains"]}
    assert capture == {
        "coffee-shop": {"enabled": True, "retention_days": 30},
        "ledger-desk": {"enabled": False, "retention_days": 30},
    }
    changed = gw.client.post(
        "/admin/adapters/capture",
        json={"domain": "ledger-desk", "enabled": True, "retention_days": 7},
        headers=ADMIN,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["capture"] == {"enabled": True, "retention_days": 7}
    answer = _answer(gw, model="ledger-desk")
    assert _rate(gw, {"response_id": answer, "rating": 1}).status_code == 200
    off = gw.client.post(
        "/admin/adapters/capture", json={"domain": "ledger-desk", "enabled": False}, headers=ADMIN
    )
    assert off.json()["capture"] == {"enabled": False, "retention_days": 7}  # kept
    capture_setting = registry.index("ledger-desk").capture
    assert capture_setting is not None and not capture_setting.enabled


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"domain": "nope", "enabled": True}, 404),
        ({"domain": "../x", "enabled": True}, 404),
        ({"domain": "coffee-shop", "enabled": True, "retention_days": 0}, 400),
        ({"domain": "coffee-shop"}, 400),
    ],
)
def test_admin_capture_mistakes(gw: Running, body: dict[str, Any], status: int) -> None:
    response = gw.client.post("/admin/adapters/capture", json=body, headers=ADMIN)
    assert response.status_code == status, response.text
    client_key = gw.client.post("/admin/adapters/capture", json=body, headers=_as(KEY_A))
    assert client_key.status_code == 401
