"""Admission: keys take turns for the gateway's own work; refused floods wait."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.unit.serve.conftest import Running

FLOODER = "sk-flooder-0123456789abcdef"
NEIGHBOUR = "sk-neighbour-0123456789abcd"
FLOOD_STREAMS = 8


def test_a_request_without_a_valid_key_is_refused_before_its_body_is_read(
    start_gateway: Any,
) -> None:
    gw = start_gateway(api_keys=[NEIGHBOUR])
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    parts = urlsplit(gw.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as conn:
        conn.sendall(head + b'{"model": "tiny", "messages": [')
        # The answer comes while the other 99,970 bytes are still to come.
        assert conn.recv(65536).startswith(b"HTTP/1.1 401")


def test_a_key_whose_requests_keep_being_refused_is_slowed_and_no_other(
    start_gateway: Any,
) -> None:
    gw = start_gateway(api_keys=[FLOODER, NEIGHBOUR])
    refused: list[int] = []
    stop = threading.Event()

    def flood() -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                body = {"model": "nope", "messages": [{"role": "user", "content": "x"}]}
                headers = {"authorization": f"Bearer {FLOODER}"}
                status = client.post(
                    f"{gw.url}/v1/chat/completions", json=body, headers=headers
                ).status_code
                refused.append(status)

    flooders = [threading.Thread(target=flood) for _ in range(FLOOD_STREAMS)]
    started = time.monotonic()
    for thread in flooders:
        thread.start()
    try:
        time.sleep(2.0)
        answers = [_ask(gw, NEIGHBOUR).status_code for _ in range(5)]
    finally:
        stop.set()
        for thread in flooders:
            thread.join(10)
    flooded_s = time.monotonic() - started
    assert answers == [200] * 5
    assert set(refused) == {404}
    # 10 refusals a second are let through, however many streams wait for the next place
    # (a window of 1 s is open at each end, and each stream has one request in flight).
    assert len(refused) <= 10 * (flooded_s + 1) + FLOOD_STREAMS, (len(refused), flooded_s)


def _ask(gw: Running, key: str) -> httpx.Response:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}]}
    return gw.client.post(
        "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
    )


@pytest.mark.parametrize("path", ["/v1/models", "/health"])
def test_other_paths_are_not_admitted_at_all(gw: Running, path: str) -> None:
    assert gw.client.get(path).status_code == 200


def test_a_refusal_that_finds_the_window_full_is_owed_by_the_keys_next_request() -> None:
    import asyncio

    from lorastack.serve.admission import Admission

    admission = Admission(app=None, keys=None, slots=1, paths=(), refusals_per_s=2)  # type: ignore[arg-type]
    window = admission._refusals
    rate = admission._refusal_rate
    # A quiet key, or one with room in its window, is let in without waiting or a place.
    assert asyncio.run(admission._wait_out_refusals("k")) is False
    assert window.hit(rate, "k") and window.hit(rate, "k")  # the window is full ...
    admission._count_refusal("k")  # ... when one more refusal of the key is counted
    assert admission._owed == {"k": 1}
    # Its next request waits for two places: the one owed and its own.
    assert asyncio.run(admission._wait_out_refusals("k")) is True
    assert admission._owed == {}
    assert window.get_window_stats(rate, "k").remaining == 0
