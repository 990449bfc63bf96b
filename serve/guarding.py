"""One guard per domain, following policy files as they change, and its metrics."""

from __future__ import annotations

import threading
from pathlib import Path

from lorastack.guardrails import (
    AppliedFinding,
    AuditSink,
    Direction,
    Guard,
    PolicyStore,
)
from lorastack.serve.metrics import Metrics

BASE_DOMAIN_LABEL = "base"


class GuardProvider:
    """Guards by domain; a policy file edited on disk takes effect on the next request."""

    def __init__(self, policies: PolicyStore, audit: AuditSink | None, metrics: Metrics) -> None:
        self._policies = policies
        self._audit = audit
        self._metrics = metrics
        self._guards: dict[str | None, tuple[float | None, Guard]] = {}
        self._lock = threading.Lock()

    def _mtime(self, domain: str | None) -> float | None:
        if domain is None:
            return None
        path: Path = self._policies.path_for(domain)
        try:
            return path.stat().st_mtime
        except OSError:
            return None

    def get(self, domain: str | None) -> Guard:
        mtime = self._mtime(domain)
        with self._lock:
            cached = self._guards.get(domain)
            if cached is not None and cached[0] == mtime:
                return cached[1]
            guard = Guard(self._policies.get(domain), audit=self._audit, domain=domain)
            self._guards[domain] = (mtime, guard)
            return guard

    def prepare(self) -> None:
        """Load the PII models before the first request needs them."""
        self.get(None).prepare()

    def count(
        self, domain: str | None, direction: Direction, findings: list[AppliedFinding]
    ) -> None:
        for applied in findings:
            self._metrics.guardrail(
                domain or BASE_DOMAIN_LABEL, direction.value, applied.type, applied.action.value
            )
