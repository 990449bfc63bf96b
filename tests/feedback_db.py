"""Records and schema checks shared by the feedback database's unit and integration tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from lorastack.db import (
    SqlFeedbackStore,
    current_revision,
    downgrade,
    head_revision,
    revisions,
    upgrade,
)
from lorastack.db.migrate import VERSION_TABLE
from lorastack.db.schema import Base
from lorastack.feedback import Exchange, Rating, Vote, key_hash

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def exchange(
    response_id: str,
    *,
    domain: str = "coffee",
    version: int = 1,
    minutes: float = 0,
    answer: str = "Yes! Oat milk it is. ☕",
    **fields: Any,
) -> Exchange:
    """An exchange captured `minutes` after T0."""
    return Exchange(
        response_id=response_id,
        domain=domain,
        version=version,
        key_hash=key_hash("client-key"),
        messages=[
            {"role": "system", "content": "Be cheerful."},
            {"role": "user", "content": f"Oat milk for <PERSON_1>? ({response_id})"},
        ],
        answer=answer,
        latency_s=0.25,
        rules={"short": True, "emoji": False},
        created_at=T0 + timedelta(minutes=minutes),
        **fields,
    )


def rating(response_id: str, vote: Vote = 1, *, minutes: float = 1, **fields: Any) -> Rating:
    return Rating(
        response_id=response_id,
        rating=vote,
        key_hash=key_hash("client-key"),
        created_at=T0 + timedelta(minutes=minutes),
        **fields,
    )


def table_sizes(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table: connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in ("exchanges", "ratings")
        }


# ------------------------------------------------------------------- the migrations


def _write_rows_at_0001(engine: Engine) -> None:
    """Rows as the code of revision 0001 wrote them: its tables, not today's ORM."""
    exchanges = sa.table(
        "exchanges",
        sa.column("response_id", sa.String),
        sa.column("domain", sa.String),
        sa.column("version", sa.Integer),
        sa.column("key_hash", sa.String),
        sa.column("prompt_hash", sa.String),
        sa.column("messages", sa.JSON),
        sa.column("answer", sa.Text),
        sa.column("latency_s", sa.Float),
        sa.column("rules", sa.JSON),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    ratings = sa.table(
        "ratings",
        sa.column("response_id", sa.String),
        sa.column("rating", sa.SmallInteger),
        sa.column("key_hash", sa.String),
        sa.column("correction", sa.Text),
        sa.column("comment", sa.Text),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    old = exchange("from-0001")
    with engine.begin() as connection:
        connection.execute(
            exchanges.insert(),
            [
                {
                    "response_id": old.response_id,
                    "domain": old.domain,
                    "version": old.version,
                    "key_hash": old.key_hash,
                    "prompt_hash": old.prompt_hash,
                    "messages": old.messages,
                    "answer": old.answer,
                    "latency_s": old.latency_s,
                    "rules": old.rules,
                    # What SQLite kept then: the UTC wall time, without a zone.
                    "created_at": old.created_at
                    if engine.dialect.name == "postgresql"
                    else old.created_at.replace(tzinfo=None),
                }
            ],
        )
        connection.execute(
            ratings.insert(),
            [
                {
                    "response_id": old.response_id,
                    "rating": -1,
                    "key_hash": None,
                    "correction": "We do! Oat milk is 50p extra.",
                    "comment": None,
                    "created_at": T0.replace(tzinfo=None)
                    if engine.dialect.name == "sqlite"
                    else T0,
                }
            ],
        )


def _write_rows_at_0002(engine: Engine) -> None:
    """A managed key as revision 0002's code wrote it (no exchange, no rating)."""
    api_keys = sa.table(
        "api_keys",
        sa.column("name", sa.String),
        sa.column("key_hash", sa.String),
        sa.column("hint", sa.String),
        sa.column("domains", sa.JSON),
        sa.column("rpm", sa.Integer),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    created = T0 if engine.dialect.name == "postgresql" else T0.replace(tzinfo=None)
    with engine.begin() as connection:
        connection.execute(
            api_keys.insert(),
            [
                {
                    "name": "from-0002",
                    "key_hash": "0" * 64,
                    "hint": "abcd",
                    "domains": ["coffee"],
                    "rpm": 60,
                    "created_at": created,
                }
            ],
        )


def _write_rows_at_0003(engine: Engine) -> None:
    """A registry domain with one version, as revision 0003's code wrote them."""
    domains = sa.table(
        "registry_domains",
        sa.column("domain", sa.String),
        sa.column("index", sa.JSON),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    versions = sa.table(
        "registry_versions",
        sa.column("domain", sa.String),
        sa.column("version", sa.Integer),
        sa.column("manifest", sa.JSON),
        sa.column("adapter_sha256", sa.String),
        sa.column("config_sha256", sa.String),
        sa.column("published_at", sa.DateTime(timezone=True)),
    )
    at = T0 if engine.dialect.name == "postgresql" else T0.replace(tzinfo=None)
    with engine.begin() as connection:
        index = {"domain": "coffee", "last_version": 1, "aliases": {"prod": 1}}
        connection.execute(
            domains.insert(), [{"domain": "coffee", "index": index, "updated_at": at}]
        )
        row = {"domain": "coffee", "version": 1, "manifest": {"domain": "coffee", "version": 1}}
        digests = {"adapter_sha256": "a" * 64, "config_sha256": "c" * 64}
        connection.execute(versions.insert(), [{**row, **digests, "published_at": at}])


# The rows each revision's code wrote; a new revision that changes how rows look adds its
# writer here, and the walk checks that every older row survives every later migration.
ROWS_WRITTEN_AT = {
    "0001": _write_rows_at_0001,
    "0002": _write_rows_at_0002,
    "0003": _write_rows_at_0003,
}
# How many exchanges (and ratings) the writers up to and including each revision added.
_EXCHANGES_WRITTEN_BY = {"0001": 1, "0002": 1, "0003": 1}


def walk_migrations_with_rows(engine: Engine) -> None:
    """Upgrade an empty database one revision at a time, writing each revision's rows on
    the way; every row must survive every later step and be readable by the store at head.
    """
    assert current_revision(engine) is None
    written = 0
    for revision in revisions():
        upgrade(engine, revision)
        assert current_revision(engine) == revision
        assert table_sizes(engine) == {"exchanges": written, "ratings": written}
        ROWS_WRITTEN_AT[revision](engine)
        written = _EXCHANGES_WRITTEN_BY[revision]
    assert current_revision(engine) == head_revision()

    store = SqlFeedbackStore(engine)
    expected = exchange("from-0001")
    assert store.get_exchange("from-0001") == expected
    [rated] = store.rated_exchanges("coffee")
    assert rated.exchange == expected
    assert [(r.rating, r.correction, r.created_at) for r in rated.ratings] == [
        (-1, "We do! Oat milk is 50p extra.", T0)
    ]
    assert store.counts("coffee") == {1: {"captured": 1, "up": 0, "down": 1, "corrections": 1}}
    with engine.connect() as connection:
        names = connection.execute(sa.text("SELECT name, rpm FROM api_keys")).all()
        registry = connection.execute(sa.text("SELECT domain, version FROM registry_versions"))
        published = [tuple(row) for row in registry]
    assert [tuple(row) for row in names] == [("from-0002", 60)]
    assert published == [("coffee", 1)]


def walk_down_and_up(engine: Engine) -> None:
    """Each revision's downgrade undoes its upgrade: up, down one, up again, to head."""
    previous = "base"
    for revision in revisions():
        upgrade(engine, revision)
        downgrade(engine, previous)
        assert current_revision(engine) == (None if previous == "base" else previous)
        upgrade(engine, revision)
        previous = revision
    downgrade(engine, "base")
    assert sa.inspect(engine).get_table_names() == [VERSION_TABLE]
    upgrade(engine)


def schema_differences(engine: Engine) -> list[Any]:
    """What Alembic's autogenerate would change to make the database match `schema.py`."""
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": VERSION_TABLE, "compare_type": True}
        )
        return list(compare_metadata(context, Base.metadata))
