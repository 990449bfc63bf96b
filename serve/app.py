"""Build the gateway: its parts from the settings, and the FastAPI app around them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import TracerProvider
from starlette.types import ASGIApp

from lorastack import __version__
from lorastack.errors import BaseModelNotFound, LorastackError
from lorastack.feedback import FeedbackStore
from lorastack.guardrails import Detector, JsonlAuditLog, PolicyStore
from lorastack.guardrails.screening import ScreeningPool
from lorastack.models import ModelStore
from lorastack.registry import open_registry
from lorastack.serve import tracing
from lorastack.serve.adapters import AdapterManager
from lorastack.serve.admission import Admission
from lorastack.serve.audit import AdminAudit
from lorastack.serve.boundary import RequestBoundary
from lorastack.serve.capture import ExchangeCapture
from lorastack.serve.deps import Gateway
from lorastack.serve.errors import install_error_handlers
from lorastack.serve.guarding import GuardProvider
from lorastack.serve.http_protocol import LimitedHttpProtocol
from lorastack.serve.limits import BodySizeLimit
from lorastack.serve.metrics import Metrics
from lorastack.serve.pool import Endpoint, EnginePool
from lorastack.serve.prompt_size import PromptLimit
from lorastack.serve.quality import AnswerQuality
from lorastack.serve.rate_limits import usage_spender
from lorastack.serve.ratings import FeedbackService
from lorastack.serve.responses import PATH as RESPONSES_PATH
from lorastack.serve.routes import admin, admin_usage, feedback, keys, openai, ops, responses
from lorastack.serve.schemas import CHAT, COMPLETIONS
from lorastack.serve.service import CompletionService
from lorastack.serve.supervisor import EngineSupervisor
from lorastack.serve.targets import ServedModel
from lorastack.serve.tenancy import build_tenancy, database_engine
from lorastack.serve.upstream import Upstream, UpstreamApi
from lorastack.serve.usage import UsageRecorder
from lorastack.settings import GatewaySettings, Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

logger = logging.getLogger(__name__)

# Without screening a request's own work is parsing alone: more may be admitted at once.
ADMISSION_SLOTS_UNGUARDED = 16


def served_model(store: ModelStore, name: str) -> ServedModel:
    """The base model the engines run, with its weights' hash when this host has them."""
    try:
        return ServedModel(name, store.get(name).checkpoint_sha256)
    except BaseModelNotFound:
        logger.warning(
            "base model %s is not in this host's model store: adapters are matched to it "
            "by name only",
            name,
        )
        return ServedModel(name)


@contextmanager
def open_feedback_store(settings: Settings) -> Iterator[FeedbackStore | None]:
    """THE ONE PLACE where the gateway opens its feedback store from the settings
    (`database_url`, `lorastack.db.open_feedback_store`), closed on exit.

    Yields None when the store cannot be opened (the database is down, its schema cannot
    be migrated, its driver is not installed): the gateway then serves without capture and
    feedback, and one log line says why. Answers never depend on it.
    """
    with ExitStack() as stack:
        store: FeedbackStore | None = None
        try:
            # Imported here: only a gateway that opens a store pays for SQLAlchemy.
            from lorastack.db import open_feedback_store as open_sql_store

            store = stack.enter_context(open_sql_store(settings))
        except Exception as error:  # DatabaseError, ImportError: the type and its message
            logger.error(
                "capture and feedback are unavailable: the feedback store did not open: %s: %s",
                type(error).__name__,
                error,
            )
        yield store


