"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from lorastack.serve.deps import Gateway, GatewayDep
from lorastack.serve.errors import GatewayError, Unauthorized
from lorastack.serve.outcome import NO_DOMAIN
from lorastack.serve.schemas import error_responses
from lorastack.serve.targets import BASE_DOMAIN_LABEL

logger = logging.getLogger(__name__)

router = APIRouter(tags=["ops"])


@router.get("/health")
async def health() -> dict[str, str]:
    """The gateway process is alive."""
    return {"status": "ok"}


class Readiness(BaseModel):
    status: str
    engines_up: int
    engines: int
    registry: str


@router.get(
    "/ready",
    response_model=None,
    responses={
        200: {"model": Readiness, "description": "An engine answers; the registry is readable."},
        503: {"model": Readiness, "description": "Not ready yet (the engine is starting)."},
    },
)
async def ready(gateway: GatewayDep) -> JSONResponse:
    """An engine answers and the registry is readable."""
    engines = await asyncio.gather(
        *(e.upstream.healthy() for e in gateway.pool.endpoints if not e.restarting)
    )
    try:
        await asyncio.to_thread(gateway.registry.domains)
        registry_ok = True
    except OSError:
        registry_ok = False
    ok = any(engines) and registry_ok
    body = {
        "status": "ready" if ok else "not ready",
        "engines_up": sum(engines),
        "engines": len(gateway.pool.endpoints),
        "registry": "ok" if registry_ok else "unreadable",
    }
    return JSONResponse(body, status_code=200 if ok else 503)


# Domain labels that name no business: the base model, and requests refused before their
# `model` resolved. Every caller sees them.
_NAMELESS = frozenset({BASE_DOMAIN_LABEL, NO_DOMAIN})


def _visible_domains(gateway: Gateway, request: Request) -> Callable[[str], bool] | None:
    """Which domains the caller may see by name in /metrics; None: every one.

    The admin key sees everything; a client key, the domains it may use. A caller without
    a valid key is refused when the metrics need one (`metrics_auth: key`), and otherwise
    sees no domain's name (on a gateway without keys there is nothing to hide).
    """
    authorization = request.headers.getlist("authorization")
    keys = gateway.keys
    if keys.admin_enabled:
        try:
            keys.check_admin(authorization)
            return None
        except Unauthorized:
            pass  # perhaps a client key
    try:
        key = keys.client(authorization)
    except GatewayError:  # no valid key, or the keys cannot be read yet
        if gateway.metrics_auth == "key":
            raise
        return _NAMELESS.__contains__
    if key is None:  # a gateway without keys
        if gateway.metrics_auth == "key":
            raise Unauthorized("the metrics need an API key or the admin key")
        return None
    return lambda domain: domain in _NAMELESS or key.allows(domain)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}},
        **error_responses(401),
    },
)
async def metrics(gateway: GatewayDep, request: Request) -> Response:
    """Prometheus metrics; domains the caller may not see are summed as `_other`."""
    visible = _visible_domains(gateway, request)
    # Canary weights come from the registry (every replica's shared state), read now.
    try:
        await asyncio.to_thread(gateway.quality.monitor.refresh_gauges)
    except OSError as error:
        logger.warning("canary weights not refreshed: registry unreadable (%s)", error)
    return Response(gateway.metrics.render(visible), media_type=CONTENT_TYPE_LATEST)
