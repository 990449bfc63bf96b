"""The gateway's traces: one trace per request with the GenAI and lorastack attributes, and
never a prompt, an answer, a key or a query string in any span.

Each test gets its own SDK tracer provider with an in-memory exporter, handed to the
gateway (`build_gateway(tracer_provider=...)`): the global provider is never set.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from lorastack.errors import SettingsError
from lorastack.serve.tracing import DEFAULT_SERVICE_NAME, configure_tracing
from tests.unit.serve.conftest import COFFEE_VOICE, Running

KEY = "sk-tracing-test-0123456789abcdef"
SECRET = "zanzibar-quokka-7"
EMAIL = "jane.doe@example.com"
PROMPT = f"Tell me about the {SECRET} and write to {EMAIL}"
QUERY_SECRET = "query-secret-4711"
NEVER_RECORDED = (SECRET, EMAIL, KEY, QUERY_SECRET, COFFEE_VOICE, "echo from")
AUTH = {"authorization": f"Bearer {KEY}"}


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.shutdown()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def traced(
    start_gateway: Callable[..., Running],
    provider: TracerProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> Running:
    """A gateway with keys, traced, whose instrumentations are asked to capture every
    header (the operator's OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_* at their widest)."""
    for what in ("SERVER_REQUEST", "SERVER_RESPONSE", "CLIENT_REQUEST", "CLIENT_RESPONSE"):
        monkeypatch.setenv(f"OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_{what}", ".*")
    return start_gateway(tracer_provider=provider, api_keys=[KEY])


def _finished(exporter: InMemorySpanExporter, *names: str) -> list[ReadableSpan]:
    """The finished spans once those named have ended (the server span ends as the last
    byte goes out, so the client can be a moment ahead)."""
    deadline = time.monotonic() + 10
    while True:
        spans = list(exporter.get_finished_spans())
        if {s.name for s in spans} >= set(names) or time.monotonic() > deadline:
            return spans
        time.sleep(0.01)


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def _parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def _assert_nothing_leaks(spans: list[ReadableSpan]) -> None:
    """Names, attributes, events, statuses and resources: everything an exporter sends."""
    recorded = "\n".join(span.to_json() for span in spans)
    for text in NEVER_RECORDED:
        assert text not in recorded


def test_a_chat_through_a_domain_is_one_trace_with_its_model_tokens_and_guard_counts(
    traced: Running, exporter: InMemorySpanExporter
) -> None:
    body = {
        "model": "coffee-shop",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 20,
        "temperature": 0.5,
    }
    answer = traced.client.post(
        f"/v1/chat/completions?note={QUERY_SECRET}", json=body, headers=AUTH
    )
    assert answer.status_code == 200
    assert SECRET in answer.json()["choices"][0]["message"]["content"]  # the fake echoes

    spans = _finished(exporter, "POST /v1/chat/completions", "chat coffee-shop")
    server = _one(spans, "POST /v1/chat/completions")
    inference = _one(spans, "chat coffee-shop")
    load = _one(spans, "lorastack.adapter.load")
    guard_in = _one(spans, "lorastack.guard.input")
    guard_out = _one(spans, "lorastack.guard.output")
    assert {s.context.trace_id for s in spans} == {server.context.trace_id}

    assert server.kind is SpanKind.SERVER
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/v1/chat/completions"
    assert server.attributes["gen_ai.operation.name"] == "chat"
    assert server.attributes["gen_ai.provider.name"] == "vllm"
    assert server.attributes["gen_ai.request.model"] == "coffee-shop"
    assert server.attributes["gen_ai.response.model"] == "coffee-shop@v1"
    assert server.attributes["gen_ai.response.id"] == answer.json()["id"]
    assert server.attributes["lorastack.domain"] == "coffee-shop"
    assert server.attributes["lorastack.version"] == 1
    assert server.attributes["lorastack.canary"] is False
    assert server.attributes["lorastack.request_id"] == answer.headers["x-request-id"]
    assert server.attributes["lorastack.guard.input.masked"] == 1
    usage = answer.json()["usage"]
    assert server.attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"] > 0
    assert server.attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"] > 0
    # Asked to capture every header, the instrumentation still never records the key.
    assert server.attributes["http.request.header.authorization"] == ("[REDACTED]",)

    assert inference.kind is SpanKind.CLIENT
    assert _parent_of(inference) == server.context.span_id
    assert inference.attributes is not None
    assert inference.attributes["gen_ai.request.max_tokens"] == 20
    assert inference.attributes["gen_ai.request.temperature"] == 0.5
    assert inference.attributes["gen_ai.response.model"] == "coffee-shop@v1"
    assert inference.attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert inference.attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert inference.attributes["lorastack.version"] == 1

    assert _parent_of(load) == inference.context.span_id
    assert load.attributes is not None
    assert load.attributes["lorastack.adapter"] == "coffee-shop@v1"
    engine_calls = [s for s in spans if s.kind is SpanKind.CLIENT and s is not inference]
    assert {_parent_of(s) for s in engine_calls} == {
        inference.context.span_id,
        load.context.span_id,
    }

    assert _parent_of(guard_in) == server.context.span_id
    assert guard_in.attributes is not None
    assert guard_in.attributes["lorastack.guard.masked"] == 1
    assert guard_in.attributes["lorastack.guard.blocked"] == 0
    assert guard_in.attributes["lorastack.guard.entity_types"] == ("EMAIL_ADDRESS",)
    assert guard_out.attributes is not None
    assert guard_out.attributes["lorastack.domain"] == "coffee-shop"
    _assert_nothing_leaks(spans)


def test_a_stream_is_traced_to_its_end_with_its_usage_and_no_span_per_chunk(
    traced: Running, exporter: InMemorySpanExporter
) -> None:
    traced.fake.enqueue([f"{SECRET} ", "is ", "a ", "secret ", "of ", EMAIL])
    body = {
        "model": "coffee-shop",
        "messages": [{"role": "user", "content": PROMPT}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with traced.client.stream("POST", "/v1/chat/completions", json=body, headers=AUTH) as answer:
        streamed = answer.read().decode()
    assert SECRET in streamed and "[DONE]" in streamed

    spans = _finished(exporter, "POST /v1/chat/completions", "chat coffee-shop")
    server = _one(spans, "POST /v1/chat/completions")
    inference = _one(spans, "chat coffee-shop")
    assert inference.end_time is not None and server.end_time is not None
    for span in (server, inference):
        assert span.attributes is not None
        assert span.attributes["gen_ai.usage.output_tokens"] == 6
        assert span.attributes["gen_ai.usage.input_tokens"] > 0
    # A streamed answer's pieces are scanned without a span each: only the totals show
    # (the email the engine wrote is no value of the user's: redacted, not restored).
    assert server.attributes is not None
    assert server.attributes["lorastack.guard.output.redacted"] == 1
    assert [s.name for s in spans].count("lorastack.guard.output") == 0
    assert not [s for s in spans if "send" in s.name or "receive" in s.name]
    _assert_nothing_leaks(spans)


def test_a_text_completion_on_the_base_model(
    traced: Running, exporter: InMemorySpanExporter
) -> None:
    body = {"model": "tiny", "prompt": PROMPT}
    assert traced.client.post("/v1/completions", json=body, headers=AUTH).status_code == 200

    spans = _finished(exporter, "POST /v1/completions", "text_completion tiny")
    server = _one(spans, "POST /v1/completions")
    assert server.attributes is not None
    assert server.attributes["gen_ai.operation.name"] == "text_completion"
    assert server.attributes["lorastack.domain"] == "base"
    assert "lorastack.version" not in server.attributes
    assert not [s for s in spans if s.name == "lorastack.adapter.load"]
    _assert_nothing_leaks(spans)


def test_a_failure_is_recorded_by_its_code_never_by_its_message(
    traced: Running, exporter: InMemorySpanExporter
) -> None:
    # vLLM's own 400 messages are passed on to the client; they may quote the prompt.
    traced.fake.enqueue_error(400, f"cannot continue after {SECRET}")
    body = {"model": "coffee-shop", "messages": [{"role": "user", "content": PROMPT}]}
    answer = traced.client.post("/v1/chat/completions", json=body, headers=AUTH)
    assert answer.status_code == 400 and SECRET in answer.json()["error"]["message"]

    spans = _finished(exporter, "POST /v1/chat/completions", "chat coffee-shop")
    server = _one(spans, "POST /v1/chat/completions")
    inference = _one(spans, "chat coffee-shop")
    assert server.attributes is not None and inference.attributes is not None
    assert server.attributes["error.type"] == "invalid_request_error"
    assert inference.attributes["error.type"] == "BadRequest"
    assert not inference.status.is_ok
    _assert_nothing_leaks(spans)


def test_a_request_without_a_key_names_no_model(
    traced: Running, exporter: InMemorySpanExporter
) -> None:
    body = {"model": SECRET, "messages": [{"role": "user", "content": PROMPT}]}
    assert traced.client.post("/v1/chat/completions", json=body).status_code == 401
    spans = _finished(exporter, "POST /v1/chat/completions")
    server = _one(spans, "POST /v1/chat/completions")
    assert server.attributes is not None
    assert "gen_ai.request.model" not in server.attributes
    _assert_nothing_leaks(spans)


# -- configure_tracing: the OTEL_* variables ------------------------------------------


@pytest.fixture
def otel_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No OTEL_* variable set, whatever the machine running the tests has."""
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def test_without_otel_variables_nothing_is_set_up(otel_env: pytest.MonkeyPatch) -> None:
    before = trace.get_tracer_provider()
    assert configure_tracing() is None
    assert trace.get_tracer_provider() is before


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
        {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
        {"OTEL_TRACES_EXPORTER": ""},
    ],
)
def test_otel_variables_that_ask_for_no_exporter(
    otel_env: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for name, value in env.items():
        otel_env.setenv(name, value)
    assert configure_tracing() is None


@pytest.mark.parametrize(
    ("env", "service"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}, DEFAULT_SERVICE_NAME),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces"}, None),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, None),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "gw-eu-1"}, "gw-eu-1"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_RESOURCE_ATTRIBUTES": "service.name=x"}, "x"),
    ],
)
def test_otel_variables_that_ask_for_an_exporter(
    otel_env: pytest.MonkeyPatch, env: dict[str, str], service: str | None
) -> None:
    for name, value in env.items():
        otel_env.setenv(name, value)
    provider = configure_tracing()
    assert provider is not None
    try:
        attributes = provider.resource.attributes
        assert attributes[SERVICE_NAME] == (service or DEFAULT_SERVICE_NAME)
        assert attributes["service.version"]
    finally:
        provider.shutdown()  # no span was made: nothing is sent


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_TRACES_EXPORTER": "zipkin"},
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
    ],
)
def test_otel_variables_it_cannot_honour_stop_the_start(
    otel_env: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for name, value in env.items():
        otel_env.setenv(name, value)
    with pytest.raises(SettingsError, match="OTEL_"):
        configure_tracing()
