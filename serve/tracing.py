"""OpenTelemetry traces of the gateway, off unless the standard `OTEL_*` variables ask.

`configure_tracing` reads the variables once, at start. Without an exporter it returns None
and the gateway adds no instrumentation at all: lorastack's own spans then go to the API's
no-op tracer. With one, each request is a server span (the ASGI instrumentation, put around
the app by `TracedServer`), the engine calls are client spans under it (the httpx
instrumentation, app.py), and lorastack adds its own: the inference call to the engine
(pool.py), an adapter load (adapters.py) and the guard scans (guarding.py), with the GenAI
semantic conventions' attributes and lorastack's.

What a span may carry is decided here, once: model names, versions, token counts, entity
types and how many were masked, error types. Never a prompt's or an answer's text, an
error's message (it could quote either), a key, or a request's query string.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.environment_variables import OTEL_TRACES_EXPORTER
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_SDK_DISABLED,
)
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import HTTP_ROUTE
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.util.http import (
    OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS,
    get_custom_headers,
    sanitize_method,
)
from opentelemetry.util.types import AttributeValue
from starlette.types import ASGIApp, Receive, Scope, Send

from lorastack import __version__
from lorastack.errors import SettingsError
from lorastack.guardrails import Action, AppliedFinding, Direction
from lorastack.manifest import AdapterManifest
from lorastack.serve.schemas import COMPLETIONS, Api
from lorastack.serve.targets import Target

logger = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "lorastack-gateway"
"""`service.name` unless OTEL_SERVICE_NAME (or OTEL_RESOURCE_ATTRIBUTES) names it."""
PROVIDER = "vllm"
"""`gen_ai.provider.name`: who runs the model behind the gateway."""
NO_TRACER: Tracer = trace.NoOpTracer()

DOMAIN = "lorastack.domain"
"""The domain, or `base` for the base model (as the metrics name it)."""
VERSION = "lorastack.version"
"""The adapter version that answers (an integer); absent for the base model."""
CANARY = "lorastack.canary"
"""Whether the domain's running canary answers this request."""
ADAPTER = "lorastack.adapter"
"""An adapter's name inside the engine (`coffee-shop@v3`)."""
REQUEST_ID = "lorastack.request_id"
"""The `x-request-id` the client got, to find a request's log lines."""
GUARD = "lorastack.guard"
"""Prefix of the guard's counts: `lorastack.guard.masked` on a scan's span,
`lorastack.guard.input.masked` (a request's total) on its server span."""

# The word each action is counted under (`lorastack.guard.masked`).
_DONE = {
    Action.MASK: "masked",
    Action.REDACT: "redacted",
    Action.BLOCK: "blocked",
    Action.ALLOW: "allowed",
}
_OPERATIONS = {COMPLETIONS.path: "text_completion"}
"""`gen_ai.operation.name` by the engine path; every other completion API is a chat."""
# Header names (regexes, searched case-insensitively) whose values are never recorded, even
# when OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST asks for every header:
# `authorization` also covers proxy-authorization, `cookie` set-cookie, `api-key` x-api-key.
_SECRET_HEADERS = ("authorization", "cookie", "api-key")
_QUERY = "lorastack.query_string"


