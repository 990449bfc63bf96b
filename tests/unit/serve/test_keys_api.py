"""Keys made through the admin API or the database, used by clients within their limits;
refusals as OpenAI sends them, so the official client does the right thing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import pytest

from lorastack.db import SqlFeedbackStore
from lorastack.db.audit_store import SqlAuditLog
from lorastack.db.key_store import SqlKeyStore
from lorastack.keys import KeyLimits
from tests.unit.serve.conftest import ADMIN_KEY, Running

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
CHAT = {"model": "coffee-shop", "messages": [{"role": "user", "content": "one flat white"}]}


@pytest.fixture
def gw(database: SqlFeedbackStore, start_gateway: Callable[..., Running]) -> Running:
    return start_gateway(feedback_store=database)


def _create(gw: Running, **body: Any) -> dict[str, Any]:
    response = gw.client.post("/admin/keys", json={"name": "team-a", **body}, headers=ADMIN)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _chat(gw: Running, key: str, **extra: Any) -> httpx.Response:
    return gw.client.post(
        "/v1/chat/completions", json={**CHAT, **extra}, headers={"authorization": f"Bearer {key}"}
    )


def test_a_key_made_through_the_admin_api_works_at_once_within_its_limits(gw: Running) -> None:
    created = _create(gw, rpm=2, domains=["coffee-shop"])
    key = created["key"]
    assert created["hint"] == f"...{key[-4:]}" and created["rpm"] == 2
    first = _chat(gw, key)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert _chat(gw, key).status_code == 200
    refused = _chat(gw, key)
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert len(gw.fake.completion_requests) == 2  # the refused one never reached the engine
    other_domain = _chat(gw, key, model="ledger-desk")
    assert other_domain.status_code in (404, 429)


def test_the_official_client_sees_the_429_and_its_headers(gw: Running) -> None:
    key = _create(gw, rpm=1)["key"]
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)
    client.chat.completions.create(**CHAT)
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(**CHAT)
    assert refused.value.code == "rate_limit_exceeded"
    assert refused.value.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_a_domain_at_its_cap_is_retried_by_the_official_client(
    database: SqlFeedbackStore, start_gateway: Callable[..., Running]
) -> None:
    gw = start_gateway(feedback_store=database, domain_concurrency={"coffee-shop": 1})
    # The first answer, streamed slowly, holds the domain's only place for about a second.
    gw.fake.enqueue([f"word{i} " for i in range(6)], delay_s=0.2)
    first = threading.Thread(target=lambda: gw.chat("coffee-shop", "slow one", stream=True))
    first.start()
    assert gw.fake.wait_for(lambda: gw.fake.active_streams == 1)
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=2)
    answer = client.chat.completions.with_raw_response.create(**CHAT)
    first.join()
    assert answer.http_response.status_code == 200
    assert answer.retries_taken >= 1  # it was refused, waited Retry-After: 1, and got in


def test_tokens_per_minute_count_the_answers(gw: Running) -> None:
    key = _create(gw, tpm=5)["key"]
    first = _chat(gw, key)
    assert first.status_code == 200 and first.headers["x-ratelimit-remaining-tokens"] == "5"
    assert gw.gateway.limiter is not None
    gw.gateway.limiter.flush()
    refused = _chat(gw, key)
    assert (
        refused.status_code == 429 and "5 tokens per minute" in refused.json()["error"]["message"]
    )


def test_a_budget_spent_mid_stream_finishes_that_answer_then_refuses(gw: Running) -> None:
    key = _create(gw, budget=3, period="day")["key"]
    with gw.client.stream(
        "POST",
        "/v1/chat/completions",
        json={**CHAT, "stream": True},
        headers={"authorization": f"Bearer {key}"},
    ) as stream:
        text = "".join(stream.iter_text())
    assert text.endswith("data: [DONE]\n\n")  # more than 3 tokens, all of them sent
    assert gw.gateway.limiter is not None
    gw.gateway.limiter.flush()
    refused = _chat(gw, key)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "insufficient_quota"
    assert refused.headers["x-should-retry"] == "false"


def test_revoke_and_rotate_take_effect_at_once(gw: Running) -> None:
    key = _create(gw)["key"]
    rotated = gw.client.post("/admin/keys/team-a/rotate", headers=ADMIN)
    assert rotated.status_code == 200
    new_key = rotated.json()["key"]
    assert _chat(gw, key).status_code == 401
    assert _chat(gw, new_key).status_code == 200
    assert gw.client.post("/admin/keys/team-a/revoke", headers=ADMIN).status_code == 200
    assert _chat(gw, new_key).status_code == 401
    # Every key revoked: the gateway does not fall back to open.
    assert gw.client.post("/v1/chat/completions", json=CHAT).status_code == 401


def test_keys_made_elsewhere_arrive_with_the_next_refresh(
    gw: Running, database: SqlFeedbackStore
) -> None:
    keys = SqlKeyStore(database.engine)
    _, secret = keys.create("from-the-cli", limits=KeyLimits(rpm=10))
    _, expired = keys.create("old", expires_at=datetime.now(UTC) + timedelta(seconds=1))
    gw.gateway.keys.refresh()
    assert _chat(gw, secret).status_code == 200
    gw.gateway.keys._managed = {  # the key's expiry, passed
        digest: replace(key, expires_at=datetime.now(UTC)) if key.name == "old" else key
        for digest, key in gw.gateway.keys._managed.items()
    }
    answer = _chat(gw, expired)
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "expired_api_key"
    gw.gateway.keys.refresh()  # also writes when keys were last used
    assert keys.get("from-the-cli").last_used_at is not None


def test_the_admin_api_never_shows_a_key_again_and_audits_each_change(
    gw: Running, database: SqlFeedbackStore
) -> None:
    key = _create(gw, rpm=5)["key"]
    listing = gw.client.get("/admin/keys", headers=ADMIN)
    assert listing.status_code == 200 and key not in listing.text
    assert [k["name"] for k in listing.json()["data"]] == ["team-a"]
    gw.client.post("/admin/keys/team-a/revoke", headers=ADMIN)
    assert gw.client.get("/admin/keys", headers=ADMIN).json()["data"] == []
    assert len(gw.client.get("/admin/keys?all=true", headers=ADMIN).json()["data"]) == 1
    events = SqlAuditLog(database.engine).events(action="keys")
    assert [e.action for e in reversed(events)] == ["keys.create", "keys.revoke"]
    assert all(e.actor.startswith("admin-key:") for e in events)
    assert events[-1].details["rpm"] == 5
    assert not any(key in str(e.details) for e in events)


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("post", "/admin/keys", {"name": "team-a"}, 409),
        ("post", "/admin/keys", {"name": "b", "expires": "2020-01-01"}, 400),
        ("post", "/admin/keys", {"name": "b c"}, 400),
        ("post", "/admin/keys", {"name": "b", "rpm": 0}, 400),
        ("post", "/admin/keys/nobody/revoke", None, 404),
        ("post", "/admin/keys/nobody/rotate", None, 404),
    ],
)
def test_admin_mistakes_are_4xx(
    gw: Running, method: str, path: str, body: dict[str, Any] | None, status: int
) -> None:
    _create(gw)
    response = gw.client.request(method, path, json=body, headers=ADMIN)
    assert response.status_code == status, response.text
    assert "error" in response.json()


def test_only_the_admin_key_manages_keys(gw: Running) -> None:
    key = _create(gw)["key"]
    for headers in ({}, {"authorization": f"Bearer {key}"}):
        assert gw.client.get("/admin/keys", headers=headers).status_code == 401


def test_without_a_database_the_keys_api_says_so(start_gateway: Callable[..., Running]) -> None:
    gw = start_gateway()
    response = gw.client.post("/admin/keys", json={"name": "x"}, headers=ADMIN)
    assert response.status_code == 503 and "no database" in response.json()["error"]["message"]
