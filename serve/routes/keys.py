"""The admin API's keys: create, list, revoke, rotate the database's client keys.

The same operations as `lorastack keys`, with the admin key; each is recorded in the audit
trail. A created or rotated key is in that one response only. The gateway that made the
change uses it at once; others sharing the database within `keys_refresh_s`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from lorastack.keys import ALL_DOMAINS, KeyLimits, ManagedKey, Period, parse_expiry
from lorastack.serve.deps import AdminActorDep, GatewayDep
from lorastack.serve.errors import BadRequest, KeysUnavailable
from lorastack.serve.keys import KeyStore, ManagedKeySource
from lorastack.serve.schemas import error_responses

router = APIRouter(prefix="/admin/keys", tags=["admin"])

_ERRORS = error_responses(400, 401, 404, 408, 409, 413, 500, 503)
KeyName = Annotated[str, Path(description="The key's name.")]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="A name for the key (its owner).")
    domains: list[str] = Field(default_factory=lambda: [ALL_DOMAINS], min_length=1)
    rpm: int | None = Field(default=None, ge=1, description="Requests per minute.")
    tpm: int | None = Field(default=None, ge=1, description="Tokens per minute.")
    budget: int | None = Field(default=None, ge=1, description="Tokens per `period`.")
    period: Period = "month"
    expires: str | None = Field(
        default=None, description="2027-01-31 (through that day, UTC), a time with its zone, 30d"
    )


def _source(keys: KeyStore) -> ManagedKeySource:
    if keys.managed is None:
        raise KeysUnavailable("this gateway has no database to keep keys in", code="no_database")
    return keys.managed


def key_view(key: ManagedKey, secret: str | None = None) -> dict[str, Any]:
    """A key as the API shows it: never the key, except `key` once when made or rotated."""
    limits = key.limits
    view: dict[str, Any] = {
        "name": key.name,
        "hint": f"...{key.hint}",
        "domains": list(key.domains),
        "rpm": limits.rpm,
        "tpm": limits.tpm,
        "budget": limits.budget_tokens,
        "period": limits.budget_period,
        "expires_at": key.expires_at,
        "created_at": key.created_at,
        "rotated_at": key.rotated_at,
        "revoked_at": key.revoked_at,
        "last_used_at": key.last_used_at,
    }
    if secret is not None:
        view["key"] = secret
    return view


@router.post("", status_code=201, responses=_ERRORS)
async def create_key(body: KeyCreate, gateway: GatewayDep, actor: AdminActorDep) -> dict[str, Any]:
    """Create a key; the response holds it, once."""
    source = _source(gateway.keys)
    now = datetime.now(UTC)
    try:
        expires_at = parse_expiry(body.expires, now) if body.expires else None
        limits = KeyLimits(body.rpm, body.tpm, body.budget, body.period if body.budget else None)
    except ValueError as error:
        raise BadRequest(str(error), param="expires") from None
    try:
        key, secret = await asyncio.to_thread(
            source.create,
            body.name,
            domains=tuple(body.domains),
            limits=limits,
            expires_at=expires_at,
            now=now,
        )
    except ValueError as error:
        raise BadRequest(str(error), param="name") from None
    await asyncio.to_thread(gateway.keys.refresh)
    await gateway.audit.record(actor, "keys.create", key.name, key.audit_details())
    return key_view(key, secret)


@router.get("", responses=_ERRORS)
async def list_keys(gateway: GatewayDep, _: AdminActorDep, all: bool = False) -> dict[str, Any]:
    """The keys (live ones; `?all=true`: revoked too), without the keys themselves."""
    source = _source(gateway.keys)
    keys = await asyncio.to_thread(source.list, include_revoked=all)
    return {"object": "list", "data": [key_view(key) for key in keys]}


@router.post("/{name}/revoke", responses=_ERRORS)
async def revoke_key(name: KeyName, gateway: GatewayDep, actor: AdminActorDep) -> dict[str, Any]:
    """The key stops working: here at once, on other gateways within `keys_refresh_s`."""
    key = await asyncio.to_thread(_source(gateway.keys).revoke, name)
    await asyncio.to_thread(gateway.keys.refresh)
    await gateway.audit.record(actor, "keys.revoke", name)
    return key_view(key)


@router.post("/{name}/rotate", responses=_ERRORS)
async def rotate_key(name: KeyName, gateway: GatewayDep, actor: AdminActorDep) -> dict[str, Any]:
    """A new key for the same name, domains and limits (in the response, once); the old
    one stops working."""
    key, secret = await asyncio.to_thread(_source(gateway.keys).rotate, name)
    await asyncio.to_thread(gateway.keys.refresh)
    await gateway.audit.record(actor, "keys.rotate", name)
    return key_view(key, secret)