def configure_tracing() -> SdkTracerProvider | None:
    """A tracer provider exporting where the `OTEL_*` variables say; None when they ask for
    no exporter (the default), or when OTEL_SDK_DISABLED is true.

    An exporter is asked for by OTEL_TRACES_EXPORTER (`otlp`, `console`; `none`) or, without
    it, by an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT).
    Unlike the SDK's own auto-configuration, an unset OTEL_TRACES_EXPORTER means none: a
    gateway nobody asked to trace sends nothing anywhere. The exporters, the sampler
    (OTEL_TRACES_SAMPLER) and the batching (OTEL_BSP_*) read their own variables; nothing
    connects before the first batch of spans is sent.
    """
    env = os.environ
    if env.get(OTEL_SDK_DISABLED, "").strip().lower() == "true":
        return None
    names = [n.strip().lower() for n in env.get(OTEL_TRACES_EXPORTER, "").split(",") if n.strip()]
    if not names and (
        env.get(OTEL_EXPORTER_OTLP_ENDPOINT) or env.get(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
    ):
        names = ["otlp"]
    exporters = [_exporter(name) for name in names if name != "none"]
    if not exporters:
        return None
    provider = SdkTracerProvider(resource=_resource())
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    logger.info("tracing on: %s", ", ".join(type(e).__name__ for e in exporters))
    return provider


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise SettingsError(
            f"{OTEL_TRACES_EXPORTER}: unknown exporter {name!r} (otlp, console, none)"
        )
    protocol = (
        os.environ.get(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL)
        or os.environ.get(OTEL_EXPORTER_OTLP_PROTOCOL)
        or "http/protobuf"  # the OTLP specification's default
    ).strip()
    # Imported here: only a gateway that exports pays for protobuf (and gRPC).
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter()
    raise SettingsError(f"{OTEL_EXPORTER_OTLP_PROTOCOL}: {protocol!r} (http/protobuf or grpc)")


def _resource() -> Resource:
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; a name they
    # leave unset comes out as "unknown_service...", which the gateway replaces with its own.
    resource = Resource({SERVICE_VERSION: __version__}).merge(Resource.create())
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


def tracer(provider: TracerProvider | None) -> Tracer:
    """lorastack's own tracer on `provider`; without one, the API's no-op tracer."""
    return NO_TRACER if provider is None else provider.get_tracer("lorastack.serve", __version__)


class TracedServer:
    """The gateway inside the ASGI instrumentation's server span, one per HTTP request.

    The ASGI instrumentation is used directly, not FastAPI's (which wraps it): that one
    expects Starlette's error layer at the top of the stack, where the gateway's boundary
    is (it skips the app, logging why), and records exceptions with their messages.

    The instrumentation records the query string (`http.target`, `http.url`, `url.query`),
    a client's free text: it is shown each request without it, and the app gets it back.
    Its per-message `send`/`receive` spans are off (a stream would get one per chunk), so
    are its metrics (Prometheus has them), and the headers named in `_SECRET_HEADERS` are
    redacted whatever OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_* ask to capture. A path
    that is no route names its span by the method alone, like FastAPI's instrumentation.
    """

    def __init__(self, app: ASGIApp, provider: TracerProvider, routes: Collection[str]) -> None:
        self._app = app
        self._routes = frozenset(routes)
        sanitized = get_custom_headers(OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS)
        self._traced = OpenTelemetryMiddleware(
            self._with_query,
            default_span_details=self._span_details,
            tracer_provider=provider,
            meter_provider=NoOpMeterProvider(),
            http_capture_headers_sanitize_fields=[*sanitized, *_SECRET_HEADERS],
            exclude_spans=["receive", "send"],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        shown = {**scope, "query_string": b"", _QUERY: scope.get("query_string", b"")}
        await self._traced(shown, receive, send)

    async def _with_query(self, scope: Scope, receive: Receive, send: Send) -> None:
        restored = dict(scope)
        restored["query_string"] = restored.pop(_QUERY)
        await self._app(restored, receive, send)

    def _span_details(self, scope: Scope) -> tuple[str, dict[str, str]]:
        method = sanitize_method(str(scope.get("method", "")).strip())
        path = scope.get("path", "")
        if path in self._routes:
            return f"{method} {path}", {HTTP_ROUTE: path}
        return method, {}


@contextmanager
def active(span: Span, *, end: bool = True) -> Iterator[Span]:
    """`span` current inside the block (the spans started there nest under it).

    An error raised inside marks it failed by the error's type alone (`failed`) and ends it;
    otherwise it ends on leaving the block, or, with `end=False`, stays open for its owner.
    """
    if span is trace.INVALID_SPAN:  # not traced: nothing to make current, or to end
        yield span
        return
    finished = end
    try:
        with trace.use_span(
            span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        ):
            yield span
    except BaseException as error:
        finished = True
        if isinstance(error, Exception):  # not a cancellation: the client went away
            failed(span, type(error).__name__)
        raise
    finally:
        if finished:
            span.end()


def failed(span: Span, kind: str) -> None:
    """Mark `span` failed by a kind of error (an exception type, an error code): never
    its message, which could quote a prompt."""
    if span.is_recording():
        span.set_attribute(ERROR_TYPE, kind)
        span.set_status(Status(StatusCode.ERROR))


def _target_attributes(target: Target) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {DOMAIN: target.label}
    if target.manifest is not None:
        attributes[VERSION] = target.manifest.version
        attributes[CANARY] = target.split is not None and target.split.side == "canary"
    return attributes


def _operation(path: str) -> str:
    return _OPERATIONS.get(path, "chat")


def _usage_attributes(usage: object) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {}
    if isinstance(usage, Mapping):
        for name, field in (
            (gen_ai.GEN_AI_USAGE_INPUT_TOKENS, "prompt_tokens"),
            (gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS, "completion_tokens"),
        ):
            count = usage.get(field)
            if isinstance(count, int) and not isinstance(count, bool):
                attributes[name] = count
    return attributes


# -- a request's server span (call.py) ------------------------------------------------


def call_started(span: Span, target: Target, api: Api, request_id: str, response_id: str) -> None:
    """What the request asked for, once its `model` resolved."""
    if span.is_recording():
        span.set_attributes(
            {
                gen_ai.GEN_AI_OPERATION_NAME: _operation(api.path),
                gen_ai.GEN_AI_PROVIDER_NAME: PROVIDER,
                gen_ai.GEN_AI_REQUEST_MODEL: target.requested,
                gen_ai.GEN_AI_RESPONSE_ID: response_id,
                REQUEST_ID: request_id,
                **_target_attributes(target),
            }
        )


def call_answered(
    span: Span, target: Target, usage: object, found: Mapping[tuple[Direction, Action], int]
) -> None:
    """The answer is complete: who wrote it, its tokens, and what the guard did to it."""
    if span.is_recording():
        span.set_attributes(
            {
                gen_ai.GEN_AI_RESPONSE_MODEL: target.answered_by,
                **_usage_attributes(usage),
                **_guard_totals(found),
            }
        )


def _guard_totals(found: Mapping[tuple[Direction, Action], int]) -> dict[str, AttributeValue]:
    """A request's findings by direction and action (`lorastack.guard.input.masked`)."""
    return {
        f"{GUARD}.{direction.value}.{_DONE[action]}": count
        for (direction, action), count in found.items()
    }


# -- lorastack's own spans ------------------------------------------------------------


def inference_span(tracer: Tracer, target: Target, path: str, body: Mapping[str, Any]) -> Span:
    """One call to the engine, as the GenAI semantic conventions' inference span (a client
    span named `{operation} {model}`); its tokens come with the answer (`engine_answered`)."""
    if tracer is NO_TRACER:  # not traced: no attributes to gather
        return trace.INVALID_SPAN
    operation = _operation(path)
    attributes: dict[str, AttributeValue] = {
        gen_ai.GEN_AI_OPERATION_NAME: operation,
        gen_ai.GEN_AI_PROVIDER_NAME: PROVIDER,
        gen_ai.GEN_AI_REQUEST_MODEL: target.requested,
        **_target_attributes(target),
    }
    limit = body.get("max_tokens", body.get("max_completion_tokens"))
    for name, value in (
        (gen_ai.GEN_AI_REQUEST_MAX_TOKENS, limit),
        (gen_ai.GEN_AI_REQUEST_TEMPERATURE, body.get("temperature")),
    ):
        if isinstance(value, int | float) and not isinstance(value, bool):
            attributes[name] = value
    return tracer.start_span(
        f"{operation} {target.requested}", kind=SpanKind.CLIENT, attributes=attributes
    )


def engine_answered(span: Span, target: Target, usage: object) -> None:
    """The engine's answer (or a stream's usage event) arrived: its model and tokens."""
    if span.is_recording():
        span.set_attributes(
            {gen_ai.GEN_AI_RESPONSE_MODEL: target.answered_by, **_usage_attributes(usage)}
        )


def adapter_load_span(tracer: Tracer, manifest: AdapterManifest, name: str) -> Span:
    if tracer is NO_TRACER:
        return trace.INVALID_SPAN
    return tracer.start_span(
        "lorastack.adapter.load",
        attributes={DOMAIN: manifest.domain, VERSION: manifest.version, ADAPTER: name},
    )


def guard_span(tracer: Tracer, target: Target, direction: Direction, texts: int) -> Span:
    """One scan of a request's texts (all of a prompt's together, or a whole answer's)."""
    if tracer is NO_TRACER:
        return trace.INVALID_SPAN
    return tracer.start_span(
        f"{GUARD}.{direction.value}",
        attributes={**_target_attributes(target), f"{GUARD}.texts": texts},
    )


def guard_found(span: Span, findings: Iterable[AppliedFinding]) -> None:
    """What a scan found: how many of each action, and the entity types (never a value)."""
    if not span.is_recording():
        return
    findings = list(findings)
    actions = Counter(applied.action for applied in findings)
    attributes: dict[str, AttributeValue] = {
        f"{GUARD}.{done}": actions[action] for action, done in _DONE.items()
    }
    types = sorted({applied.type for applied in findings})
    if types:
        attributes[f"{GUARD}.entity_types"] = types
    span.set_attributes(attributes)


def guard_failed_open() -> None:
    """The current scan let its texts through unscanned (its policy's `fail_open`)."""
    trace.get_current_span().set_attribute(f"{GUARD}.failed_open", True)
