"""The gateway's audit trail: each admin action recorded once it was done, never in its way.

The admin routes (adapters, keys) call `record` after an action succeeded, with the actor
the admin key dependency gives them (`AdminActorDep`: `admin-key:<12 hex of its sha256>`,
never the key). The write runs off the event loop; a database that fails costs the record
(one log line, `lorastack_audit_failures_total`), never the action, which is done already.
A gateway without a database records nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from lorastack.audit import AuditEvent, AuditLog
from lorastack.feedback import utc_now
from lorastack.serve.metrics import Metrics

logger = logging.getLogger(__name__)


class AdminAudit:
    """Records admin actions in `log` (None: no database, nothing is recorded)."""

    def __init__(self, log: AuditLog | None = None, metrics: Metrics | None = None) -> None:
        self.log = log
        self._metrics = metrics

    async def record(
        self,
        actor: str,
        action: str,
        target: str,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Record that `actor` did `action` (`adapters.promote`, `keys.create`) on `target`
        (`coffee-shop@v3`, a key's name) just now; `details`: its parameters, JSON values,
        never a secret. Never raises."""
        if self.log is None:
            return
        event = AuditEvent(utc_now(), actor, action, target, dict(details or {}))
        try:
            await asyncio.to_thread(self.log.record, event)
        except Exception as error:
            # The type only: a database error's message can quote the row.
            logger.error(
                "audit: %s of %s by %s was done but not recorded (%s)",
                action,
                target,
                actor,
                type(error).__name__,
            )
            if self._metrics is not None:
                self._metrics.audit_failed(action)
