"""Alembic runs this for every migration command; `lorastack.db.migrate` gives it a connection.

The connection arrives inside a transaction that holds the migration lock, so Alembic
adds none of its own: the whole upgrade commits or rolls back as one.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from lorastack.db.migrate import VERSION_TABLE
from lorastack.db.schema import Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if context.is_offline_mode() or not isinstance(_connection, Connection):
    raise RuntimeError(
        "lorastack's migrations run through `lorastack db upgrade` (lorastack.db.upgrade), "
        "which passes a connection; the alembic command alone is not supported"
    )
_run(_connection)
