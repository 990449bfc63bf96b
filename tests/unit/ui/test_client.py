"""The client's canary calls and the model an answer names, over HTTP, against a stub that
answers in the gateway's contract (`POST /admin/adapters/canary`, `.../canary/stop`, and a
streamed answer whose chunks name `coffee-shop@v2`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from lorastack.ui.client import AnsweredBy, GatewayClient, GuardrailNotice, Message
from lorastack.ui.errors import AccessDenied, RequestRefused
from tests.servers import serve_in_thread
from tests.unit.ui.fake_gateway import collect, run

ADMIN = "stub-admin-key"


def _refusal(status: int, message: str) -> JSONResponse:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
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

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> StreamingResponse:
        seen.append(("chat", await request.json()))

        def chunks() -> Iterator[str]:
            for text in ("Hel", "lo"):
                chunk = {
                    "id": "c1",
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
    assert pieces == [AnsweredBy("coffee-shop@v2"), "Hel", "lo", GuardrailNotice(1)]
    assert seen[-1][1]["model"] == "coffee-shop"
