"""The feedback store on both databases it supports: SQLite and a real PostgreSQL server.

PostgreSQL runs as a throwaway cluster (tests/postgres.py): skipped without the server
binaries, failed instead under CI. Each gateway of a deployment has its own engine on the
shared database; the concurrency tests run two the same way, on threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import Engine

from lorastack.db import SqlFeedbackStore, current_revision, head_revision, make_engine
from lorastack.feedback import Exchange
from tests.feedback_db import (
    T0,
    exchange,
    rating,
    schema_differences,
    table_sizes,
    walk_down_and_up,
    walk_migrations_with_rows,
)

pytestmark = pytest.mark.integration

T = TypeVar("T")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'lorastack.db'}"
    # Asked for here, not as an argument: the SQLite cases must not need the server.
    url: str = request.getfixturevalue("postgres_url")
    # As a user writes it: lorastack picks the driver.
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture
def engines(database: str) -> Iterator[Callable[[], Engine]]:
    """Engines on the database, one per simulated gateway, disposed after the test."""
    made: list[Engine] = []

    def new_engine() -> Engine:
        made.append(make_engine(database))
        return made[-1]

    yield new_engine
    for engine in made:
        engine.dispose()


def _on_threads(work: list[Callable[[], T]]) -> list[T]:
    """Run each callable on its own thread, started together; their results in order."""
    results: list[T | None] = [None] * len(work)
    errors: list[BaseException] = []
    start = threading.Barrier(len(work))

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = work[index]()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a writer hung"
    if errors:
        raise errors[0]
    return [result for result in results if result is not None]


def test_the_store_does_its_whole_job(engines: Callable[[], Engine]) -> None:
    engine = engines()
    store = SqlFeedbackStore(engine)
    assert current_revision(engine) == head_revision()
    assert schema_differences(engine) == []

    store.add_exchanges(
        [
            exchange("a", version=1, minutes=0),
            exchange("b", version=2, minutes=10),
            exchange("a", answer="a retry with the same id", minutes=20),
            exchange("ledger", domain="ledger", minutes=5),
        ]
    )
    store.add_exchanges([exchange("c", version=2, minutes=30)])
    assert store.get_exchange("a") == exchange("a", version=1, minutes=0)
    assert [e.response_id for e in store.exchanges("coffee")] == ["a", "b", "c"]
    assert [e.response_id for e in store.exchanges("coffee", T0 + timedelta(minutes=10))] == [
        "b",
        "c",
    ]

    store.add_rating(rating("b", -1, minutes=12, correction="Oat milk is 50p."))
    store.add_rating(rating("a", 1, minutes=11))
    store.add_rating(rating("a", -1, minutes=13, comment="Changed my mind."))
    rated = store.rated_exchanges("coffee")
    assert [(r.exchange.response_id, [x.rating for x in r.ratings]) for r in rated] == [
        ("a", [1, -1]),
        ("b", [-1]),
    ]
    assert rated[1].ratings[0] == rating("b", -1, minutes=12, correction="Oat milk is 50p.")
    assert store.counts("coffee") == {
        1: {"captured": 1, "up": 1, "down": 1, "corrections": 0},
        2: {"captured": 2, "up": 0, "down": 1, "corrections": 1},
    }

    assert store.purge(T0 + timedelta(minutes=15), domain="coffee") == 2
    assert table_sizes(engine) == {"exchanges": 2, "ratings": 0}
    assert [e.response_id for e in store.exchanges("ledger")] == ["ledger"]


def test_two_gateways_write_at_once(engines: Callable[[], Engine]) -> None:
    """Two stores on two engines: batches (overlapping ids among them), ratings, purges."""
    first_engine = engines()
    stores = [SqlFeedbackStore(first_engine), SqlFeedbackStore(engines())]
    batches, batch_size = 20, 10

    def capture(gateway: int) -> int:
        store = stores[gateway]
        for batch in range(batches):
            store.add_exchanges(
                [
                    # Ids 0-4 of every batch are the same for both gateways: a retried write.
                    exchange(
                        f"b{batch}-{i}" if i < 5 else f"g{gateway}-b{batch}-{i}",
                        minutes=batch,
                        answer=f"from gateway {gateway}",
                    )
                    for i in range(batch_size)
                ]
            )
            store.add_rating(rating(f"b{batch}-0", 1 if gateway == 0 else -1, minutes=batch))
        return gateway

    assert _on_threads([lambda: capture(0), lambda: capture(1)]) == [0, 1]
    shared, own = batches * 5, 2 * batches * 5
    assert table_sizes(first_engine) == {"exchanges": shared + own, "ratings": 2 * batches}
    first = stores[1].get_exchange("b0-0")
    assert first is not None and first.answer in ("from gateway 0", "from gateway 1")
    assert stores[0].counts("coffee") == {
        1: {"captured": shared + own, "up": batches, "down": batches, "corrections": 0}
    }

    cutoff = T0 + timedelta(minutes=batches // 2)
    removed = _on_threads([lambda: stores[0].purge(cutoff), lambda: stores[1].purge(cutoff)])
    # Both purges ran; between them they removed each old exchange exactly once.
    assert sum(removed) == (batches // 2) * 15
    assert len(stores[0].exchanges("coffee")) == (batches - batches // 2) * 15


def test_gateways_starting_together_migrate_once(engines: Callable[[], Engine]) -> None:
    """Several processes open a store on a fresh database at the same moment."""
    gateways = [engines() for _ in range(4)]
    opened = _on_threads([lambda e=e: SqlFeedbackStore(e) for e in gateways])  # type: ignore[misc]
    assert len(opened) == 4
    assert current_revision(gateways[0]) == head_revision()
    opened[0].add_exchanges([exchange("after")])
    assert [e.response_id for e in opened[3].exchanges("coffee")] == ["after"]


def test_every_migration_keeps_the_rows_written_before_it(engines: Callable[[], Engine]) -> None:
    walk_migrations_with_rows(engines())


def test_every_migration_downgrades_and_upgrades_again(engines: Callable[[], Engine]) -> None:
    engine = engines()
    walk_down_and_up(engine)
    assert schema_differences(engine) == []


def test_large_batches_and_texts(engines: Callable[[], Engine]) -> None:
    store = SqlFeedbackStore(engines())
    long_answer = "☕ " * 50_000
    batch = [exchange(f"big-{i}", minutes=i % 60) for i in range(2_000)]
    store.add_exchanges([*batch, Exchange(**{**exchange("long").__dict__, "answer": long_answer})])
    assert len(store.exchanges("coffee")) == 2_001
    stored = store.get_exchange("long")
    assert stored is not None and stored.answer == long_answer
