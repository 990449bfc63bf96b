"""The admin API's records: what the answers cost (`GET /admin/usage`) and who changed what
(`GET /admin/audit`), read from the gateway's database. Admin key only."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from datetime import date, datetime
from functools import partial
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from lorastack.errors import DatabaseError
from lorastack.periods import SINCE_FORMS, parse_since
from lorastack.serve.deps import AdminDep, GatewayDep
from lorastack.serve.errors import BadRequest, GatewayError
from lorastack.serve.schemas import error_responses
from lorastack.usage import UsageGrouping, UsageTotals

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/admin", tags=["admin"])

_ERRORS = error_responses(400, 401, 408, 413, 500, 503)
_NO_DATABASE = "this gateway has no database: usage and admin actions are not recorded"
T = TypeVar("T")

SinceQuery = Annotated[str, Query(max_length=64, description=f"from when: {SINCE_FORMS}")]


class DatabaseUnavailable(GatewayError):
    """The records cannot be read: no database here, or it failed."""

    status = 503
    type = "service_unavailable"
    code = "database_unavailable"


class UsageGroup(BaseModel):
    key: str | None = Field(description="the client key's name (by key; null: no key)")
    domain: str | None = Field(description="the domain or the base model (by domain, version)")
    version: int | None = Field(description="the adapter version (by version; null: base model)")
    day: date | None = Field(description="the UTC day (daily only)")
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    mean_latency_s: float


class UsageReport(BaseModel):
    since: datetime
    by: UsageGrouping
    daily: bool
    groups: list[UsageGroup] = Field(description="the most tokens first; daily: by day")


class AuditEntry(BaseModel):
    created_at: datetime
    actor: str = Field(description="admin-key:<12 hex of its sha256>, or cli:<user>")
    action: str
    target: str
    details: dict[str, Any]


class AuditReport(BaseModel):
    since: datetime | None
    action: str | None
    events: list[AuditEntry] = Field(description="newest first")


@router.get("/usage", response_model=UsageReport, responses=_ERRORS)
async def usage(
    _: AdminDep,
    gateway: GatewayDep,
    since: SinceQuery = "7d",
    by: UsageGrouping = "domain",
    daily: Annotated[bool, Query(description="one group per UTC day as well")] = False,
) -> dict[str, Any]:
    """Tokens and latency of the answers since `since`, summed by key, domain or version.

    What is still queued for the database (about a second's worth) is not counted yet."""
    start = _since(since)
    if gateway.usage is None:
        raise DatabaseUnavailable(_NO_DATABASE)
    totals = await _read(partial(gateway.usage.store.summary, start, by, daily=daily))
    return {
        "since": start,
        "by": by,
        "daily": daily,
        "groups": [_group(t) for t in totals],
    }


@router.get("/audit", response_model=AuditReport, responses=_ERRORS)
async def audit(
    _: AdminDep,
    gateway: GatewayDep,
    since: Annotated[str | None, Query(max_length=64, description=SINCE_FORMS)] = None,
    action: Annotated[
        str | None,
        Query(max_length=64, description="one action (adapters.promote) or a family (keys)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Admin actions (of the admin API and the command line), newest first."""
    start = _since(since) if since is not None else None
    log = gateway.audit.log
    if log is None:
        raise DatabaseUnavailable(_NO_DATABASE)
    found = await _read(partial(log.events, since=start, action=action, limit=limit))
    return {"since": start, "action": action, "events": [dataclasses.asdict(e) for e in found]}


def _since(text: str) -> datetime:
    try:
        return parse_since(text)
    except ValueError as error:
        # Named like the validation errors of the other query parameters (`query.by`).
        raise BadRequest(
            f"query.since: {error}", param="query.since", code="invalid_value"
        ) from None


async def _read(query: Callable[[], T]) -> T:
    try:
        return await asyncio.to_thread(query)
    except DatabaseError as error:
        logger.error("admin records: %s", error)
        raise DatabaseUnavailable("the database is unavailable; try again later") from None


def _group(totals: UsageTotals) -> dict[str, Any]:
    return {
        "key": totals.key_name,
        "domain": totals.model,
        "version": totals.version,
        "day": totals.day,
        "requests": totals.requests,
        "prompt_tokens": totals.prompt_tokens,
        "completion_tokens": totals.completion_tokens,
        "total_tokens": totals.total_tokens,
        "mean_latency_s": totals.mean_latency_s,
    }
