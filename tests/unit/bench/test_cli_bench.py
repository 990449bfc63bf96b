"""`lorastack bench` wiring, with the heavy parts replaced."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lorastack.models import ModelRecord

TIMINGS = [
    {"name": "short", "words": 12, "p50_ms": 2.0, "p99_ms": 2.4, "mean_ms": 2.1},
    {"name": "medium", "words": 50, "p50_ms": 4.2, "p99_ms": 5.0, "mean_ms": 4.3},
    {"name": "long", "words": 200, "p50_ms": 20.0, "p99_ms": 24.0, "mean_ms": 21.0},
]


class _Store:
    def __init__(self, record: ModelRecord) -> None:
        self.record = record

    def pull_bundled(self, progress: Any = None) -> tuple[ModelRecord, bool]:
        return self.record, False


def test_help_names_the_options(cli: Callable[..., Any]) -> None:
    result = cli("bench", "--help")
    assert result.code == 0
    for option in ("--quick", "--concurrency", "--out", "--requests", "--max-tokens"):
        assert option in result.out
    for option in ("--domains", "--seed", "--only"):
        assert option in result.out


def test_too_few_domains_to_swap_is_a_one_line_error(cli: Callable[..., Any]) -> None:
    result = cli("bench", "--only", "serve", "--domains", "2")
    assert result.code == 1
    assert result.err.strip() == (
        "error: --domains 2 would not make adapters swap: use more than the engine's max_loras (8)"
    )


def test_a_guard_only_run_writes_its_report(
    cli: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    fake_base: ModelRecord,
    tmp_path: Path,
) -> None:
    calls: list[tuple[dict[str, str], int]] = []

    def fake_guard_bench(env: dict[str, str], repeats: int, log: Path) -> list[dict[str, Any]]:
        calls.append((env, repeats))
        return TIMINGS

    monkeypatch.setattr("lorastack.cli.bench.run_guard_bench", fake_guard_bench)
    monkeypatch.setattr("lorastack.cli.bench.model_store", lambda: _Store(fake_base))
    out = tmp_path / "report"
    result = cli("bench", "--only", "guard", "--quick", "--out", str(out))
    assert result.code == 0, result.err
    assert result.last_line == str(out)
    assert "guard scan time" in result.out and "pass" in result.out
    [(env, repeats)] = calls
    assert repeats == 20
    assert env["LORASTACK_HOME"] != str(tmp_path / "home")  # a scratch home, not the user's
    assert env["HF_HUB_OFFLINE"] == "1"
    data = json.loads((out / "bench.json").read_text())
    assert data["settings"]["parts"] == ["guard"]
    assert data["settings"]["quick"] is True
    assert data["serving"] is None and data["training"] is None
    assert data["guard"]["timings"] == TIMINGS
    assert [t["verdict"] for t in data["targets"]] == ["pass"]
    assert sorted(p.name for p in out.iterdir()) == ["bench.json", "bench.md", "guard.png"]


def test_a_failing_part_still_leaves_a_report(
    cli: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    fake_base: ModelRecord,
    tmp_path: Path,
) -> None:
    from lorastack.bench.errors import BenchError

    def broken(*args: Any) -> list[dict[str, Any]]:
        raise BenchError("the guard benchmark failed (exit code 1)")

    monkeypatch.setattr("lorastack.cli.bench.run_guard_bench", broken)
    monkeypatch.setattr("lorastack.cli.bench.model_store", lambda: _Store(fake_base))
    result = cli("bench", "--only", "guard", "--out", str(tmp_path / "r"))
    assert result.code == 1
    assert result.err.strip().splitlines()[-1] == (
        "error: the guard benchmark failed (exit code 1)"
    )
    data = json.loads((tmp_path / "r" / "bench.json").read_text())
    assert data["guard"] is None
    assert data["notes"] == ["the run stopped: the guard benchmark failed (exit code 1)"]
