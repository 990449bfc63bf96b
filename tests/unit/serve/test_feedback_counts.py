"""`GET /admin/feedback?domain=D`: what a domain's users said of each version, for the
admin key only; a 503 without a feedback store, a 404 for a domain that is not published."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from lorastack.errors import DatabaseError
from lorastack.registry import AdapterRegistry
from tests.fake_feedback import MemoryFeedbackStore
from tests.unit.serve.conftest import ADMIN_KEY, Running

KEY = "sk-feedback-counts-0123456789"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
USER = {"authorization": f"Bearer {KEY}"}


@pytest.fixture(name="feedback")
def feedback_store() -> MemoryFeedbackStore:
    return MemoryFeedbackStore()


@pytest.fixture
def gw(
    start_gateway: Callable[..., Running],
    feedback: MemoryFeedbackStore,
    registry: AdapterRegistry,
) -> Running:
    """coffee-shop's answers are captured; ledger-desk's are not."""
    registry.set_capture("coffee-shop", True)
    return start_gateway(feedback_store=feedback, api_keys=[KEY])


def _answer(gw: Running, model: str = "coffee-shop") -> str:
    body = {"model": model, "messages": [{"role": "user", "content": "Hi!"}]}
    response = gw.client.post("/v1/chat/completions", json=body, headers=USER)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def _rate(gw: Running, answer: str, rating: int, correction: str | None = None) -> None:
    body: dict[str, Any] = {"response_id": answer, "rating": rating}
    if correction is not None:
        body["correction"] = correction
    response = gw.client.post("/v1/feedback", json=body, headers=USER)
    assert response.status_code == 200, response.text


def _counts(gw: Running, domain: str, headers: dict[str, str] = ADMIN) -> httpx.Response:
    return gw.client.get("/admin/feedback", params={"domain": domain}, headers=headers)


def test_counts_per_version(
    gw: Running,
    feedback: MemoryFeedbackStore,
    publish: Callable[..., Any],
    registry: AdapterRegistry,
) -> None:
    publish("coffee-shop", 5)  # v2, not prod
    publish("coffee-shop", 6)  # v3, never answers
    first, second, third = _answer(gw), _answer(gw), _answer(gw)
    _rate(gw, first, 1)
    _rate(gw, first, 1)  # each rating counts, the same key's included
    _rate(gw, second, -1, correction="Hello from Bean There!")
    _answer(gw, "coffee-shop@2")
    assert feedback.wait_for(lambda: len(feedback.exchanges_by_id) == 4)
    assert third in feedback.exchanges_by_id  # captured, never rated

    response = _counts(gw, "coffee-shop")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "domain": "coffee-shop",
        "versions": [
            {"version": 1, "captured": 3, "up": 2, "down": 1, "up_rate": 2 / 3, "corrections": 1},
            {"version": 2, "captured": 1, "up": 0, "down": 0, "up_rate": None, "corrections": 0},
            {"version": 3, "captured": 0, "up": 0, "down": 0, "up_rate": None, "corrections": 0},
        ],
    }

    # A removed version whose answers the store still keeps stays listed.
    registry.remove("coffee-shop", 2)
    versions = [v["version"] for v in _counts(gw, "coffee-shop").json()["versions"]]
    assert versions == [1, 2, 3]


def test_a_domain_without_capture_lists_zeros(gw: Running) -> None:
    _answer(gw, "ledger-desk")  # capture off: nothing stored
    response = _counts(gw, "ledger-desk")
    assert response.status_code == 200, response.text
    assert response.json()["versions"] == [
        {"version": 1, "captured": 0, "up": 0, "down": 0, "up_rate": None, "corrections": 0}
    ]


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"domain": "tea-house"}, 404),  # not published
        ({"domain": "../x"}, 404),  # not a name
        ({}, 400),  # which domain?
    ],
)
def test_mistakes(gw: Running, params: dict[str, str], status: int) -> None:
    response = gw.client.get("/admin/feedback", params=params, headers=ADMIN)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert "Traceback" not in response.text


def test_only_the_admin_key_reads_it(gw: Running) -> None:
    for headers in (USER, {}):
        response = _counts(gw, "coffee-shop", headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_admin_key"


def _unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "service_unavailable",
        "feedback_unavailable",
        None,
    )
    assert error["message"]


@pytest.mark.parametrize("settings", [{}, {"guardrails": False}])
def test_a_gateway_without_a_feedback_store_is_a_503(
    start_gateway: Callable[..., Running], settings: dict[str, Any]
) -> None:
    # No store at all, or one that the gateway does not use (nothing would mask it).
    store = MemoryFeedbackStore() if settings else None
    gw = start_gateway(feedback_store=store, **settings)
    _unavailable(_counts(gw, "coffee-shop"))


@pytest.mark.parametrize("error", [DatabaseError("connection refused"), RuntimeError("driver")])
def test_a_store_that_fails_is_a_503(
    gw: Running, feedback: MemoryFeedbackStore, error: Exception
) -> None:
    feedback.fail = error
    response = _counts(gw, "coffee-shop")
    _unavailable(response)
    assert "connection refused" not in response.text and "driver" not in response.text
