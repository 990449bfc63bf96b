"""The admin API: adapters' registry and engine state; load, unload, promote, roll back,
start and stop a canary; turn capture of a domain's answers on or off, and read what its
users said of each version.

It needs the admin key; client keys never open it. Registry writes take the registry's
file lock, so they run off the event loop. Each action that succeeded is recorded in the
audit trail with the admin key that did it (`gateway.audit`).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from lorastack.errors import AdapterNotFound
from lorastack.manifest import DEFAULT_ALIAS, CanaryGuard, CaptureSetting, DomainIndex
from lorastack.registry import AdapterRef, DomainSummary
from lorastack.serve.adapters import engine_name
from lorastack.serve.deps import AdminActorDep, AdminDep, GatewayDep
from lorastack.serve.errors import FeedbackUnavailable
from lorastack.serve.schemas import error_responses

router = APIRouter(prefix="/admin", tags=["admin"])

_ERRORS = error_responses(400, 401, 404, 408, 413, 500)
_LOAD_ERRORS = error_responses(400, 401, 404, 408, 413, 500, 502, 503)
_FEEDBACK_ERRORS = error_responses(400, 401, 404, 408, 413, 500, 503)


class AdapterAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="domain, domain@N or domain@alias")


class Promotion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: str
    version: int = Field(ge=1)
    alias: str = DEFAULT_ALIAS


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: str
    alias: str = DEFAULT_ALIAS


class CanaryStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: str
    version: int = Field(ge=1)
    weight: float = Field(gt=0, le=100, description="percent of the domain's conversations")
    guard: CanaryGuard | None = Field(
        default_factory=CanaryGuard,
        description="when to stop it automatically; omitted: the defaults; null: never",
    )


class CanaryStop(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: str
    reason: str = Field(default="stopped by an operator", max_length=500)


class CaptureChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: str
    enabled: bool
    retention_days: int | None = Field(
        default=None, ge=1, le=3650, description="omitted: as it is (30 days at first)"
    )


class VersionFeedback(BaseModel):
    version: int
    captured: int = Field(description="answers of this version stored (capture on)")
    up: int = Field(description="ratings of 1")
    down: int = Field(description="ratings of -1")
    up_rate: float | None = Field(description="up / (up + down); null without ratings")
    corrections: int = Field(description="ratings that came with a better answer")


class DomainFeedback(BaseModel):
    domain: str
    versions: list[VersionFeedback]


def _index(index: DomainIndex) -> dict[str, Any]:
    """A domain's aliases, canary and capture, as the admin API answers them."""
    return {
        "domain": index.domain,
        "aliases": index.aliases,
        "canary": index.canary.model_dump(mode="json") if index.canary else None,
        "last_canary": index.last_canary.model_dump(mode="json") if index.last_canary else None,
        # Never set: off, with the default retention.
        "capture": (index.capture or CaptureSetting()).model_dump(mode="json"),
    }


def _ref(domain: str, version: int | None) -> str:
    """The audit trail's target: `domain@vN`, or the domain when no version is known."""
    return f"{domain}@v{version}" if version is not None else domain


def _engine_states(gateway: GatewayDep) -> dict[str, list[dict[str, Any]]]:
    states: dict[str, list[dict[str, Any]]] = {}
    for index, endpoint in enumerate(gateway.pool.endpoints):
        for slot in endpoint.adapters.slots():
            states.setdefault(slot.name, []).append({"engine": index, **slot.public()})
    return states


@router.get("/adapters", responses=_ERRORS)
async def list_adapters(_: AdminDep, gateway: GatewayDep) -> dict[str, Any]:
    states = _engine_states(gateway)
    summaries: list[DomainSummary] = await asyncio.to_thread(gateway.registry.list)
    domains = []
    for summary in summaries:
        domain = summary.index.domain
        domains.append(
            {
                **_index(summary.index),
                "versions": [
                    {
                        "version": m.version,
                        "display_name": m.display_name,
                        "created_at": m.created_at.isoformat(),
                        "metrics": m.metrics,
                        "engines": states.get(engine_name(m), []),
                        "serving": gateway.quality.serving(domain, m.version),
                    }
                    for m in summary.versions
                ],
            }
        )
    # Whether this gateway can capture at all (a feedback store, the guardrails on).
    return {"domains": domains, "capture_available": gateway.capture is not None}


@router.post("/adapters/load", responses=_LOAD_ERRORS)
async def load(body: AdapterAction, actor: AdminActorDep, gateway: GatewayDep) -> dict[str, Any]:
    ref = AdapterRef.parse(body.model)
    manifest = gateway.registry.resolve(ref)
    path = await asyncio.to_thread(gateway.registry.version_dir, ref.domain, manifest.version)
    slots = await asyncio.gather(*(e.adapters.load(manifest, path) for e in gateway.pool.endpoints))
    name = engine_name(manifest)
    await gateway.audit.record(actor, "adapters.load", name, {"model": body.model})
    return {"adapter": name, "engines": [s.public() for s in slots]}


