"""The schema's versions: Alembic, run from code (no alembic.ini at run time).

`upgrade` is safe to call from every process at start: the migration runs in one
transaction that holds a lock (PostgreSQL: an advisory lock; SQLite: the write lock), so
of several gateways starting at once one migrates and the others then find nothing to do.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from lorastack.db.engine import WRITES, database_errors, display_url, make_engine
from lorastack.errors import DatabaseError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Not Alembic's default `alembic_version`: a shared PostgreSQL database may hold another
# application's.
VERSION_TABLE = "lorastack_alembic_version"
# Any constant that every lorastack process agrees on ("lora" in ASCII).
_POSTGRES_LOCK_KEY = 0x6C6F7261


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, built in code; `env.py` migrates `connection`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision this lorastack knows."""
    head = _scripts().get_current_head()
    if head is None:
        raise DatabaseError(f"no migrations in {MIGRATIONS_DIR}")
    return head


def revisions() -> list[str]:
    """Every revision, oldest first."""
    return [script.revision for script in reversed(list(_scripts().walk_revisions()))]


@contextmanager
def _engine_for(target: Engine | str) -> Iterator[Engine]:
    if isinstance(target, Engine):
        yield target
        return
    engine = make_engine(target)
    try:
        yield engine
    finally:
        engine.dispose()


def current_revision(target: Engine | str) -> str | None:
    """The database's revision; None for a database that was never migrated."""
    with _engine_for(target) as engine, database_errors(engine), engine.connect() as connection:
        return _revision_of(connection)


def _revision_of(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def upgrade(target: Engine | str, revision: str = "head") -> None:
    """Migrate the database to `revision` (the newest by default); nothing if it is there.

    Every store of a gateway asks this at start: a database already at the newest revision
    costs one read, not a locked transaction and Alembic's walk of its scripts.
    """
    if revision == "head" and _at_head(target):
        return
    _migrate(target, lambda config: command.upgrade(config, revision))


def _at_head(target: Engine | str) -> bool:
    with _engine_for(target) as engine, database_errors(engine), engine.connect() as connection:
        return _revision_of(connection) == _newest()


@functools.cache
def _newest() -> str | None:
    """The newest revision, read once per process: the scripts ship with the package."""
    return _scripts().get_current_head()


def downgrade(target: Engine | str, revision: str) -> None:
    """Migrate the database back to `revision` (`base`: no tables). Loses the newer data."""
    _migrate(target, lambda config: command.downgrade(config, revision))


def _migrate(target: Engine | str, step: Callable[[Config], None]) -> None:
    with _engine_for(target) as engine:
        try:
            with engine.connect() as connection:
                connection.execution_options(**{WRITES: True})
                with connection.begin():
                    _lock(connection)
                    _refuse_unknown_revision(connection, engine)
                    step(alembic_config(connection))
        except SQLAlchemyError:
            with database_errors(engine):
                raise
        except CommandError as error:
            raise DatabaseError(f"database {display_url(engine.url)}: {error}") from None


def _lock(connection: Connection) -> None:
    # Held until the transaction ends, so until the migration is committed or rolled back.
    # SQLite needs nothing here: BEGIN IMMEDIATE already holds its one write lock.
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _POSTGRES_LOCK_KEY})


def _refuse_unknown_revision(connection: Connection, engine: Engine) -> None:
    revision = _revision_of(connection)
    if revision is None or revision in revisions():
        return
    raise DatabaseError(
        f"database {display_url(engine.url)} is at schema revision {revision}, newer than "
        f"this lorastack knows (its newest is {head_revision()}): upgrade lorastack"
    )
