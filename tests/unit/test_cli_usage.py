"""`lorastack usage`, `lorastack audit` and the audit trail of the adapter commands, on the
default SQLite database."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lorastack.audit import cli_actor
from lorastack.db import SqlAuditLog, SqlUsageStore, open_engine
from lorastack.models import ModelRecord
from lorastack.settings import get_settings
from lorastack.usage import UsageEvent
from tests.fakes import write_adapter
from tests.servers import free_port


def _usage(days_ago: float, key: str | None, model: str, version: int | None, tokens: int) -> Any:
    moment = datetime.now(UTC) - timedelta(days=days_ago)
    return UsageEvent(moment, key, None, model, version, "/v1/chat/completions", tokens, 1, 0.5)


@pytest.fixture
def recorded() -> None:
    with open_engine(get_settings()) as engine:
        SqlUsageStore(engine).add_usage(
            [
                _usage(0, "support-widget", "coffee", 2, 99),
                _usage(1, "support-widget", "coffee", 1, 9),
                _usage(2, "batch-job", "ledger", 1, 49),
                _usage(3, None, "tiny", None, 4),
                _usage(30, "support-widget", "coffee", 1, 1000),  # before the default week
            ]
        )


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_usage_as_a_table_by_domain(cli: Any, recorded: None) -> None:
    shown = cli("usage")
    assert shown.code == 0, shown.err
    assert "by domain" in shown.err
    lines = shown.out.splitlines()
    coffee = next(line for line in lines if "coffee" in line)
    assert "110" in coffee  # 100 + 10 tokens of the last week
    assert "0.50 s" in coffee
    assert any("ledger" in line for line in lines) and any("tiny" in line for line in lines)


def test_usage_as_csv_by_key_and_version(cli: Any, recorded: None) -> None:
    by_key = cli("usage", "--by", "key", "--csv")
    assert by_key.code == 0, by_key.err
    assert _rows(by_key.out) == [
        ["key", "requests", "prompt_tokens", "completion_tokens", "total_tokens", "mean_latency_s"],
        ["support-widget", "2", "108", "2", "110", "0.5000"],
        ["batch-job", "1", "49", "1", "50", "0.5000"],
        ["(no key)", "1", "4", "1", "5", "0.5000"],
    ]
    by_version = _rows(cli("usage", "--by", "version", "--since", "60d", "--csv").out)
    assert [row[0] for row in by_version] == [
        "version",
        "coffee@v1",
        "coffee@v2",
        "ledger@v1",
        "tiny",
    ]
    daily = _rows(cli("usage", "--since", "36h", "--daily", "--csv").out)
    assert daily[0][:2] == ["domain", "day"]
    assert {(row[0], row[3]) for row in daily[1:]} == {("coffee", "9"), ("coffee", "99")}


def test_usage_says_when_nothing_was_recorded(cli: Any) -> None:
    empty = cli("usage", "--since", "2999-01-01")
    assert empty.code == 0 and empty.out == ""
    assert "no answers recorded since 2999-01-01 00:00 UTC" in empty.err


@pytest.mark.parametrize("args", [("usage", "--since", "3x"), ("audit", "--since", "yesterday")])
def test_a_bad_since_is_a_clear_error(cli: Any, args: tuple[str, ...]) -> None:
    refused = cli(*args)
    assert refused.code == 2
    assert "Invalid value for --since" in refused.err and "expected a date" in refused.err
    assert "Traceback" not in refused.err


def test_usage_purge_removes_the_old(cli: Any, recorded: None) -> None:
    purged = cli("usage", "purge", "--older-than-days", "7")
    assert purged.code == 0, purged.err
    assert purged.out.startswith("removed the usage of 1 answer before ")
    kept = _rows(cli("usage", "--since", "60d", "--csv").out)
    assert [row[0] for row in kept[1:]] == ["coffee", "ledger", "tiny"]


# -- the audit trail -------------------------------------------------------------------


def test_adapter_commands_are_audited(cli: Any, tmp_path: Path, fake_base: ModelRecord) -> None:
    adapter = str(write_adapter(tmp_path / "a", "tiny"))
    steps = [
        ("adapters", "publish", adapter, "--domain", "coffee", "--promote"),
        ("adapters", "publish", adapter, "--domain", "coffee"),
        ("adapters", "promote", "coffee", "2"),
        ("adapters", "rollback", "coffee"),
        ("adapters", "canary", "coffee", "2", "--weight", "10"),
        ("adapters", "canary-stop", "coffee", "--reason", "too chatty"),
        ("adapters", "capture", "coffee", "--on"),
        ("adapters", "publish", adapter, "--domain", "coffee"),
        ("adapters", "rm", "coffee@3"),
    ]
    for step in steps:
        done = cli(*step)
        assert done.code == 0, done.err
        assert "warning" not in done.err
    assert cli("adapters", "rm", "coffee@1").code == 1  # refused: not recorded
    rows = _rows(cli("audit", "--csv").out)
    assert rows[0] == ["created_at", "actor", "action", "target", "details"]
    assert [(row[2], row[3]) for row in reversed(rows[1:])] == [
        ("adapters.publish", "coffee@v1"),
        ("adapters.publish", "coffee@v2"),
        ("adapters.promote", "coffee@v2"),
        ("adapters.rollback", "coffee@v1"),
        ("adapters.canary", "coffee@v2"),
        ("adapters.canary_stop", "coffee@v2"),
        ("adapters.capture", "coffee"),
        ("adapters.publish", "coffee@v3"),
        ("adapters.remove", "coffee@v3"),
    ]
    assert {row[1] for row in rows[1:]} == {cli_actor()}
    assert '"reason": "too chatty"' in rows[4][4]
    promotions = cli("audit", "--action", "adapters.promote")
    assert promotions.code == 0 and "coffee@v2" in promotions.out
    assert "adapters.rollback" not in promotions.out
    newest = _rows(cli("audit", "--limit", "1", "--csv").out)
    assert [row[2] for row in newest[1:]] == ["adapters.remove"]


def test_audit_says_when_nothing_was_recorded(cli: Any) -> None:
    with open_engine(get_settings()) as engine:
        SqlAuditLog(engine)  # the tables, empty
    empty = cli("audit", "--since", "7d")
    assert empty.code == 0 and empty.out == ""
    assert "no admin actions recorded since" in empty.err


def test_a_database_that_is_down_costs_the_record_never_the_command(
    cli: Any, tmp_path: Path, fake_base: ModelRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The registry in folders, so that only the audit trail's database goes down.
    monkeypatch.setenv("LORASTACK_REGISTRY__INDEX", "folder")
    adapter = str(write_adapter(tmp_path / "a", "tiny"))
    cli("adapters", "publish", adapter, "--domain", "coffee")
    cli("adapters", "publish", adapter, "--domain", "coffee")
    monkeypatch.setenv("LORASTACK_DATABASE_URL", f"postgresql://gw:pw@127.0.0.1:{free_port()}/x")
    get_settings.cache_clear()
    promoted = cli("adapters", "promote", "coffee", "2")
    assert promoted.code == 0
    assert promoted.out.strip() == "coffee@prod -> v2"
    assert "warning: not recorded in the audit trail: database postgresql+psycopg://gw:***@" in (
        " ".join(promoted.err.split())
    )
    assert "Traceback" not in promoted.err
