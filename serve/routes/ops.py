"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from lorastack.serve.deps import GatewayDep

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


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics(gateway: GatewayDep) -> Response:
    # Canary weights come from the registry (every replica's shared state), read now.
    try:
        await asyncio.to_thread(gateway.quality.monitor.refresh_gauges)
    except OSError as error:
        logger.warning("canary weights not refreshed: registry unreadable (%s)", error)
    return Response(gateway.metrics.render(), media_type=CONTENT_TYPE_LATEST)
