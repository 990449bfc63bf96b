"""`lorastack db ...` and `lorastack feedback purge` on the default SQLite database."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from lorastack.db import head_revision, open_feedback_store
from lorastack.feedback import Exchange, utc_now
from lorastack.settings import get_settings
from tests.feedback_db import exchange, rating
from tests.servers import free_port


def _captured(response_id: str, days_ago: float, domain: str = "coffee") -> Exchange:
    made = exchange(response_id, domain=domain)
    return Exchange(**{**made.__dict__, "created_at": utc_now() - timedelta(days=days_ago)})


def _remaining() -> dict[str, list[str]]:
    with open_feedback_store(get_settings()) as store:
        return {d: [e.response_id for e in store.exchanges(d)] for d in ("coffee", "ledger")}


def test_db_upgrade_and_current(cli: Any, home: Path) -> None:
    before = cli("db", "current")
    assert before.code == 0, before.err
    assert before.out.strip() == "none (no lorastack tables yet)"
    assert f"database sqlite:///{home / 'lorastack.db'}" in before.err
    upgraded = cli("db", "upgrade")
    assert upgraded.code == 0, upgraded.err
    assert upgraded.out.strip() == f"{head_revision()} (head)"
    assert cli("db", "current").out.strip() == f"{head_revision()} (head)"


def test_purge_removes_what_is_older_than_the_days_given(cli: Any) -> None:
    with open_feedback_store(get_settings()) as store:
        store.add_exchanges(
            [
                _captured("ancient", days_ago=200),
                _captured("old", days_ago=40),
                _captured("recent", days_ago=1),
                _captured("old-ledger", days_ago=40, domain="ledger"),
            ]
        )
        store.add_rating(rating("ancient", 1))

    by_default = cli("feedback", "purge")
    assert by_default.code == 0, by_default.err
    assert by_default.out.startswith("removed 1 exchange captured before ")
    assert _remaining() == {"coffee": ["old", "recent"], "ledger": ["old-ledger"]}

    one_domain = cli("feedback", "purge", "--domain", "coffee", "--older-than-days", "30")
    assert one_domain.out.startswith("removed 1 exchange of coffee captured before ")
    assert _remaining() == {"coffee": ["recent"], "ledger": ["old-ledger"]}

    assert cli("feedback", "purge", "--older-than-days", "30").out.startswith("removed 1 ")
    assert cli("feedback", "purge", "--older-than-days", "30").out.startswith("removed 0 ")


def test_purge_help_says_who_applies_each_domains_retention(cli: Any) -> None:
    shown = cli("feedback", "purge", "--help")
    assert shown.code == 0
    assert "retention" in shown.out and "--older-than-days" in shown.out


def test_an_unreachable_database_is_one_line_and_exit_1(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LORASTACK_DATABASE_URL", f"postgresql://gw:pw@127.0.0.1:{free_port()}/x")
    get_settings.cache_clear()
    refused = cli("feedback", "purge")
    assert refused.code == 1
    [line] = refused.err.strip().splitlines()[-1:]
    assert line.startswith("error: database postgresql+psycopg://gw:***@127.0.0.1:")
    assert "Traceback" not in refused.err
