"""Client mistakes are 4xx, never 5xx; limits hold before routing; every response counts."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.servers import send_raw
from tests.unit.serve.conftest import Running

KEY = "sk-edges-0123456789abcdef"


def _post(gw: Running, body: str, path: str = "/v1/chat/completions") -> httpx.Response:
    return gw.client.post(path, content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    "body",
    [
        '{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "temperature": NaN}',
        '{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "top_p": Infinity}',
        '{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "stream": true,'
        ' "stream_options": "yes"}',
        '{"model": "tiny", "messages": [{"role": "user", "content": "bad \\ud800"}]}',
        '{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "stop": ["\\udc00"]}',
    ],
)
def test_malformed_values_are_400s_not_500s_or_503s(gw: Running, body: str) -> None:
    response = _post(gw, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert gw.fake.completion_requests == []


def test_a_non_object_stream_options_on_completions_is_a_400(gw: Running) -> None:
    body = '{"model": "tiny", "prompt": "x", "stream": true, "stream_options": 3}'
    assert _post(gw, body, "/v1/completions").status_code == 400


def test_an_unexpected_error_is_one_log_line_without_a_traceback(
    gw: Running, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: Any) -> Any:
        raise RuntimeError("a message that could quote jane@example.com")

    monkeypatch.setattr(gw.gateway.service.pool, "session", broken)
    with caplog.at_level(logging.DEBUG):
        response = gw.chat("tiny", "hello jane@example.com")
    assert response.status_code == 500
    assert response.json()["error"]["message"] == "internal error"
    request_id = response.headers["x-request-id"]
    mentions = [r for r in caplog.records if "RuntimeError" in r.getMessage()]
    assert len(mentions) == 1
    assert request_id in mentions[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records)
    assert "jane@example.com" not in caplog.text


def test_too_many_or_too_large_headers_are_431_before_routing(gw: Running) -> None:
    many = b"".join(b"x-h%d: v\r\n" % i for i in range(20_000))
    answer = send_raw(gw.url, b"GET /health HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:80]
    assert b"request_headers_too_large" in answer
    big = b"x-big: " + b"a" * (8 * 1024 * 1024) + b"\r\n"
    answer = send_raw(gw.url, b"GET /health HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:80]
    assert httpx.get(f"{gw.url}/health").status_code == 200


def test_unfinished_headers_or_bodies_are_not_held_open(start_gateway: Any) -> None:
    gw = start_gateway(header_timeout_s=1, body_timeout_s=1)
    started = time.monotonic()
    assert send_raw(gw.url, b"GET /health HTTP/1.1\r\nHost: x\r\n") in (b"", b"<reset>")
    assert time.monotonic() - started < 4
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    answer = send_raw(gw.url, head + b'{"model":')
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]


def test_a_chunked_body_over_the_limit_is_413(start_gateway: Any) -> None:
    gw = start_gateway(max_body_bytes=2000)

    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"x" * 500

    response = gw.client.post("/v1/chat/completions", content=chunks())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_a_trailing_slash_is_a_404_never_a_redirect(gw: Running) -> None:
    response = gw.client.post("/v1/chat/completions/", json={}, headers={"host": "evil.example"})
    assert response.status_code == 404
    assert "location" not in response.headers
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_every_response_is_counted_by_status_and_error_code(start_gateway: Any) -> None:
    gw = start_gateway(api_keys=[KEY])
    auth = {"authorization": f"Bearer {KEY}"}
    gw.client.post("/v1/chat/completions", json={})  # 401
    body = {"model": "nope", "messages": [{"role": "user", "content": "x"}]}
    gw.client.post("/v1/chat/completions", json=body, headers=auth)  # 404
    gw.client.post("/v1/chat/completions", content="{", headers=auth)  # 400
    gw.fake.enqueue_error(500, "boom")
    body = {"model": "tiny", "messages": [{"role": "user", "content": "x"}]}
    gw.client.post("/v1/chat/completions", json=body, headers=auth)  # 502
    gw.client.post("/v1/chat/completions", json=body, headers=auth)  # 200
    metrics = gw.client.get("/metrics").text
    for status in ("401", "404", "400", "502", "200"):
        assert f'status="{status}"' in metrics, status
    for code in ("invalid_api_key", "model_not_found", "invalid_value", "upstream_error"):
        assert f'code="{code}"' in metrics, code
    assert 'domain="base",endpoint="/v1/chat/completions",status="502"' in metrics


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        (f"Bearer {KEY}", True),
        (f"bearer {KEY}", True),
        (f"BEARER {KEY}", True),
        (f"Bearer  {KEY}", False),
        (f"Bearer {KEY}, Bearer other", False),
        (f"Basic {KEY}", False),
        (KEY, False),
    ],
)
def test_the_key_header_is_read_strictly(start_gateway: Any, header: str, accepted: bool) -> None:
    gw = start_gateway(api_keys=[KEY])
    status = gw.client.get("/v1/models", headers={"authorization": header}).status_code
    assert status == (200 if accepted else 401)


def test_two_authorization_headers_are_refused(start_gateway: Any) -> None:
    gw = start_gateway(api_keys=[KEY])
    headers = [("authorization", f"Bearer {KEY}"), ("authorization", "Bearer other")]
    assert gw.client.get("/v1/models", headers=headers).status_code == 401


def test_the_openapi_document_lists_what_is_really_answered(gw: Running) -> None:
    document = gw.client.get("/openapi.json").json()
    text = str(document)
    assert "'422'" not in text and "HTTPValidationError" not in text
    chat = document["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert {"200", "400", "401", "404", "413", "503"} <= set(chat)
    assert chat["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChatCompletion"
    }
    assert "text/event-stream" in chat["200"]["content"]
    assert chat["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorResponse"
    }
