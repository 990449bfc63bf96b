"""Runtime adapter swapping: eviction, in-use protection, admin actions, promotion."""

import threading
import time
from typing import Any

import httpx

from tests.unit.serve.conftest import ADMIN_KEY, Running

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


def _stream_in_background(gw: Running, model: str, pieces: int, delay_s: float) -> Any:
    gw.fake.enqueue([f"w{i} " for i in range(pieces)], delay_s=delay_s)
    result: dict[str, Any] = {}

    def run() -> None:
        body = {"model": model, "messages": [{"role": "user", "content": "go"}], "stream": True}
        response = httpx.post(f"{gw.url}/v1/chat/completions", json=body, timeout=30)
        result["status"] = response.status_code
        result["text"] = response.text

    thread = threading.Thread(target=run)
    thread.start()
    assert gw.fake.wait_for(lambda: gw.fake.active_streams >= 1, timeout_s=5)
    return thread, result


def test_least_recently_used_idle_adapter_is_evicted(start_gateway: Any, publish: Any) -> None:
    publish("tea-room", 4)
    gw = start_gateway(max_adapters=2)
    for model in ("coffee-shop", "ledger-desk"):
        assert gw.chat(model, "x").status_code == 200
    assert gw.chat("coffee-shop", "touch it again").status_code == 200
    assert gw.chat("tea-room", "x").status_code == 200
    assert gw.fake.unload_calls == ["ledger-desk@v1"]
    assert set(gw.fake.loaded) == {"coffee-shop@v1", "tea-room@v1"}
    metrics = gw.client.get("/metrics").text
    assert 'lorastack_adapter_evictions_total{domain="ledger-desk"} 1.0' in metrics


def test_an_adapter_in_use_is_never_evicted(start_gateway: Any) -> None:
    gw = start_gateway(max_adapters=1)
    thread, result = _stream_in_background(gw, "coffee-shop", 40, 0.02)
    assert gw.chat("ledger-desk", "meanwhile").status_code == 200
    assert "coffee-shop@v1" not in gw.fake.unload_calls
    thread.join()
    assert result["status"] == 200 and result["text"].endswith("data: [DONE]\n\n")
    assert gw.chat("coffee-shop", "later").status_code == 200


def test_admin_lists_loads_and_unloads(gw: Running) -> None:
    loaded = gw.client.post("/admin/adapters/load", json={"model": "ledger-desk"}, headers=ADMIN)
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["engines"][0]["state"] == "ready"
    listing = gw.client.get("/admin/adapters", headers=ADMIN).json()
    domains = {d["domain"]: d for d in listing["domains"]}
    assert domains["coffee-shop"]["aliases"] == {"prod": 1}
    ledger = domains["ledger-desk"]["versions"][0]
    assert ledger["engines"][0]["state"] == "ready"
    unloaded = gw.client.post(
        "/admin/adapters/unload", json={"model": "ledger-desk"}, headers=ADMIN
    )
    assert unloaded.json()["engines"][0]["state"] == "absent"
    assert gw.fake.unload_calls == ["ledger-desk@v1"]
    missing = gw.client.post("/admin/adapters/load", json={"model": "nope"}, headers=ADMIN)
    assert missing.status_code == 404


def test_admin_unload_waits_for_requests_in_flight(gw: Running) -> None:
    thread, result = _stream_in_background(gw, "coffee-shop", 30, 0.02)
    started = time.monotonic()
    unloaded = gw.client.post(
        "/admin/adapters/unload", json={"model": "coffee-shop"}, headers=ADMIN
    )
    assert unloaded.status_code == 200
    thread.join()
    assert result["text"].endswith("data: [DONE]\n\n")
    assert time.monotonic() - started > 0.2  # it drained first
    assert gw.chat("coffee-shop", "reloads").status_code == 200


def test_promote_switches_new_requests_while_old_ones_finish(gw: Running, publish: Any) -> None:
    publish("coffee-shop", 7)  # v2
    thread, result = _stream_in_background(gw, "coffee-shop", 30, 0.02)
    promoted = gw.client.post(
        "/admin/adapters/promote", json={"domain": "coffee-shop", "version": 2}, headers=ADMIN
    )
    assert promoted.json()["aliases"] == {"prod": 2}
    answer = gw.chat("coffee-shop", "which version?").json()["choices"][0]["message"]["content"]
    assert answer.startswith("echo from coffee-shop@v2")
    thread.join()
    assert result["status"] == 200 and result["text"].endswith("data: [DONE]\n\n")
    streamed_on = [r.body["model"] for r in gw.fake.completion_requests if r.body.get("stream")]
    assert streamed_on == ["coffee-shop@v1"]
    rolled = gw.client.post(
        "/admin/adapters/rollback", json={"domain": "coffee-shop"}, headers=ADMIN
    )
    assert rolled.json()["aliases"] == {"prod": 1}
    again = gw.chat("coffee-shop", "and now?").json()["choices"][0]["message"]["content"]
    assert again.startswith("echo from coffee-shop@v1")
    bad = gw.client.post("/admin/adapters/rollback", json={"domain": "coffee-shop"}, headers=ADMIN)
    assert bad.status_code == 400
