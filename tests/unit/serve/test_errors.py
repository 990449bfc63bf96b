"""Every client mistake and every engine failure is an OpenAI error with the right status."""

import threading
import time
from typing import Any

import httpx
from sqlalchemy import update

from lorastack.db.schema import RegistryDomainRow
from lorastack.registry.database import DatabaseIndex
from tests.unit.serve.conftest import Running


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in error["message"]
    return dict(error)


def test_bad_bodies_are_400(gw: Running) -> None:
    post = gw.client.post
    path = "/v1/chat/completions"
    headers = {"content-type": "application/json"}
    assert "not valid JSON" in _error(post(path, content=b"{bad", headers=headers), 400)["message"]
    assert "JSON object" in _error(post(path, content=b"[1, 2]", headers=headers), 400)["message"]
    wrong = _error(post(path, json={"model": "tiny", "messages": "hello"}), 400)
    assert wrong["param"] == "messages"
    missing = _error(post(path, json={"messages": [{"role": "user", "content": "x"}]}), 400)
    assert missing["param"] == "model"
    role = _error(post(path, json={"model": "tiny", "messages": [{"role": "boss"}]}), 400)
    assert role["param"] == "messages.0.role"
    prompt = _error(post("/v1/completions", json={"model": "tiny", "prompt": 5}), 400)
    assert prompt["param"].startswith("prompt")
    assert gw.fake.completion_requests == []


def test_body_too_large_is_413(start_gateway: Any) -> None:
    gw = start_gateway(max_body_bytes=2000)
    response = gw.chat("tiny", "x" * 5000)
    assert _error(response, 413)["code"] == "request_too_large"


def test_engine_errors_keep_their_meaning(gw: Running) -> None:
    gw.fake.enqueue_error(400, "This model's maximum context length is 2048 tokens.")
    too_long = _error(gw.chat("tiny", "long"), 400)
    assert "maximum context length is 2048" in too_long["message"]
    gw.fake.enqueue_error(500, "CUDA error: an illegal memory access", error_type="InternalError")
    failed = _error(gw.chat("tiny", "x"), 502)
    assert "CUDA" not in failed["message"]


def test_engine_down_is_503_with_retry_after_and_recovers(gw: Running) -> None:
    assert gw.chat("coffee-shop", "before").status_code == 200
    gw.fake.kill()
    down = gw.chat("coffee-shop", "while down")
    assert _error(down, 503)["code"] == "engine_unavailable"
    assert int(down.headers["retry-after"]) > 0
    gw.fake.restart()  # a restarted engine has forgotten every adapter
    time.sleep(2.1)  # the gateway rests a downed engine briefly before trying it again
    after = gw.chat("coffee-shop", "after")
    assert after.status_code == 200, after.text
    assert gw.fake.loaded == {"coffee-shop@v1": gw.fake.loaded["coffee-shop@v1"]}


def test_an_engine_that_drops_a_stream_gives_an_error_event(gw: Running) -> None:
    gw.fake.enqueue_disconnect(after_chunks=2)
    response = gw.chat("tiny", "x", stream=True)
    assert response.status_code == 200
    lines = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    assert '"error"' in lines[-2]
    assert "engine_unavailable" in lines[-2]


def test_vllm_endpoints_and_unknown_routes_are_not_reachable(gw: Running) -> None:
    for path in ["/v1/load_lora_adapter", "/v1/unload_lora_adapter", "/tokenize", "/nope"]:
        response = gw.client.post(path, json={"lora_name": "x", "lora_path": "/etc"})
        assert response.status_code in (404, 405)
        assert "error" in response.json()
    assert gw.fake.load_calls == []


def test_a_client_that_disconnects_stops_the_generation_upstream(gw: Running) -> None:
    gw.fake.enqueue([f"word{i} " for i in range(200)], delay_s=0.02)
    body = {"model": "tiny", "messages": [{"role": "user", "content": "go"}], "stream": True}
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json=body, timeout=10) as response:
        for _ in zip(range(3), response.iter_lines(), strict=False):
            pass
    assert gw.fake.wait_for(lambda: gw.fake.cancelled_streams == 1, timeout_s=5)
    assert gw.fake.active_streams == 0


def test_failed_adapter_load_is_a_clear_error_and_the_next_request_retries(
    gw: Running,
) -> None:
    gw.fake.fail_next_load(500, "CUDA out of memory")
    failed = _error(gw.chat("coffee-shop", "x"), 503)
    assert failed["code"] == "adapter_load_failed"
    assert "coffee-shop" in failed["message"]
    admin = gw.gateway.pool.endpoints[0].adapters
    assert admin.state_of("coffee-shop@v1").value == "failed"
    assert gw.chat("coffee-shop", "again").status_code == 200
    assert gw.fake.load_calls == ["coffee-shop@v1", "coffee-shop@v1"]


def test_concurrent_first_requests_cause_one_load(gw: Running) -> None:
    gw.fake.load_delay_s = 0.3
    results: list[int] = []

    def call() -> None:
        results.append(gw.chat("ledger-desk", "together").status_code)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 6
    assert gw.fake.load_calls == ["ledger-desk@v1"]


def test_a_stream_after_an_engine_restart_reloads_the_adapter(gw: Running) -> None:
    assert gw.chat("coffee-shop", "before", stream=True).status_code == 200
    gw.fake.kill()
    gw.fake.restart()
    time.sleep(2.1)
    after = gw.chat("coffee-shop", "after", stream=True)
    assert after.status_code == 200, after.text
    assert "coffee-shop@v1" in gw.fake.loaded


def test_a_corrupt_domain_hides_no_other_and_leaks_no_path(gw: Running) -> None:
    backend = gw.gateway.registry.backend
    assert isinstance(backend, DatabaseIndex)
    with backend.engine.begin() as connection:
        connection.execute(
            update(RegistryDomainRow)
            .where(RegistryDomainRow.domain == "ledger-desk")
            .values(index={"aliases": "not a mapping"})
        )
    listed = gw.client.get("/v1/models")
    assert listed.status_code == 200
    ids = {model["id"] for model in listed.json()["data"]}
    assert "coffee-shop" in ids
    assert "ledger-desk" not in ids
    error = _error(gw.chat("ledger-desk", "hello"), 500)
    assert "cannot be read" in error["message"]
    assert backend.description not in error["message"]
    assert str(gw.gateway.registry.models.root.parent) not in error["message"]
    assert gw.chat("coffee-shop", "hello").status_code == 200
