"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from lorastack.serve.deps import GatewayDep

router = APIRouter(tags=["ops"])


@router.get("/health")
async def health() -> dict[str, str]:
    """The gateway process is alive."""
    return {"status": "ok"}


@router.get("/ready")
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


@router.get("/metrics")
async def metrics(gateway: GatewayDep) -> Response:
    return Response(gateway.metrics.render(), media_type=CONTENT_TYPE_LATEST)
