"""What every command builds from the settings: the stores, the guards and the consoles."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from rich.console import Console

from lorastack.audit import AuditEvent, cli_actor
from lorastack.errors import LorastackError
from lorastack.feedback import utc_now
from lorastack.guardrails.detector import Detector, PresidioDetector
from lorastack.guardrails.guard import Guard
from lorastack.guardrails.policy import GuardPolicy, PolicyStore, load_policy
from lorastack.guardrails.runtime import limit_numpy_blas_threads
from lorastack.models import ModelStore
from lorastack.registry import AdapterRegistry, open_registry
from lorastack.settings import Settings, get_settings

# Results go to stdout (one value per line where scripts read it); progress to stderr.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


def settings() -> Settings:
    return get_settings()


def model_store() -> ModelStore:
    return ModelStore(settings().models_dir)


def registry() -> AdapterRegistry:
    return open_registry(settings(), model_store())


@lru_cache(maxsize=1)
def pii_detector() -> Detector:
    """The process's one PII detector; its models load when it is first used.

    A command owns its process, so this is where the process-wide setting the
    detector runs best with is applied (numpy's BLAS on one thread).
    """
    limit_numpy_blas_threads()
    return PresidioDetector()


def resolve_policy(domain: str | None, policy_file: Path | None = None) -> GuardPolicy:
    """The policy in `policy_file`, else the domain's (the shipped default without one)."""
    if policy_file is not None:
        return load_policy(policy_file)
    return PolicyStore(settings().policies_dir, settings().guard_policy).get(domain)


def guard_for(domain: str | None, policy_file: Path | None = None) -> Guard:
    """A guard with the process's detector, for a domain's policy or the one in `policy_file`."""
    return Guard(resolve_policy(domain, policy_file), pii_detector(), domain=domain)


def print_json(data: Any) -> None:
    out.out(json.dumps(data, indent=2, default=str), highlight=False)


def record_action(action: str, target: str, details: dict[str, Any] | None = None) -> None:
    """Record an admin action the command did (`adapters.promote`, on `coffee-shop@v3`) in
    the audit trail, as `cli:<user>`. The action is done: a database that fails costs a
    warning, never the command."""
    from lorastack.db import SqlAuditLog, open_engine  # SQLAlchemy only for these commands

    event = AuditEvent(utc_now(), cli_actor(), action, target, details or {})
    try:
        with open_engine(settings()) as engine:
            SqlAuditLog(engine).record(event)
    except LorastackError as error:
        err.print(f"warning: not recorded in the audit trail: {error}")
