"""`FeedbackStore` on SQL: SQLite by default, PostgreSQL when several gateways share it."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Self, cast

from sqlalchemy import ColumnElement, CursorResult, Engine, case, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from lorastack.db.engine import database_url, make_engine
from lorastack.db.migrate import upgrade
from lorastack.db.schema import ExchangeRow, RatingRow
from lorastack.db.sessions import Sessions, require_aware
from lorastack.errors import DatabaseError, ExchangeNotFound
from lorastack.feedback import Exchange, RatedExchange, Rating
from lorastack.settings import Settings

_VOTES = (1, -1)


class SqlFeedbackStore:
    """Exchanges and ratings in a SQL database; brings its schema to the newest on opening.

    Every method is blocking (call it off the event loop) and safe to call from several
    threads; several stores, in one process or many, may share one database. Failures of
    the database raise `DatabaseError`; the caller's own mistakes (a naive datetime, a vote
    other than 1 or -1) raise `ValueError`.
    """

    def __init__(self, engine: Engine, *, close_engine: bool = False) -> None:
        """`close_engine`: `close` disposes of the engine too (the store made it)."""
        self._engine = engine
        self._sessions = Sessions(engine)
        self._close_engine = close_engine
        upgrade(engine)

    @property
    def engine(self) -> Engine:
        """The database's engine, for the other stores that share it (keys, usage, audit)."""
        return self._engine

    def close(self) -> None:
        """Release the engine's connections if the store owns it; idempotent."""
        if self._close_engine:
            self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def add_exchanges(self, exchanges: Sequence[Exchange]) -> None:
        """Store a batch in one transaction (a response id stored twice keeps the first)."""
        first_of_each: dict[str, Exchange] = {}
        for exchange in exchanges:
            require_aware(exchange.created_at, "created_at")
            first_of_each.setdefault(exchange.response_id, exchange)
        if not first_of_each:
            return
        rows = [_exchange_values(exchange) for exchange in first_of_each.values()]
        with self._sessions.writing() as session:
            session.execute(self._insert_keeping_first(), rows)

    def _insert_keeping_first(self) -> Any:
        dialect = self._engine.dialect.name
        if dialect == "sqlite":
            return sqlite.insert(ExchangeRow).on_conflict_do_nothing(index_elements=["response_id"])
        if dialect == "postgresql":
            return postgresql.insert(ExchangeRow).on_conflict_do_nothing(
                index_elements=["response_id"]
            )
        raise DatabaseError(f"unsupported database {dialect!r}: use sqlite or postgresql")

    def get_exchange(self, response_id: str) -> Exchange | None:
        with self._sessions.reading() as session:
            row = session.get(ExchangeRow, response_id)
            return None if row is None else _exchange(row)

    def add_rating(self, rating: Rating) -> None:
        """Store a rating of a stored exchange; `ExchangeNotFound` if there is none."""
        if rating.rating not in _VOTES:
            raise ValueError(f"a rating is 1 or -1, got {rating.rating!r}")
        require_aware(rating.created_at, "created_at")
        missing = ExchangeNotFound(f"no captured exchange has response id {rating.response_id!r}")
        try:
            with self._sessions.writing() as session:
                # Checked, not left to the foreign key alone: an engine built elsewhere may
                # not enforce SQLite's.
                if session.get(ExchangeRow, rating.response_id) is None:
                    raise missing
                session.add(_rating_row(rating))
        except DatabaseError as error:
            # PostgreSQL: purged between the check and the insert.
            if isinstance(error.__cause__, IntegrityError):
                raise missing from None
            raise

    def rated_exchanges(self, domain: str, since: datetime | None = None) -> list[RatedExchange]:
        """The domain's exchanges since `since` (inclusive) with a rating, oldest first."""
        query = (
            select(ExchangeRow, RatingRow)
            .join(RatingRow, RatingRow.response_id == ExchangeRow.response_id)
            .where(*_window(domain, since))
            .order_by(
                ExchangeRow.created_at,
                ExchangeRow.response_id,
                RatingRow.created_at,
                RatingRow.id,
            )
        )
        rated: list[RatedExchange] = []
        with self._sessions.reading() as session:
            for exchange_row, rating_row in session.execute(query).tuples():
                if not rated or rated[-1].exchange.response_id != exchange_row.response_id:
                    rated.append(RatedExchange(_exchange(exchange_row), []))
                rated[-1].ratings.append(_rating(rating_row))
        return rated

    def exchanges(self, domain: str, since: datetime | None = None) -> list[Exchange]:
        """Every captured exchange of the domain since `since` (inclusive), oldest first."""
        query = (
            select(ExchangeRow)
            .where(*_window(domain, since))
            .order_by(ExchangeRow.created_at, ExchangeRow.response_id)
        )
        with self._sessions.reading() as session:
            return [_exchange(row) for row in session.scalars(query)]

    def purge(self, before: datetime, domain: str | None = None) -> int:
        """Remove exchanges (and their ratings) older than `before`; how many exchanges went."""
        require_aware(before, "before")
        old: list[ColumnElement[bool]] = [ExchangeRow.created_at < before]
        if domain is not None:
            old.append(ExchangeRow.domain == domain)
        with self._sessions.writing() as session:
            # Deleted here rather than by the foreign key's cascade alone, which SQLite
            # applies only on connections that turned it on.
            session.execute(
                delete(RatingRow)
                .where(RatingRow.response_id.in_(select(ExchangeRow.response_id).where(*old)))
                .execution_options(synchronize_session=False)
            )
            result = session.execute(
                delete(ExchangeRow).where(*old).execution_options(synchronize_session=False)
            )
            return cast(CursorResult[Any], result).rowcount

    def counts(self, domain: str) -> dict[int, dict[str, int]]:
        """Per version: `captured` exchanges, and ratings `up`, `down` and with a `correction`.

        An exchange rated twice counts twice. Versions without a captured exchange are absent.
        """
        captured = (
            select(ExchangeRow.version, func.count())
            .where(ExchangeRow.domain == domain)
            .group_by(ExchangeRow.version)
        )
        votes = (
            select(
                ExchangeRow.version,
                func.sum(case((RatingRow.rating == 1, 1), else_=0)),
                func.sum(case((RatingRow.rating == -1, 1), else_=0)),
                func.count(RatingRow.correction),
            )
            .join(RatingRow, RatingRow.response_id == ExchangeRow.response_id)
            .where(ExchangeRow.domain == domain)
            .group_by(ExchangeRow.version)
        )
        with self._sessions.reading() as session:
            result = {
                int(version): {"captured": int(n), "up": 0, "down": 0, "corrections": 0}
                for version, n in session.execute(captured).tuples()
            }
            for version, up, down, corrections in session.execute(votes).tuples():
                result[int(version)].update(
                    up=int(up or 0), down=int(down or 0), corrections=int(corrections)
                )
        return result


