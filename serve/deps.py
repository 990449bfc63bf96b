"""Typed FastAPI dependencies: the gateway's parts, and the caller's key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request

from lorastack.registry import AdapterRegistry
from lorastack.serve.completions import CompletionService
from lorastack.serve.keys import ClientKey, KeyStore
from lorastack.serve.metrics import Metrics
from lorastack.serve.pool import EnginePool


@dataclass
class Gateway:
    """Everything the routes use, built once by `create_app`'s caller."""

    registry: AdapterRegistry
    pool: EnginePool
    service: CompletionService
    keys: KeyStore
    metrics: Metrics
    base_model: str


def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


def client_key(
    gateway: GatewayDep, authorization: Annotated[str | None, Header()] = None
) -> ClientKey | None:
    return gateway.keys.client(authorization)


def admin(gateway: GatewayDep, authorization: Annotated[str | None, Header()] = None) -> None:
    gateway.keys.check_admin(authorization)


ClientKeyDep = Annotated[ClientKey | None, Depends(client_key)]
AdminDep = Annotated[None, Depends(admin)]
