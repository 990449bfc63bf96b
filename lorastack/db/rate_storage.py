"""A `limits` storage on the lorastack database, so that gateways sharing it share limits.

`limits` has storages for memory, Redis, Memcached and MongoDB, not SQL; gateways that
share only a database (SQLite on one host, PostgreSQL across hosts) need their counters
there. This is that storage, for `limits`' fixed-window strategy: one row per counter, and
one atomic upsert per hit (`INSERT ... ON CONFLICT DO UPDATE ... RETURNING`, which both
SQLite and PostgreSQL run as one statement), so two gateways hitting one counter at once
never lose a hit. The algorithm stays `limits`' own.
"""

from __future__ import annotations

import time
from typing import Any

from limits.errors import StorageError
from limits.storage import Storage
from sqlalchemy import Engine, case, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from lorastack.db.engine import WRITES
from lorastack.db.migrate import upgrade
from lorastack.db.schema import RateWindowRow


class SqlRateStorage(Storage):
    """`limits.storage.Storage` over the `rate_windows` table (fixed windows only)."""

    STORAGE_SCHEME = None  # made from an engine, never from a URI

    def __init__(self, engine: Engine) -> None:
        super().__init__(wrap_exceptions=True)
        self._engine = engine
        self._writer = engine.execution_options(**{WRITES: True})
        upgrade(engine)

    @property
    def base_exceptions(self) -> type[Exception]:
        return SQLAlchemyError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self._hit(key, expiry, amount)[0]

    def hit_window(self, key: str, expiry: int, amount: int = 1) -> tuple[int, float]:
        """`incr`, returning the window's end with its count: one statement, not three."""
        try:
            return self._hit(key, expiry, amount)
        except SQLAlchemyError as error:
            raise StorageError(error) from error

    def window(self, key: str) -> tuple[int, float]:
        """The window's count and end (Unix time) in one statement; (0, now) when none."""
        try:
            return self._window(key)
        except SQLAlchemyError as error:
            raise StorageError(error) from error

    def _window(self, key: str) -> tuple[int, float]:
        row = self._row(key)
        now = time.time()
        if row is None or row.expires_at <= now:
            return 0, now
        return int(row.count), float(row.expires_at)

    def _hit(self, key: str, expiry: int, amount: int) -> tuple[int, float]:
        now = time.time()
        table = RateWindowRow.__table__
        insert = self._insert().values(key=key, count=amount, expires_at=now + expiry)
        expired = table.c.expires_at <= now
        statement = insert.on_conflict_do_update(
            index_elements=[table.c.key],
            set_={
                "count": case((expired, insert.excluded.count), else_=table.c.count + amount),
                "expires_at": case((expired, insert.excluded.expires_at), else_=table.c.expires_at),
            },
        ).returning(table.c.count, table.c.expires_at)
        with self._writer.begin() as connection:
            count, expires_at = connection.execute(statement).one()
            return int(count), float(expires_at)

    def get(self, key: str) -> int:
        return self._window(key)[0]

    def get_expiry(self, key: str) -> float:
        row = self._row(key)
        return float(row.expires_at) if row is not None else time.time()

    def check(self) -> bool:
        try:
            with self._engine.connect() as connection:
                connection.execute(select(1))
        except SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        with self._writer.begin() as connection:
            return connection.execute(delete(RateWindowRow)).rowcount

    def clear(self, key: str) -> None:
        with self._writer.begin() as connection:
            connection.execute(delete(RateWindowRow).where(RateWindowRow.key == key))

    def purge_expired(self) -> int:
        """Delete counters whose window ended (they read as zero anyway)."""
        with self._writer.begin() as connection:
            result = connection.execute(
                delete(RateWindowRow).where(RateWindowRow.expires_at <= time.time())
            )
            return result.rowcount

    def _row(self, key: str) -> Any:
        with self._engine.connect() as connection:
            query = select(RateWindowRow.count, RateWindowRow.expires_at).where(
                RateWindowRow.key == key
            )
            return connection.execute(query).first()

    def _insert(self) -> Any:
        dialect = self._engine.dialect.name
        if dialect == "sqlite":
            return sqlite.insert(RateWindowRow)
        if dialect == "postgresql":
            return postgresql.insert(RateWindowRow)
        raise NotImplementedError(f"rate limits on {dialect} databases")
