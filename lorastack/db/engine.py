"""Which database, and a SQLAlchemy engine for it that several writers can share.

SQLite (the default, a file under `$LORASTACK_HOME`) serves one machine: several gateway
processes and threads may write to it at once. PostgreSQL (`LORASTACK_DATABASE_URL`)
serves gateways on several machines.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tenacity
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from lorastack.errors import DatabaseError
from lorastack.settings import Settings

DATABASE_FILE = "lorastack.db"
# An execution option: a transaction started on a connection carrying it will write.
# SQLite then takes the write lock at BEGIN, so two writers queue behind the busy timeout
# instead of one failing at its first write with "database is locked".
WRITES = "lorastack_writes"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def database_url(settings: Settings) -> str:
    """`settings.database_url` (LORASTACK_DATABASE_URL), else `sqlite:///<home>/lorastack.db`."""
    if settings.database_url:
        return settings.database_url
    return URL.create("sqlite", database=str(settings.home / DATABASE_FILE)).render_as_string()


def display_url(url: str | URL) -> str:
    """The URL for messages and logs: its password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<not a database URL>"


def connect_url(url: str | URL) -> URL:
    """`url` as lorastack connects to it: `postgresql://` means psycopg 3, the driver
    lorastack installs, and a SQLite file's folder is created when missing. Any engine on a
    lorastack database needs this, lorastack's own and Optuna's (`train/study.py`) alike."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(f"not a database URL: {display_url(url)}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        _create_folder(parsed)
        return parsed
    if backend in ("postgresql", "postgres"):
        # SQLAlchemy's default PostgreSQL driver is psycopg2, which lorastack does not ship.
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        return parsed
    raise DatabaseError(f"unsupported database {backend!r}: use sqlite or postgresql")


def make_engine(url: str | URL, *, connect_timeout_s: int = 10) -> Engine:
    """An engine for `url` (see `connect_url`), set up for concurrent writers (see the
    module docstring). `connect_timeout_s`: how long a PostgreSQL connection may take."""
    parsed = connect_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    return create_engine(
        parsed,
        # A gateway outlives connections that a restart or a proxy closed.
        pool_pre_ping=True,
        # libpq reads 1 as 2: say so rather than surprise.
        connect_args={"connect_timeout": max(2, connect_timeout_s)},
    )


def _create_folder(url: URL) -> None:
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        folder = Path(url.database).expanduser().absolute().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DatabaseError(
                f"database {display_url(url)}: cannot create {folder}: {error.strerror}"
            ) from None


def _sqlite_engine(url: URL) -> Engine:
    engine = create_engine(url)
    event.listen(engine, "connect", _configure_sqlite_connection)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # Python's sqlite3 would start transactions itself, lazily and only before DML, which
    # neither honours BEGIN IMMEDIATE nor puts DDL inside the migration's transaction;
    # `_begin_sqlite_transaction` issues BEGIN instead (SQLAlchemy's documented recipe).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # First, so that the statements below wait for a lock rather than fail.
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        _use_wal(cursor)
        # WAL keeps a commit durable against a process crash at this level; an OS crash
        # may lose the last commits, which for captured feedback is an acceptable trade.
        cursor.execute("PRAGMA synchronous = NORMAL")
        # Off by default, per connection: ratings' ON DELETE CASCADE depends on it.
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _use_wal(cursor: Any) -> None:
    """Readers never block the writer and the writer never blocks readers.

    WAL is a property of the file, set once by whichever connection comes first. Switching
    needs the file to itself, and SQLite answers "database is locked" at once, without
    waiting out the busy timeout, while another connection opens it: processes opening a
    new database together retry until one of them has switched it.
    """
    for attempt in tenacity.Retrying(
        retry=tenacity.retry_if_exception(_is_locked),
        stop=tenacity.stop_after_delay(SQLITE_BUSY_TIMEOUT_MS / 1000),
        wait=tenacity.wait_random(0.005, 0.05),
        reraise=True,
    ):
        with attempt:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")


def _is_locked(error: BaseException) -> bool:
    return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)


def _begin_sqlite_transaction(connection: Connection) -> None:
    writes = connection.get_execution_options().get(WRITES, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


@contextmanager
def database_errors(engine: Engine) -> Iterator[None]:
    """Turn SQLAlchemy's and the driver's errors into a one-line `DatabaseError`."""
    try:
        yield
    except SQLAlchemyError as error:
        raise DatabaseError(f"database {display_url(engine.url)}: {_one_line(error)}") from error


def _one_line(error: SQLAlchemyError) -> str:
    # The driver's own message says what happened; SQLAlchemy's wrapper adds the statement
    # and a link, which help a developer (the chained cause keeps them) but not a user.
    cause: BaseException = error
    if isinstance(error, DBAPIError) and error.orig is not None:
        cause = error.orig
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return lines[0] if lines else type(cause).__name__