def open_feedback_store(settings: Settings) -> SqlFeedbackStore:
    """The store on the configured database (`database_url`), its schema upgraded.

    The store owns its engine: `close()` it, or use it as a context manager.
    """
    engine = make_engine(database_url(settings))
    try:
        return SqlFeedbackStore(engine, close_engine=True)
    except BaseException:
        engine.dispose()
        raise


def _window(domain: str, since: datetime | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [ExchangeRow.domain == domain]
    if since is not None:
        require_aware(since, "since")
        conditions.append(ExchangeRow.created_at >= since)
    return conditions


def _exchange_values(exchange: Exchange) -> dict[str, Any]:
    # The table's columns are the record's fields, plus the conversation's hash.
    return {**_fields_of(exchange, Exchange), "prompt_hash": exchange.prompt_hash}


def _exchange(row: ExchangeRow) -> Exchange:
    return Exchange(**_fields_of(row, Exchange))


def _fields_of(source: object, record: type[Any]) -> dict[str, Any]:
    """`record`'s fields, read from the attributes of the same names on `source`."""
    return {f.name: getattr(source, f.name) for f in dataclasses.fields(record)}


def _rating_row(rating: Rating) -> RatingRow:
    return RatingRow(**_fields_of(rating, Rating))


def _rating(row: RatingRow) -> Rating:
    return Rating(**_fields_of(row, Rating))  # the column holds only votes: 1 or -1