@router.post("/adapters/unload", responses=_LOAD_ERRORS)
async def unload(body: AdapterAction, actor: AdminActorDep, gateway: GatewayDep) -> dict[str, Any]:
    ref = AdapterRef.parse(body.model)
    manifest = gateway.registry.resolve(ref)
    name = engine_name(manifest)
    slots = await asyncio.gather(*(e.adapters.unload(name) for e in gateway.pool.endpoints))
    await gateway.audit.record(actor, "adapters.unload", name, {"model": body.model})
    return {"adapter": name, "engines": [s.public() for s in slots if s is not None]}


@router.post("/adapters/promote", responses=_ERRORS)
async def promote(body: Promotion, actor: AdminActorDep, gateway: GatewayDep) -> dict[str, Any]:
    # New requests resolve the alias to the new version at once; requests in
    # flight keep the version they hold until they finish. Promoting prod ends a canary.
    index = await asyncio.to_thread(gateway.registry.promote, body.domain, body.version, body.alias)
    target = _ref(body.domain, body.version)
    await gateway.audit.record(actor, "adapters.promote", target, {"alias": body.alias})
    return _index(index)


@router.post("/adapters/rollback", responses=_ERRORS)
async def rollback(body: Rollback, actor: AdminActorDep, gateway: GatewayDep) -> dict[str, Any]:
    index = await asyncio.to_thread(gateway.registry.rollback, body.domain, body.alias)
    target = _ref(body.domain, index.aliases.get(body.alias))  # the version it points at now
    await gateway.audit.record(actor, "adapters.rollback", target, {"alias": body.alias})
    return _index(index)


@router.post("/adapters/canary", responses=_ERRORS)
async def start_canary(
    body: CanaryStart, actor: AdminActorDep, gateway: GatewayDep
) -> dict[str, Any]:
    """Send `weight` percent of the domain's conversations to `version`, the rest to prod."""
    index = await asyncio.to_thread(
        gateway.registry.start_canary, body.domain, body.version, body.weight, body.guard
    )
    guard = body.guard.model_dump(mode="json") if body.guard is not None else None
    details = {"weight": body.weight, "guard": guard}
    await gateway.audit.record(actor, "adapters.canary", _ref(body.domain, body.version), details)
    return _index(index)


@router.post("/adapters/canary/stop", responses=_ERRORS)
async def stop_canary(
    body: CanaryStop, actor: AdminActorDep, gateway: GatewayDep
) -> dict[str, Any]:
    """Stop the domain's canary: prod answers every conversation again."""
    index = await asyncio.to_thread(gateway.registry.end_canary, body.domain, body.reason)
    ended = index.last_canary.version if index.last_canary is not None else None
    target = _ref(body.domain, ended)
    await gateway.audit.record(actor, "adapters.canary_stop", target, {"reason": body.reason})
    return _index(index)


@router.post("/adapters/capture", responses=_ERRORS)
async def set_capture(
    body: CaptureChange, actor: AdminActorDep, gateway: GatewayDep
) -> dict[str, Any]:
    """Capture the domain's served answers (masked) for feedback, or stop; applies to the
    next request on every gateway of this registry."""
    index = await asyncio.to_thread(
        gateway.registry.set_capture, body.domain, body.enabled, body.retention_days
    )
    details = {"enabled": body.enabled, "retention_days": body.retention_days}
    await gateway.audit.record(actor, "adapters.capture", body.domain, details)
    return _index(index)


@router.get("/feedback", response_model=DomainFeedback, responses=_FEEDBACK_ERRORS)
async def feedback_counts(
    domain: Annotated[str, Query(description="the domain, e.g. coffee-shop")],
    _: AdminDep,
    gateway: GatewayDep,
) -> dict[str, Any]:
    """What the domain's users said of each version: answers captured, ratings up and down,
    the share up, corrections. Every published version is listed (zeros before any
    answer), and so is a removed one whose answers the store still keeps."""
    if gateway.feedback is None:
        raise FeedbackUnavailable(
            "this gateway stores no feedback (no feedback store, or the guardrails are off)"
        )
    published = await asyncio.to_thread(gateway.registry.versions, domain)
    if not published:
        raise AdapterNotFound(f"no adapter is published for domain {domain!r}")
    counts = await gateway.feedback.counts(domain)
    numbers = sorted({m.version for m in published} | set(counts))
    return {
        "domain": domain,
        "versions": [_version_feedback(n, counts.get(n, {})) for n in numbers],
    }


def _version_feedback(version: int, counts: dict[str, int]) -> dict[str, Any]:
    up, down = counts.get("up", 0), counts.get("down", 0)
    return {
        "version": version,
        "captured": counts.get("captured", 0),
        "up": up,
        "down": down,
        "up_rate": up / (up + down) if up + down else None,
        "corrections": counts.get("corrections", 0),
    }
