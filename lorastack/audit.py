"""Who changed what: one `AuditEvent` per admin action, through the admin API or the CLI.

Actions are adapter loads, unloads, promotions, rollbacks and canaries, and key changes.
The actor names the credential, never the credential itself: `admin-key:<12 hex of its
sha256>` through the API, `cli:<user>` from the command line.
"""

from __future__ import annotations

import getpass
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class AuditEvent:
    created_at: datetime
    actor: str
    action: str
    """`keys.create`, `keys.revoke`, `adapters.promote`, ..."""
    target: str
    """What it acted on: a key's name, `domain@version`, ..."""
    details: dict[str, Any] = field(default_factory=dict)
    """Parameters of the action; never a secret or a user's text."""


class AuditLog(Protocol):
    def record(self, event: AuditEvent) -> None: ...

    def events(
        self, *, since: datetime | None = None, action: str | None = None, limit: int = 100
    ) -> list[AuditEvent]:
        """The newest `limit` events since `since`, newest first; `action` is one action
        (`adapters.promote`) or a family of them (`adapters`, `keys`)."""
        ...


def admin_key_actor(admin_key_sha256: str) -> str:
    return f"admin-key:{admin_key_sha256[:12]}"


def admin_key_actor_of(admin_key: str) -> str:
    return admin_key_actor(hashlib.sha256(admin_key.encode("utf-8")).hexdigest())


def cli_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = "unknown"
    return f"cli:{user}"
