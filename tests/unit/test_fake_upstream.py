"""The fake vLLM server behaves as its docstring says."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.fake_upstream import FakeUpstream, fake_upstream_fixture  # noqa: F401


def _chat(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def _events(response: httpx.Response) -> list[str]:
    """The `data:` payloads of an SSE response, read to its end."""
    return [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]


def _content(events: list[str]) -> str:
    chunks = [json.loads(e) for e in events if e != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])


def test_default_answer_echoes_model_and_prompt(fake_upstream: FakeUpstream) -> None:
    with httpx.Client(base_url=fake_upstream.url) as client:
        assert client.get("/health").status_code == 200
        fake_upstream.healthy = False
        assert client.get("/health").status_code == 503
        whole = client.post("/v1/chat/completions", json=_chat("base-model", "hi there")).json()
        assert whole["object"] == "chat.completion"
        assert whole["model"] == "base-model"
        assert whole["choices"][0]["message"] == {
            "role": "assistant",
            "content": "echo from base-model: hi there",
        }
        assert whole["choices"][0]["finish_reason"] == "stop"
        assert whole["usage"] == {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7}
        body = _chat("base-model", "hi", stream=True, stream_options={"include_usage": True})
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = _events(response)
        completion = client.post("/v1/completions", json={"model": "base-model", "prompt": "yo"})
    assert events[-1] == "[DONE]"
    assert _content(events) == "echo from base-model: hi"
    usage_chunk = json.loads(events[-2])
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["total_tokens"] == 5
    assert json.loads(events[0])["object"] == "chat.completion.chunk"
    assert completion.json()["choices"][0]["text"] == "echo from base-model: yo"
    assert completion.json()["object"] == "text_completion"
    assert [r.path for r in fake_upstream.completion_requests][-1] == "/v1/completions"
    assert fake_upstream.completion_requests[0].body["messages"][0]["content"] == "hi there"


def test_enqueued_chunks_arrive_in_order(fake_upstream: FakeUpstream) -> None:
    fake_upstream.enqueue(["a", "b", "c"], delay_s=0.01, finish_reason="length")
    fake_upstream.enqueue(["x", "y"])
    with httpx.Client(base_url=fake_upstream.url) as client:
        body = _chat("base-model", "q", stream=True)
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            events = _events(response)
        second = client.post("/v1/chat/completions", json=_chat("base-model", "q")).json()
    chunks = [json.loads(e) for e in events[:-1]]
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == ["a", "b", "c"]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, "length"]
    assert events[-1] == "[DONE]"
    assert second["choices"][0]["message"]["content"] == "xy"


def test_unknown_model_is_404_and_a_loaded_lora_answers(fake_upstream: FakeUpstream) -> None:
    with httpx.Client(base_url=fake_upstream.url) as client:
        missing = client.post("/v1/chat/completions", json=_chat("coffee", "hi"))
        assert missing.status_code == 404
        assert missing.json()["error"]["message"] == "The model `coffee` does not exist."
        load = {"lora_name": "coffee", "lora_path": "/adapters/coffee"}
        loaded = client.post("/v1/load_lora_adapter", json=load)
        assert loaded.status_code == 200 and "added successfully" in loaded.text
        again = client.post("/v1/load_lora_adapter", json=load)
        assert again.status_code == 400
        assert again.json()["error"]["type"] == "BadRequestError"
        ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
        answer = client.post("/v1/chat/completions", json=_chat("coffee", "hi")).json()
        assert client.post("/v1/unload_lora_adapter", json={"lora_name": "coffee"}).is_success
        gone = client.post("/v1/unload_lora_adapter", json={"lora_name": "coffee"})
    assert ids == ["base-model", "coffee"]
    assert answer["model"] == "coffee"
    assert answer["choices"][0]["message"]["content"] == "echo from coffee: hi"
    assert gone.status_code == 404 and gone.json()["error"]["code"] == 404
    assert fake_upstream.load_calls == ["coffee", "coffee"]
    assert fake_upstream.unload_calls == ["coffee", "coffee"]
    assert fake_upstream.loaded == {}


def test_scripted_load_failure(fake_upstream: FakeUpstream) -> None:
    fake_upstream.fail_next_load(500, "CUDA out of memory")
    load = {"lora_name": "coffee", "lora_path": "/adapters/coffee"}
    with httpx.Client(base_url=fake_upstream.url) as client:
        failed = client.post("/v1/load_lora_adapter", json=load)
        assert client.post("/v1/load_lora_adapter", json=load).status_code == 200
    assert failed.status_code == 500
    assert failed.json()["error"]["message"] == "CUDA out of memory"
    assert fake_upstream.loaded == {"coffee": "/adapters/coffee"}


def test_enqueued_error(fake_upstream: FakeUpstream) -> None:
    fake_upstream.enqueue_error(400, "too long", error_type="BadRequestError")
    with httpx.Client(base_url=fake_upstream.url) as client:
        failed = client.post("/v1/chat/completions", json=_chat("base-model", "hi", stream=True))
        after = client.post("/v1/chat/completions", json=_chat("base-model", "hi"))
    assert failed.status_code == 400
    assert failed.json() == {
        "error": {"message": "too long", "type": "BadRequestError", "param": None, "code": 400}
    }
    assert after.status_code == 200


def test_enqueued_disconnect_drops_the_stream(fake_upstream: FakeUpstream) -> None:
    fake_upstream.enqueue_disconnect(after_chunks=2)
    received: list[str] = []
    with httpx.Client(base_url=fake_upstream.url) as client:
        body = _chat("base-model", "hi", stream=True)
        with (
            pytest.raises(httpx.RemoteProtocolError),
            client.stream("POST", "/v1/chat/completions", json=body) as response,
        ):
            for line in response.iter_lines():
                if line.startswith("data: "):
                    received.append(line[len("data: ") :])
        assert client.get("/health").status_code == 200
    assert len(received) == 2 and "[DONE]" not in received
    assert fake_upstream.wait_for(lambda: fake_upstream.active_streams == 0)
    assert fake_upstream.cancelled_streams == 0


def test_client_closing_a_stream_early_is_counted(fake_upstream: FakeUpstream) -> None:
    fake_upstream.enqueue(["a"] * 50, delay_s=0.02)
    with httpx.Client(base_url=fake_upstream.url) as client:
        body = _chat("base-model", "hi", stream=True)
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
            assert fake_upstream.active_streams == 1
    assert fake_upstream.wait_for(lambda: fake_upstream.cancelled_streams == 1)
    assert fake_upstream.active_streams == 0


def test_kill_refuses_connections_and_restart_forgets_adapters() -> None:
    with FakeUpstream(base_model="tiny") as fake:
        port = fake.port
        load = {"lora_name": "coffee", "lora_path": "/adapters/coffee"}
        assert httpx.post(f"{fake.url}/v1/load_lora_adapter", json=load).status_code == 200
        fake.kill()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/health")
        fake.restart()
        assert fake.port == port
        models = httpx.get(f"{fake.url}/v1/models").json()["data"]
        assert [m["id"] for m in models] == ["tiny"]
        assert fake.loaded == {}
