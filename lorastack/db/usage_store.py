"""`UsageStore` on SQL: each answer's tokens and latency, summed by key, domain or version."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Date,
    Engine,
    String,
    delete,
    func,
    insert,
    select,
)

from lorastack.db.migrate import upgrade
from lorastack.db.schema import UsageRow
from lorastack.db.sessions import Sessions, require_aware
from lorastack.usage import UsageEvent, UsageGrouping, UsageTotals

# The columns each grouping sums by; the others are None in its totals.
_GROUPS: dict[str, tuple[str, ...]] = {
    "key": ("key_name",),
    "domain": ("model",),
    "version": ("model", "version"),
}


class SqlUsageStore:
    """Usage rows in the lorastack database; brings its schema to the newest on opening.

    Every method blocks (call it off the event loop) and is safe to call from several
    threads. Failures of the database raise `DatabaseError`; a naive datetime, `ValueError`.
    """

    def __init__(self, engine: Engine) -> None:
        self._sessions = Sessions(engine)
        upgrade(engine)

    def add_usage(self, events: Sequence[UsageEvent]) -> None:
        """Store a batch in one transaction."""
        for event in events:
            require_aware(event.created_at, "created_at")
        if events:
            with self._sessions.writing() as session:
                # The table's columns are the event's fields.
                session.execute(insert(UsageRow), [dataclasses.asdict(e) for e in events])

    def summary(
        self, since: datetime, by: UsageGrouping, *, daily: bool = False
    ) -> list[UsageTotals]:
        """The totals of the answers since `since` (inclusive) per group, and per UTC day
        with `daily`: the most tokens first (with `daily`, oldest day first)."""
        require_aware(since, "since")
        if by not in _GROUPS:
            raise ValueError(f"usage is summed by key, domain or version, not {by!r}")
        grouped: list[ColumnElement[Any]] = [getattr(UsageRow, name) for name in _GROUPS[by]]
        if daily:
            grouped.append(self._day())
        query = (
            select(
                *grouped,
                func.count(),
                func.sum(UsageRow.prompt_tokens),
                func.sum(UsageRow.completion_tokens),
                func.avg(UsageRow.latency_s),
            )
            .where(UsageRow.created_at >= since)
            .group_by(*grouped)
        )
        with self._sessions.reading() as session:
            rows = session.execute(query).all()
        totals = [_totals(by, daily, tuple(row)) for row in rows]
        return sorted(
            totals,
            key=lambda t: (t.day or date.min, -t.total_tokens, -t.requests, t.label(by)),
        )

    def _day(self) -> ColumnElement[Any]:
        """The UTC day of `created_at`, whatever the session's time zone."""
        if self._sessions.engine.dialect.name == "postgresql":
            return func.timezone("UTC", UsageRow.created_at).cast(Date)
        # SQLite keeps UTC wall times as text (`UtcDateTime`): the day is its first part.
        return func.date(UsageRow.created_at, type_=String)

    def purge(self, before: datetime) -> int:
        """Remove the usage of answers older than `before`; how many rows went."""
        require_aware(before, "before")
        with self._sessions.writing() as session:
            result = session.execute(
                delete(UsageRow)
                .where(UsageRow.created_at < before)
                .execution_options(synchronize_session=False)
            )
            return cast(CursorResult[Any], result).rowcount


def _totals(by: UsageGrouping, daily: bool, row: tuple[Any, ...]) -> UsageTotals:
    names = _GROUPS[by]
    group = dict(zip(names, row, strict=False))
    day = row[len(names)] if daily else None
    requests, prompt, completion, latency = row[-4:]
    return UsageTotals(
        key_name=group.get("key_name"),
        model=group.get("model"),
        version=group.get("version"),
        day=date.fromisoformat(day) if isinstance(day, str) else day,
        requests=int(requests),
        prompt_tokens=int(prompt or 0),
        completion_tokens=int(completion or 0),
        mean_latency_s=float(latency or 0.0),
    )
