"""Build the gateway: its parts from the settings, and the FastAPI app around them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from lorastack import __version__
from lorastack.guardrails import JsonlAuditLog, PolicyStore
from lorastack.models import ModelStore
from lorastack.registry import AdapterRegistry
from lorastack.serve.adapters import AdapterManager
from lorastack.serve.completions import CompletionService
from lorastack.serve.deps import Gateway
from lorastack.serve.errors import install_error_handlers
from lorastack.serve.guarding import GuardProvider
from lorastack.serve.keys import KeyStore
from lorastack.serve.limits import BodySizeLimit
from lorastack.serve.metrics import Metrics
from lorastack.serve.pool import Endpoint, EnginePool
from lorastack.serve.routes import admin, openai, ops
from lorastack.serve.supervisor import EngineSupervisor
from lorastack.serve.upstream import Upstream
from lorastack.settings import Settings


def build_gateway(
    settings: Settings, upstream_urls: list[str], client: httpx.AsyncClient
) -> Gateway:
    """The gateway's parts for these engines, from the settings."""
    metrics = Metrics()
    registry = AdapterRegistry(
        settings.adapters_dir, ModelStore(settings.models_dir), settings.max_lora_rank
    )
    capacity = settings.gateway.max_adapters or settings.engine.max_cpu_loras
    endpoints = [
        Endpoint(upstream, AdapterManager(upstream, capacity, metrics))
        for upstream in (Upstream(url, client) for url in upstream_urls)
    ]
    pool = EnginePool(endpoints, settings.base_model)
    guards = None
    if settings.gateway.guardrails:
        audit = JsonlAuditLog(settings.runs_dir / "audit" / "pii.jsonl")
        guards = GuardProvider(PolicyStore(settings.policies_dir), audit, metrics)
    service = CompletionService(registry, pool, guards, metrics, settings.base_model)
    keys = KeyStore.from_settings(
        settings.gateway.api_keys, settings.gateway.keys_file, settings.gateway.admin_key
    )
    return Gateway(registry, pool, service, keys, metrics, settings.base_model)


def create_app(
    gateway: Gateway,
    max_body_bytes: int,
    client: httpx.AsyncClient | None = None,
    supervisor: EngineSupervisor | None = None,
) -> FastAPI:
    """The HTTP app. It starts and stops the `supervisor`'s engine, and closes `client`."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if supervisor is not None:
            await supervisor.start()
        if gateway.service.guards is not None:
            await asyncio.to_thread(gateway.service.guards.prepare)
        try:
            yield
        finally:
            if supervisor is not None:
                await supervisor.stop()
            if client is not None:
                await client.aclose()

    app = FastAPI(
        title="lorastack gateway",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.gateway = gateway
    install_error_handlers(app)
    app.include_router(openai.router)
    app.include_router(admin.router)
    app.include_router(ops.router)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    return app


def engine_client(timeout_s: float) -> httpx.AsyncClient:
    """One pooled HTTP client for all engine calls (no proxies: engines are local)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s, connect=5.0),
        limits=httpx.Limits(max_connections=512, max_keepalive_connections=64),
        trust_env=False,
    )
