"""The client's canary and feedback calls and the model an answer names, over HTTP, against
a stub that answers in the gateway's contract (`POST /admin/adapters/canary`,
`.../canary/stop`, `POST /v1/feedback`, `GET /admin/feedback`, and a streamed answer whose
chunks name `coffee-shop@v2` and the answer's id)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from lorastack.ui.client import AnsweredBy, GatewayClient, GuardrailNotice, Message
from lorastack.ui.errors import (
    NO_FEEDBACK,
    AccessDenied,
    EngineRestarting,
    FeedbackNotCollected,
    RequestRefused,
)
from tests.servers import serve_in_thread
from tests.unit.ui.fake_gateway import collect, run

ADMIN = "stub-admin-key"
USER = "stub-user-key"
NO_STORE = "this gateway stores no feedback (no feedback store, or the guardrails are off)"


def _refusal(status: int, message: str, code: str | None = None) -> JSONResponse:
    kind = "service_unavailable" if status == 503 else "invalid_request_error"
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status)


def _stub(seen: list[tuple[str, Any]]) -> FastAPI:
    app = FastAPI()

    @app.post("/admin/adapters/canary")
    async def canary(request: Request) -> Any:
        body = await request.json()
        seen.append(("canary", body))
        if request.headers.get("authorization") != f"Bearer {ADMIN}":
            return _refusal(401, "invalid admin key")
        if body["version"] == 1:
            return _refusal(400, "coffee-shop@v1 is already prod")
        # What the gateway recorded: it may differ from what was asked (here: rounded).
        canary = {"version": body["version"], "weight": round(body["weight"]), "guard": None}
        return {"domain": body["domain"], "aliases": {"prod": 1}, "canary": canary}

    @app.post("/admin/adapters/canary/stop")
    async def stop(request: Request) -> Any:
        body = await request.json()
        seen.append(("stop", body))
        if body["domain"] != "coffee-shop":
            return _refusal(404, f"unknown domain {body['domain']!r}")
        ended = {"version": 2, "outcome": "stopped", "reason": body.get("reason", "stopped")}
        aliases = {"prod": 1}
        return {"domain": "coffee-shop", "aliases": aliases, "canary": None, "last_canary": ended}

    @app.post("/v1/feedback")
    async def feedback(request: Request) -> Any:
        body = await request.json()
        seen.append(("feedback", {"key": request.headers.get("authorization"), **body}))
        if body["response_id"] == "chatcmpl-uncaptured":
            return _refusal(404, "no answer with this id to rate for this key", "not_found")
        if body["response_id"] == "chatcmpl-no-store":
            return _refusal(503, NO_STORE, "feedback_unavailable")
        if body["response_id"] == "chatcmpl-screening":
            message = "personal-data screening is unavailable; try again"
            return _refusal(503, message, "guardrails_unavailable")
        return {"object": "feedback", "response_id": body["response_id"], "saved": True}

    @app.get("/admin/feedback")
    async def counts(request: Request, domain: str) -> Any:
        seen.append(("counts", domain))
        if request.headers.get("authorization") != f"Bearer {ADMIN}":
            return _refusal(401, "invalid admin key")
        if domain == "tea-house":
            return _refusal(404, "no adapter is published for domain 'tea-house'", "not_found")
        if domain == "no-store":
            return _refusal(503, NO_STORE, "feedback_unavailable")
        version = {"version": 1, "captured": 4, "up": 3, "down": 1, "up_rate": 0.75}
        return {"domain": domain, "versions": [{**version, "corrections": 1}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> StreamingResponse:
        seen.append(("chat", await request.json()))

        def chunks() -> Iterator[str]:
            for text in ("Hel", "lo"):
                chunk = {
                    "id": "chatcmpl-c1",  # the gateway's own, the same in every chunk
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": "coffee-shop@v2",  # the version that answered, not the one asked
                    "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
                }
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"

        headers = {"x-lorastack-pii-masked": "1", "x-lorastack-adapter": "coffee-shop@v2"}
        return StreamingResponse(chunks(), media_type="text/event-stream", headers=headers)

    return app


@pytest.fixture
def stub() -> Iterator[tuple[str, list[tuple[str, Any]]]]:
    seen: list[tuple[str, Any]] = []
    with serve_in_thread(_stub(seen)) as url:
        yield url, seen


def test_start_canary_sends_the_contract_and_says_what_the_gateway_recorded(
    stub: tuple[str, list[tuple[str, Any]]],
) -> None:
    url, seen = stub
    client = GatewayClient(f"{url}/v1", None, ADMIN)
    said = run(client.start_canary("coffee-shop", 2, 24.6))
    assert seen == [("canary", {"domain": "coffee-shop", "version": 2, "weight": 24.6})]
    assert said == "coffee-shop: v2 is the canary for 25% of conversations (prod → v1)"

    with pytest.raises(RequestRefused, match="refused the request: coffee-shop@v1 is already prod"):
        run(client.start_canary("coffee-shop", 1, 10))
    with pytest.raises(AccessDenied, match="refused the admin key"):
        run(GatewayClient(url, None, "wrong").start_canary("coffee-shop", 2, 10))
    with pytest.raises(AccessDenied, match="no admin key"):
        run(GatewayClient(url).start_canary("coffee-shop", 2, 10))


def test_stop_canary_sends_a_reason_only_when_given(
    stub: tuple[str, list[tuple[str, Any]]],
) -> None:
    url, seen = stub
    client = GatewayClient(url, None, ADMIN)
    said = run(client.stop_canary("coffee-shop", "too chatty"))
    assert said == "coffee-shop: canary v2 stopped, prod gets all conversations (prod → v1)"
    run(client.stop_canary("coffee-shop"))
    assert [body for _, body in seen] == [
        {"domain": "coffee-shop", "reason": "too chatty"},
        {"domain": "coffee-shop"},
    ]
    with pytest.raises(RequestRefused, match="unknown domain 'tea-house'"):
        run(client.stop_canary("tea-house"))


def test_a_streamed_answer_names_the_version_that_wrote_it_first(
    stub: tuple[str, list[tuple[str, Any]]],
) -> None:
    url, seen = stub
    pieces = run(collect(GatewayClient(url).stream_chat("coffee-shop", [Message("user", "hi")])))
    assert pieces == [AnsweredBy("coffee-shop@v2", "chatcmpl-c1"), "Hel", "lo", GuardrailNotice(1)]
    assert seen[-1][1]["model"] == "coffee-shop"


def test_a_rating_goes_with_the_users_key(stub: tuple[str, list[tuple[str, Any]]]) -> None:
    url, seen = stub
    client = GatewayClient(url, USER, ADMIN)
    run(client.rate("chatcmpl-1", 1))
    run(client.rate("chatcmpl-2", -1, "A better answer."))
    assert [body for _, body in seen] == [
        {"key": f"Bearer {USER}", "response_id": "chatcmpl-1", "rating": 1},
        {
            "key": f"Bearer {USER}",
            "response_id": "chatcmpl-2",
            "rating": -1,
            "correction": "A better answer.",
        },
    ]
    run(GatewayClient(url).rate("chatcmpl-3", 1))  # an open gateway: no key at all
    assert seen[-1][1]["key"] is None


@pytest.mark.parametrize(
    ("response_id", "kind", "said"),
    [
        # Capture off, or the base model: the gateway keeps no such answer.
        ("chatcmpl-uncaptured", FeedbackNotCollected, NO_FEEDBACK),
        # A 503 that is no engine restart: the gateway's own words.
        ("chatcmpl-no-store", FeedbackNotCollected, NO_STORE),
        (
            "chatcmpl-screening",
            RequestRefused,
            "not saved: personal-data screening is unavailable; try again",
        ),
    ],
)
def test_a_refused_rating_says_why(
    stub: tuple[str, list[tuple[str, Any]]], response_id: str, kind: type, said: str
) -> None:
    url, _ = stub
    with pytest.raises(kind) as refused:
        run(GatewayClient(url, USER).rate(response_id, 1))
    assert str(refused.value) == said
    assert not isinstance(refused.value, EngineRestarting)


def test_feedback_counts_need_the_admin_key(stub: tuple[str, list[tuple[str, Any]]]) -> None:
    url, seen = stub
    client = GatewayClient(url, USER, ADMIN)
    assert run(client.feedback_counts("coffee-shop")) == [
        {"version": 1, "captured": 4, "up": 3, "down": 1, "up_rate": 0.75, "corrections": 1}
    ]
    assert seen == [("counts", "coffee-shop")]
    with pytest.raises(RequestRefused, match="no adapter is published for domain 'tea-house'"):
        run(client.feedback_counts("tea-house"))
    with pytest.raises(FeedbackNotCollected, match="stores no feedback"):
        run(client.feedback_counts("no-store"))
    with pytest.raises(AccessDenied, match="refused the admin key"):
        run(GatewayClient(url, USER, "wrong").feedback_counts("coffee-shop"))
    with pytest.raises(AccessDenied, match="no admin key"):
        run(GatewayClient(url, USER).feedback_counts("coffee-shop"))
