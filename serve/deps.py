"""Typed FastAPI dependencies: the gateway's parts, and the caller's key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from opentelemetry.trace import TracerProvider

from lorastack.audit import admin_key_actor
from lorastack.registry import AdapterRegistry
from lorastack.serve.audit import AdminAudit
from lorastack.serve.capture import ExchangeCapture
from lorastack.serve.keys import ClientKey, KeyStore
from lorastack.serve.metrics import Metrics
from lorastack.serve.outcome import Outcome, new_request_id, outcome_of
from lorastack.serve.pool import EnginePool
from lorastack.serve.quality import AnswerQuality
from lorastack.serve.rate_limits import KeyLimiter
from lorastack.serve.ratings import FeedbackService
from lorastack.serve.service import CompletionService
from lorastack.serve.usage import UsageRecorder
from lorastack.settings import MetricsAuth


@dataclass
class Gateway:
    """Everything the routes use, built once by `create_app`'s caller."""

    registry: AdapterRegistry
    pool: EnginePool
    service: CompletionService
    keys: KeyStore
    metrics: Metrics
    base_model: str
    quality: AnswerQuality
    capture: ExchangeCapture | None = None
    """None: this gateway captures nothing (no feedback store, or the guardrails are off)."""
    feedback: FeedbackService | None = None
    limiter: KeyLimiter | None = None
    """Counts each key's requests and tokens against its limits (rate_limits.py)."""
    metrics_auth: MetricsAuth = "open"
    """Who may read /metrics (`GatewaySettings.metrics_auth`)."""
    tracer_provider: TracerProvider | None = None
    """Where the requests' spans go (tracing.py); None: nothing is traced."""
    usage: UsageRecorder | None = None
    """Records each answer's usage; None: no database, nothing is recorded."""
    audit: AdminAudit = field(default_factory=AdminAudit)
    """Records admin actions (`await gateway.audit.record(...)`); without a database, none."""


def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


def _authorization(request: Request) -> list[str]:
    # Every Authorization header: two of them are ambiguous, and refused.
    return request.headers.getlist("authorization")


def client_key(gateway: GatewayDep, request: Request) -> ClientKey | None:
    return gateway.keys.client(_authorization(request))


def admin(gateway: GatewayDep, request: Request) -> None:
    gateway.keys.check_admin(_authorization(request))


def admin_actor(gateway: GatewayDep, request: Request) -> str:
    """Check the admin key; who the audit trail says acted: `admin-key:<12 hex of its
    sha256>`, never the key."""
    gateway.keys.check_admin(_authorization(request))
    assert gateway.keys.admin_sha256 is not None  # the check passed: there is one
    return admin_key_actor(gateway.keys.admin_sha256)


def outcome(request: Request) -> Outcome:
    """The request's outcome, put there by the boundary."""
    found = outcome_of(request.scope)
    if found is None:  # an app without its boundary (never the gateway's own)
        found = Outcome(new_request_id(), request.url.path)
        request.scope.setdefault("state", {})["outcome"] = found
    return found


ClientKeyDep = Annotated[ClientKey | None, Depends(client_key)]
AdminDep = Annotated[None, Depends(admin)]
AdminActorDep = Annotated[str, Depends(admin_actor)]
OutcomeDep = Annotated[Outcome, Depends(outcome)]
