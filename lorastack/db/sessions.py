"""What every SQL store of lorastack does the same way: its sessions, its datetimes, and
an engine on the configured database for a command that needs one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from lorastack.db.engine import WRITES, database_errors, database_url, make_engine
from lorastack.settings import Settings


class Sessions:
    """Sessions on one engine; the database's failures raise a one-line `DatabaseError`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = engine.execution_options(**{WRITES: True})

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with database_errors(self.engine), Session(self.engine) as session:
            yield session

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """One transaction, committed on leaving; SQLite takes its write lock at the start
        (see `WRITES`), so concurrent writers queue instead of failing."""
        with database_errors(self.engine), Session(self._writer) as session, session.begin():
            yield session


def require_aware(moment: datetime, name: str) -> None:
    """Refuse a naive datetime with `ValueError`: its zone is a guess, and a wrong guess
    shifts what a query or a purge covers."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} {moment.isoformat()} is naive: give a timezone-aware datetime")


@contextmanager
def open_engine(settings: Settings) -> Iterator[Engine]:
    """An engine on the configured database (`database_url`), disposed of on exit."""
    engine = make_engine(database_url(settings))
    try:
        yield engine
    finally:
        engine.dispose()