def build_gateway(
    settings: Settings,
    upstream_urls: list[str],
    client: httpx.AsyncClient,
    *,
    detector: Detector | None,
    feedback_store: FeedbackStore | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Gateway:
    """The gateway's parts for these engines, from the settings.

    `detector` finds personal data for every domain's guard; it may be None only
    when the settings turn the guardrails off. `feedback_store` (`open_feedback_store`)
    keeps captured answers and their ratings; None: neither. `tracer_provider`
    (`tracing.configure_tracing`) gets the requests' spans; None: nothing is traced.
    """
    metrics = Metrics()
    tracer = tracing.tracer(tracer_provider)
    if tracer_provider is not None:
        # Each engine call a client span under its request's: its method, URL and status
        # (engines get no client key; bodies are never recorded). Metrics stay Prometheus'.
        HTTPXClientInstrumentor.instrument_client(
            client, tracer_provider=tracer_provider, meter_provider=NoOpMeterProvider()
        )
    store = ModelStore(settings.models_dir)
    registry = open_registry(settings, store)
    capacity = settings.gateway.max_adapters or settings.engine.max_cpu_loras
    api = UpstreamApi()  # the gateway's own engine is vLLM
    if settings.gateway.upstreams:
        api = UpstreamApi.of(settings.gateway.upstream_kind, settings.base_model)
    elif settings.gateway.upstream_kind != "vllm":
        logger.warning("upstream_kind applies to upstreams only: this gateway starts vLLM")
    endpoints = [
        Endpoint(upstream, AdapterManager(upstream, capacity, metrics, tracer))
        for upstream in (Upstream(url, client, api) for url in upstream_urls)
    ]
    pool = EnginePool(endpoints, settings.base_model, tracer)
    guards = None
    if settings.gateway.guardrails:
        if detector is None:
            raise ValueError("the guardrails are on: a PII detector is needed")
        audit = JsonlAuditLog(settings.runs_dir / "audit" / "pii.jsonl")
        policies = PolicyStore(settings.policies_dir, settings.guard_policy)
        guards = GuardProvider(policies, detector, ScreeningPool(), audit, metrics, tracer)
    served = served_model(store, settings.base_model)
    checkpoint = store.get(settings.base_model).path if served.checkpoint_sha256 else None
    prompt_limit = PromptLimit.for_checkpoint(settings.engine.max_model_len, checkpoint)
    quality = AnswerQuality(registry, metrics)
    capture, ratings = None, None
    if feedback_store is not None and guards is None:
        # Nothing would mask what is stored: capture nothing rather than raw personal data.
        logger.warning("capture and feedback are off: the guardrails are off on this gateway")
    elif feedback_store is not None and guards is not None:
        capture = ExchangeCapture(feedback_store, metrics, registry)
        ratings = FeedbackService(feedback_store, capture, guards, metrics, registry)
    service = CompletionService(
        registry, pool, guards, metrics, served, prompt_limit, quality, capture
    )
    engine = database_engine(feedback_store)
    tenancy = build_tenancy(settings.gateway, engine)
    service.caps = tenancy.caps
    service.usage_sinks.append(usage_spender(tenancy.limiter, tenancy.keys.by_name))
    usage, admin_audit = _usage_and_audit(engine, metrics, settings.gateway.usage_retention_days)
    if usage is not None:
        service.usage_sinks.append(usage.submit)
    return Gateway(
        registry,
        pool,
        service,
        tenancy.keys,
        metrics,
        settings.base_model,
        quality,
        capture,
        ratings,
        limiter=tenancy.limiter,
        metrics_auth=settings.gateway.metrics_auth,
        tracer_provider=tracer_provider,
        usage=usage,
        audit=admin_audit,
    )


def _usage_and_audit(
    engine: Engine | None, metrics: Metrics, retention_days: int | None
) -> tuple[UsageRecorder | None, AdminAudit]:
    """Answers' usage and the admin audit trail, on the gateway's database; without one,
    neither is recorded. Usage holds no text: it is recorded with the guardrails off too."""
    if engine is None:
        return None, AdminAudit()
    try:
        from lorastack.db import SqlAuditLog, SqlUsageStore  # with a database: SQLAlchemy

        usage = UsageRecorder(SqlUsageStore(engine), metrics, retention_days=retention_days)
        return usage, AdminAudit(SqlAuditLog(engine), metrics)
    except LorastackError as error:  # the database failed since the feedback store opened
        logger.error("usage and the audit trail are not recorded: %s", error)
        return None, AdminAudit()


class GatewayApp(FastAPI):
    """FastAPI with the request boundary outside everything, Starlette's own error layer
    included (it re-raises what it answered with a 500), and an OpenAPI document that
    lists what the gateway really answers. When traced, the server span is outermost, so
    it covers the boundary too and no exception ever reaches it (tracing.py)."""

    def build_middleware_stack(self) -> ASGIApp:
        gateway: Gateway = self.state.gateway
        paths = {route.path for route in self.routes if isinstance(route, APIRoute)}
        app = RequestBoundary(super().build_middleware_stack(), gateway.metrics, paths)
        if gateway.tracer_provider is None:
            return app
        return tracing.TracedServer(app, gateway.tracer_provider, paths)

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            self.openapi_schema = _without_validation_errors(super().openapi())
        return self.openapi_schema


def _without_validation_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """FastAPI documents a 422 for every body; the gateway answers those as 400s."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema


def create_app(
    gateway: Gateway,
    max_body_bytes: int,
    client: httpx.AsyncClient | None = None,
    supervisor: EngineSupervisor | None = None,
    *,
    body_timeout_s: float = GatewaySettings().body_timeout_s,
    keys_refresh_s: float = GatewaySettings().keys_refresh_s,
) -> FastAPI:
    """The HTTP app. It starts and stops the `supervisor`'s engine, and closes `client`."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if supervisor is not None:
            await supervisor.start()
        guards = gateway.service.guards
        if guards is not None:
            await asyncio.to_thread(guards.prepare)
        if gateway.capture is not None:
            gateway.capture.start()
        if gateway.usage is not None:
            gateway.usage.start()
        refresher = asyncio.create_task(gateway.keys.keep_fresh(keys_refresh_s))
        try:
            yield
        finally:
            refresher.cancel()
            if gateway.limiter is not None:  # the tokens of answers sent are counted first
                await asyncio.to_thread(gateway.limiter.close)
            if supervisor is not None:
                await supervisor.stop()
            if guards is not None:
                guards.pool.shutdown()
            gateway.quality.close()
            if gateway.capture is not None:  # what is queued is written first
                await asyncio.to_thread(gateway.capture.close)
            if gateway.usage is not None:  # likewise
                await asyncio.to_thread(gateway.usage.close)
            if client is not None:
                await client.aclose()

    app = GatewayApp(
        title="lorastack gateway",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        # `/v1/chat/completions/` is no endpoint: a 404, never a redirect built from the
        # client's Host header.
        redirect_slashes=False,
    )
    app.state.gateway = gateway
    install_error_handlers(app)
    app.include_router(openai.router)
    app.include_router(responses.router)
    app.include_router(feedback.router)
    app.include_router(admin.router)
    app.include_router(keys.router)
    app.include_router(admin_usage.router)
    app.include_router(ops.router)
    completion_paths = (CHAT.path, COMPLETIONS.path, RESPONSES_PATH)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=max_body_bytes,
        timeout_s=body_timeout_s,
        prompt_bytes=gateway.service.prompt_limit.max_request_bytes,
        prompt_paths=completion_paths,
    )
    # Outside the body limit: the key and the turn come before the body is read.
    guards = gateway.service.guards
    slots = guards.pool.workers if guards is not None else ADMISSION_SLOTS_UNGUARDED
    app.add_middleware(
        Admission,
        keys=gateway.keys,
        slots=slots,
        paths=completion_paths,
        limiter=gateway.limiter,
    )
    return app


def http_protocol(settings: GatewaySettings) -> type[LimitedHttpProtocol]:
    """uvicorn's connection protocol with the gateway's header limits (`uvicorn.run(http=)`)."""
    return LimitedHttpProtocol.configured(
        settings.max_headers, settings.max_header_bytes, settings.header_timeout_s
    )


def engine_client(read_timeout_s: float) -> httpx.AsyncClient:
    """One pooled HTTP client for all engine calls (no proxies: engines are local).

    `read_timeout_s` bounds each wait for the engine's next bytes, not a whole answer.
    """
    return httpx.AsyncClient(
        timeout=httpx.Timeout(read_timeout_s, connect=5.0),
        limits=httpx.Limits(max_connections=512, max_keepalive_connections=64),
        trust_env=False,
    )
