"""The OpenAI-compatible API through the gateway, against the scripted fake engine."""

import json
from typing import Any

import httpx
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.serve.conftest import COFFEE_VOICE, Running


def _events(response: httpx.Response) -> list[Any]:
    lines = [line for line in response.text.splitlines() if line.startswith("data: ")]
    return [line[6:] if line == "data: [DONE]" else json.loads(line[6:]) for line in lines]


def test_a_domain_is_picked_with_the_model_field(gw: Running) -> None:
    response = gw.chat("coffee-shop", "What do you sell?")
    assert response.status_code == 200, response.text
    body = response.json()
    # The answer names the version that wrote it, in `model` and in a header.
    assert body["model"] == "coffee-shop@v1"
    assert response.headers["x-lorastack-adapter"] == "coffee-shop@v1"
    # The engine was asked for this domain's adapter version, loaded on first use.
    sent = gw.fake.completion_requests[-1].body
    assert sent["model"] == "coffee-shop@v1"
    assert gw.fake.load_calls == ["coffee-shop@v1"]
    assert body["choices"][0]["message"]["content"].startswith("echo from coffee-shop@v1")
    assert body["usage"]["total_tokens"] > 0


def test_versions_aliases_and_the_base_model(gw: Running, publish: Any) -> None:
    publish("coffee-shop", 9)  # v2, not promoted
    assert (
        gw.chat("coffee-shop", "x")
        .json()["choices"][0]["message"]["content"]
        .startswith("echo from coffee-shop@v1")
    )
    for model, engine_model in [
        ("coffee-shop@2", "coffee-shop@v2"),
        ("coffee-shop@v2", "coffee-shop@v2"),
        ("coffee-shop@prod", "coffee-shop@v1"),
        ("ledger-desk", "ledger-desk@v1"),
        ("tiny", "tiny"),
    ]:
        response = gw.chat(model, "hello")
        assert response.status_code == 200, response.text
        assert response.json()["model"] == engine_model
        assert gw.fake.completion_requests[-1].body["model"] == engine_model
    assert "x-lorastack-adapter" not in response.headers  # the base model answered last


def test_unknown_models_get_an_openai_404_naming_them(gw: Running) -> None:
    for model in ["nope", "coffee-shop@7", "coffee-shop@canary", "../etc", "Coffee-Shop"]:
        response = gw.chat(model, "x")
        assert response.status_code == 404
        error = response.json()["error"]
        assert error["code"] == "model_not_found"
        assert error["param"] == "model"
        assert f"`{model}`" in error["message"]
        assert "/" not in error["message"].replace(model, "")  # no filesystem paths
    assert gw.fake.completion_requests == []


def test_streaming_relays_chunks_and_ends_with_done(gw: Running) -> None:
    gw.fake.enqueue(["Fresh ", "croissants ", "every ", "morning."])
    response = gw.chat("coffee-shop", "What is good today?", stream=True)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "Fresh croissants every morning."
    assert {c["model"] for c in chunks} == {"coffee-shop@v1"}
    assert response.headers["x-lorastack-adapter"] == "coffee-shop@v1"
    assert all(c["choices"] for c in chunks)  # the usage chunk was not asked for


def test_streaming_usage_when_the_client_asks(gw: Running) -> None:
    gw.fake.enqueue(["a ", "b"])
    events = _events(
        gw.chat("ledger-desk", "x", stream=True, stream_options={"include_usage": True})
    )
    usage = [e for e in events[:-1] if not e["choices"]]
    assert usage and usage[-1]["usage"]["completion_tokens"] == 2


def test_text_completions_stream_and_not(gw: Running) -> None:
    response = gw.client.post(
        "/v1/completions", json={"model": "ledger-desk", "prompt": "Invoices are", "max_tokens": 5}
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "ledger-desk@v1"
    assert response.json()["choices"][0]["text"].startswith("echo from ledger-desk@v1")
    gw.fake.enqueue(["due ", "monthly."])
    streamed = gw.client.post(
        "/v1/completions", json={"model": "ledger-desk", "prompt": "Invoices are", "stream": True}
    )
    events = _events(streamed)
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == "due monthly."


def test_usual_parameters_pass_through(gw: Running) -> None:
    gw.chat("tiny", "x", temperature=0.2, top_p=0.9, max_tokens=7, seed=3, stop=["\n"], n=1)
    sent = gw.fake.completion_requests[-1].body
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"], sent["seed"]) == (
        0.2,
        0.9,
        7,
        3,
    )
    assert sent["stop"] == ["\n"]


