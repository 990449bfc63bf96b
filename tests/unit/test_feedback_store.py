"""The SQL feedback store on SQLite: every method, its datetimes, its errors, its migrations."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from lorastack.db import (
    SqlFeedbackStore,
    current_revision,
    database_url,
    head_revision,
    make_engine,
    open_feedback_store,
    upgrade,
)
from lorastack.db.migrate import VERSION_TABLE, downgrade
from lorastack.errors import DatabaseError, ExchangeNotFound, SettingsError
from lorastack.feedback import Exchange, FeedbackStore, Rating
from lorastack.settings import load_settings
from tests.feedback_db import (
    T0,
    exchange,
    rating,
    schema_differences,
    table_sizes,
    walk_down_and_up,
    walk_migrations_with_rows,
)
from tests.servers import free_port


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'db' / 'lorastack.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: Engine) -> SqlFeedbackStore:
    return SqlFeedbackStore(engine)


def test_the_store_implements_the_protocol(store: SqlFeedbackStore) -> None:
    implementation: FeedbackStore = store
    assert implementation is store


# -------------------------------------------------------------------- where it lives


def test_the_default_database_is_a_sqlite_file_in_the_home(tmp_path: Path) -> None:
    url = database_url(load_settings(home=tmp_path / "home"))
    assert url == f"sqlite:///{tmp_path / 'home' / 'lorastack.db'}"


def test_the_url_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORASTACK_DATABASE_URL", "postgresql://gw:secret@db:5432/lorastack")
    assert database_url(load_settings()) == "postgresql://gw:secret@db:5432/lorastack"


@pytest.mark.parametrize("url", ["mysql://db/lorastack", "not a url"])
def test_an_unsupported_url_stops_the_settings(url: str) -> None:
    with pytest.raises(SettingsError, match="LORASTACK_DATABASE_URL"):
        load_settings(database_url=url)


def test_opening_creates_the_folder_and_the_newest_schema(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'new' / 'deeper' / 'lorastack.db'}")
    SqlFeedbackStore(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_the_configured_store_opens_on_the_default_database(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home")
    store = open_feedback_store(settings)
    store.add_exchanges([exchange("a")])
    store.close()
    with open_feedback_store(settings) as reopened:
        assert reopened.get_exchange("a") == exchange("a")
    assert (tmp_path / "home" / "lorastack.db").is_file()


def test_a_store_reopened_keeps_its_rows(engine: Engine, store: SqlFeedbackStore) -> None:
    store.add_exchanges([exchange("a")])
    engine.dispose()
    assert SqlFeedbackStore(engine).get_exchange("a") == exchange("a")


# -------------------------------------------------------------------- exchanges


def test_an_exchange_comes_back_as_it_went_in(store: SqlFeedbackStore) -> None:
    sent = exchange("chatcmpl-1", answer="Ünïcödé and emoji ☕ <PERSON_1>")
    store.add_exchanges([sent])
    assert store.get_exchange("chatcmpl-1") == sent
    assert store.get_exchange("chatcmpl-unknown") is None


def test_a_response_id_stored_twice_keeps_the_first(store: SqlFeedbackStore) -> None:
    store.add_exchanges([exchange("a", answer="first"), exchange("a", answer="same batch")])
    store.add_exchanges([exchange("a", answer="later batch"), exchange("b")])
    stored = store.get_exchange("a")
    assert stored is not None and stored.answer == "first"
    assert [e.response_id for e in store.exchanges("coffee")] == ["a", "b"]


def test_an_empty_batch_does_nothing(engine: Engine, store: SqlFeedbackStore) -> None:
    store.add_exchanges([])
    assert table_sizes(engine) == {"exchanges": 0, "ratings": 0}


def test_exchanges_are_one_domains_oldest_first(store: SqlFeedbackStore) -> None:
    store.add_exchanges(
        [
            exchange("late", minutes=30),
            exchange("early", minutes=0),
            exchange("other-domain", domain="ledger", minutes=10),
            exchange("middle", minutes=20),
        ]
    )
    assert [e.response_id for e in store.exchanges("coffee")] == ["early", "middle", "late"]
    since = T0 + timedelta(minutes=20)
    assert [e.response_id for e in store.exchanges("coffee", since)] == ["middle", "late"]
    assert store.exchanges("nobody") == []


# -------------------------------------------------------------------- datetimes


def test_datetimes_come_back_aware_and_in_utc(store: SqlFeedbackStore) -> None:
    paris = timezone(timedelta(hours=1))
    local = datetime(2026, 11, 1, 10, 30, 15, 123456, tzinfo=paris)
    store.add_exchanges([exchange("a", minutes=0)])
    store.add_exchanges([Exchange(**{**exchange("b").__dict__, "created_at": local})])
    back = store.get_exchange("b")
    assert back is not None
    assert back.created_at == local
    assert back.created_at.tzinfo == UTC
    assert back.created_at.hour == 9


def test_order_and_windows_follow_the_instant_not_the_wall_clock(
    store: SqlFeedbackStore,
) -> None:
    # 09:30 in UTC+2 is 07:30 UTC: before T0 (09:00 UTC) though its wall clock is later.
    earlier = datetime(2026, 11, 1, 9, 30, tzinfo=timezone(timedelta(hours=2)))
    store.add_exchanges(
        [exchange("at-t0"), Exchange(**{**exchange("earlier").__dict__, "created_at": earlier})]
    )
    assert [e.response_id for e in store.exchanges("coffee")] == ["earlier", "at-t0"]
    assert [e.response_id for e in store.exchanges("coffee", T0)] == ["at-t0"]
    assert store.purge(T0) == 1


def test_naive_datetimes_are_refused(store: SqlFeedbackStore) -> None:
    naive = datetime(2026, 11, 1, 9, 0)
    with pytest.raises(ValueError, match="naive"):
        store.add_exchanges([Exchange(**{**exchange("a").__dict__, "created_at": naive})])
    with pytest.raises(ValueError, match="naive"):
        store.exchanges("coffee", naive)
    with pytest.raises(ValueError, match="naive"):
        store.purge(naive)
    assert store.get_exchange("a") is None


# -------------------------------------------------------------------- ratings


def test_rated_exchanges_have_their_ratings_oldest_first(store: SqlFeedbackStore) -> None:
    store.add_exchanges(
        [exchange("a", minutes=0), exchange("b", minutes=5), exchange("c", minutes=10)]
    )
    store.add_rating(rating("c", 1, minutes=11))
    store.add_rating(rating("a", -1, minutes=3, correction="Better.", comment="Too long."))
    store.add_rating(rating("a", 1, minutes=2))
    rated = store.rated_exchanges("coffee")
    assert [r.exchange.response_id for r in rated] == ["a", "c"]
    assert rated[0].exchange == exchange("a", minutes=0)
    assert rated[0].ratings == [
        rating("a", 1, minutes=2),
        rating("a", -1, minutes=3, correction="Better.", comment="Too long."),
    ]
    assert [r.exchange.response_id for r in store.rated_exchanges("coffee", T0)] == ["a", "c"]
    later = T0 + timedelta(minutes=1)
    assert [r.exchange.response_id for r in store.rated_exchanges("coffee", later)] == ["c"]
    assert store.rated_exchanges("ledger") == []


def test_a_rating_of_no_exchange_is_refused(engine: Engine, store: SqlFeedbackStore) -> None:
    with pytest.raises(ExchangeNotFound, match="'never-captured'"):
        store.add_rating(rating("never-captured"))
    assert table_sizes(engine)["ratings"] == 0


def test_a_vote_is_up_or_down(store: SqlFeedbackStore) -> None:
    store.add_exchanges([exchange("a")])
    with pytest.raises(ValueError, match="1 or -1"):
        store.add_rating(Rating(response_id="a", rating=0, key_hash=None))  # type: ignore[arg-type]


# -------------------------------------------------------------------- purge and counts


def test_purge_removes_old_exchanges_with_their_ratings(
    engine: Engine, store: SqlFeedbackStore
) -> None:
    store.add_exchanges(
        [
            exchange("old", minutes=0),
            exchange("old-ledger", domain="ledger", minutes=0),
            exchange("new", minutes=60),
        ]
    )
    for response_id in ("old", "old-ledger", "new"):
        store.add_rating(rating(response_id, minutes=61))
    cutoff = T0 + timedelta(minutes=30)
    assert store.purge(cutoff, domain="coffee") == 1
    assert store.get_exchange("old") is None
    assert table_sizes(engine) == {"exchanges": 2, "ratings": 2}
    assert store.purge(cutoff) == 1
    assert table_sizes(engine) == {"exchanges": 1, "ratings": 1}
    assert store.purge(cutoff) == 0
    assert [r.exchange.response_id for r in store.rated_exchanges("coffee")] == ["new"]


def test_counts_per_version(store: SqlFeedbackStore) -> None:
    store.add_exchanges(
        [
            exchange("v1-a", version=1),
            exchange("v1-b", version=1),
            exchange("v2-a", version=2),
            exchange("v2-b", version=2),
            exchange("v3-a", version=3),
            exchange("ledger", domain="ledger", version=1),
        ]
    )
    store.add_rating(rating("v1-a", 1))
    store.add_rating(rating("v1-a", -1, correction="Shorter, please."))
    store.add_rating(rating("v2-a", -1, comment="Wrong price."))
    store.add_rating(rating("v2-b", -1, correction="It is 3.50."))
    store.add_rating(rating("ledger", 1))
    assert store.counts("coffee") == {
        1: {"captured": 2, "up": 1, "down": 1, "corrections": 1},
        2: {"captured": 2, "up": 0, "down": 2, "corrections": 1},
        3: {"captured": 1, "up": 0, "down": 0, "corrections": 0},
    }
    assert store.counts("nobody") == {}


# -------------------------------------------------------------------- failures


def test_a_sqlite_file_that_cannot_be_created_is_a_database_error() -> None:
    # /proc refuses new folders, to root too.
    with pytest.raises(DatabaseError, match=r"^database sqlite:////proc/lorastack-no/x.db: "):
        make_engine("sqlite:////proc/lorastack-no/x.db")


def test_a_sqlite_file_that_cannot_be_opened_is_a_database_error(tmp_path: Path) -> None:
    (tmp_path / "a-folder.db").mkdir()
    engine = make_engine(f"sqlite:///{tmp_path / 'a-folder.db'}")
    with pytest.raises(DatabaseError) as raised:
        SqlFeedbackStore(engine)
    assert str(raised.value).endswith("unable to open database file")
    assert "\n" not in str(raised.value)


def test_an_unreachable_postgresql_is_a_one_line_database_error() -> None:
    port = free_port()  # nothing listens there
    engine = make_engine(f"postgresql://gateway:s3cret@127.0.0.1:{port}/lorastack")
    with pytest.raises(DatabaseError) as raised:
        SqlFeedbackStore(engine)
    message = str(raised.value)
    assert message.startswith(f"database postgresql+psycopg://gateway:***@127.0.0.1:{port}/")
    assert "s3cret" not in message and "\n" not in message
    assert "refused" in message or "failed" in message


def test_a_database_newer_than_this_lorastack_is_refused(engine: Engine) -> None:
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    with pytest.raises(DatabaseError, match="revision 9999, newer than this lorastack knows"):
        SqlFeedbackStore(engine)


# -------------------------------------------------------------------- migrations


def test_every_migration_keeps_the_rows_written_before_it(engine: Engine) -> None:
    walk_migrations_with_rows(engine)


def test_every_migration_downgrades_and_upgrades_again(engine: Engine) -> None:
    walk_down_and_up(engine)


def test_the_migrations_build_the_schema_the_code_describes(engine: Engine) -> None:
    upgrade(engine)
    assert schema_differences(engine) == []


def test_a_database_at_the_newest_revision_costs_one_read(engine: Engine) -> None:
    """A gateway's stores share an engine and each asks for the newest schema at start:
    once there, each ask reads the version and writes nothing; below it, a migration."""
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    upgrade(engine)
    assert any("CREATE TABLE" in sql for sql in statements)
    statements.clear()
    SqlFeedbackStore(engine)
    assert any(VERSION_TABLE in sql for sql in statements)
    # No write, and not SQLite's write lock (BEGIN IMMEDIATE) that a migration holds.
    writes = {"CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE"}
    assert not [sql for sql in statements if sql.split()[0].upper() in writes]
    assert "BEGIN IMMEDIATE" not in statements
    downgrade(engine, "base")
    statements.clear()
    upgrade(engine)
    assert any("CREATE TABLE" in sql for sql in statements)
