"""`AuditLog` on SQL: who changed what, through the admin API or the command line."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from sqlalchemy import Engine, or_, select

from lorastack.audit import AuditEvent
from lorastack.db.migrate import upgrade
from lorastack.db.schema import AuditRow
from lorastack.db.sessions import Sessions, require_aware


class SqlAuditLog:
    """Admin actions in the lorastack database; brings its schema to the newest on opening.

    Every method blocks (call it off the event loop) and is safe to call from several
    threads. Failures of the database raise `DatabaseError`; a naive datetime, `ValueError`.
    """

    def __init__(self, engine: Engine) -> None:
        self._sessions = Sessions(engine)
        upgrade(engine)

    def record(self, event: AuditEvent) -> None:
        """Store one event, in a transaction of its own (admin actions are rare)."""
        require_aware(event.created_at, "created_at")
        with self._sessions.writing() as session:
            session.add(AuditRow(**dataclasses.asdict(event)))

    def events(
        self, *, since: datetime | None = None, action: str | None = None, limit: int = 100
    ) -> list[AuditEvent]:
        """The newest `limit` events since `since` (inclusive), newest first; `action` is
        one action (`adapters.promote`) or a family of them (`adapters`, `keys`)."""
        if limit < 1:
            raise ValueError(f"limit is at least 1, got {limit}")
        query = select(AuditRow).order_by(AuditRow.created_at.desc(), AuditRow.id.desc())
        if since is not None:
            require_aware(since, "since")
            query = query.where(AuditRow.created_at >= since)
        if action:
            query = query.where(
                or_(
                    AuditRow.action == action,
                    AuditRow.action.startswith(f"{action}.", autoescape=True),
                )
            )
        with self._sessions.reading() as session:
            return [_event(row) for row in session.scalars(query.limit(limit))]


def _event(row: AuditRow) -> AuditEvent:
    return AuditEvent(
        created_at=row.created_at,
        actor=row.actor,
        action=row.action,
        target=row.target,
        details=dict(row.details or {}),
    )