def test_brand_voice_is_added_when_the_client_sends_none(gw: Running) -> None:
    gw.chat("coffee-shop", "hi")
    messages = gw.fake.completion_requests[-1].body["messages"]
    assert messages[0] == {"role": "system", "content": COFFEE_VOICE}
    assert messages[1]["content"] == "hi"
    gw.chat("tiny", "hi")
    assert gw.fake.completion_requests[-1].body["messages"] == [{"role": "user", "content": "hi"}]


def test_system_prompt_modes(start_gateway: Any, publish: Any) -> None:
    for mode in ("prepend", "replace", "keep"):
        publish(f"voice-{mode}", 3, system_prompt="BRAND", system_prompt_mode=mode)
    gw = start_gateway()
    own = [{"role": "system", "content": "CLIENT"}, {"role": "user", "content": "hi"}]
    expected = {"prepend": "BRAND\n\nCLIENT", "replace": "BRAND", "keep": "CLIENT"}
    for mode, content in expected.items():
        gw.client.post("/v1/chat/completions", json={"model": f"voice-{mode}", "messages": own})
        sent = gw.fake.completion_requests[-1].body["messages"]
        assert sent[0] == {"role": "system", "content": content}
        assert len(sent) == 2


def test_models_lists_the_base_model_and_every_domain(gw: Running) -> None:
    gw.chat("ledger-desk", "warm it up")
    data = {m["id"]: m for m in gw.client.get("/v1/models").json()["data"]}
    assert set(data) == {"tiny", "coffee-shop", "ledger-desk"}
    assert data["coffee-shop"]["display_name"] == "Bean There"
    assert data["coffee-shop"]["version"] == 1
    assert data["coffee-shop"]["loaded"] is False
    assert data["ledger-desk"]["loaded"] is True
    assert all(m["object"] == "model" for m in data.values())


def test_the_official_openai_client_works(gw: Running) -> None:
    client = OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0)
    answer = client.chat.completions.create(
        model="coffee-shop", messages=[{"role": "user", "content": "hello"}]
    )
    assert answer.model == "coffee-shop@v1"
    gw.fake.enqueue(["one ", "two"])
    stream = client.chat.completions.create(
        model="coffee-shop", messages=[{"role": "user", "content": "count"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "one two"
    assert next(m.id for m in client.models.list()) == "tiny"


def _sample(text: str, name: str, labels: dict[str, str]) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"no sample {name}{labels}")


def test_health_ready_and_metrics(gw: Running) -> None:
    assert gw.client.get("/health").json() == {"status": "ok"}
    assert gw.client.get("/ready").status_code == 200
    gw.chat("coffee-shop", "I'm Jane Porter")
    metrics = gw.client.get("/metrics").text
    coffee = {"domain": "coffee-shop"}
    chat = {**coffee, "endpoint": "/v1/chat/completions", "status": "200"}
    assert _sample(metrics, "lorastack_requests_total", chat) == 1
    assert _sample(metrics, "lorastack_adapter_loads_total", {**coffee, "result": "ok"}) == 1
    ready = {**coffee, "adapter": "coffee-shop@v1", "state": "ready"}
    assert _sample(metrics, "lorastack_adapter_state", ready) == 1
    person = {**coffee, "direction": "input", "entity": "PERSON", "action": "mask"}
    assert _sample(metrics, "lorastack_guardrail_actions_total", person) == 1
    v1 = {**coffee, "version": "v1"}
    assert _sample(metrics, "lorastack_request_latency_seconds_count", v1) == 1
    assert _sample(metrics, "lorastack_tokens_total", {**v1, "direction": "out"}) > 0
    gw.fake.healthy = False
    assert gw.client.get("/ready").status_code == 503
