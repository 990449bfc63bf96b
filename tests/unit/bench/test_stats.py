"""Percentiles and the per-case summary."""

from __future__ import annotations

import pytest

from lorastack.bench.load import LoadRun, RequestResult
from lorastack.bench.stats import summarise
from lorastack.stats import percentile


def test_percentile_interpolates_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 100) == 4.0
    assert percentile(list(map(float, range(1, 101))), 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile(values, 101)


def _ok(ttft: float, decode: float, tokens: int, latency: float, chunks: int = 0) -> RequestResult:
    return RequestResult(
        model="m",
        ok=True,
        started_s=0.0,
        latency_s=latency,
        ttft_s=ttft,
        decode_s=decode,
        output_tokens=tokens,
        chunks=chunks or tokens,
    )


def test_summary_counts_only_successful_requests_and_keeps_distinct_errors() -> None:
    failed = RequestResult("m", ok=False, started_s=0.0, latency_s=0.1, error="HTTP 503: busy")
    run = LoadRun(
        (
            _ok(0.1, 0.9, 10, 1.0),
            _ok(0.3, 1.8, 10, 2.1),
            failed,
            failed,
        ),
        wall_s=2.0,
    )
    stats = summarise(run)
    assert stats.requests == 4
    assert stats.failed == 2
    assert stats.output_tokens == 20
    assert stats.tokens_per_s == 10.0
    assert stats.ttft_p50_ms == 200.0
    assert stats.tpot_p50_ms == pytest.approx(150.0)  # (0.9 / 9 + 1.8 / 9) / 2
    assert stats.latency_p99_ms == pytest.approx(2089.0)
    assert stats.errors == ("HTTP 503: busy",)
    assert stats.to_dict()["errors"] == ["HTTP 503: busy"]


def test_an_answer_that_arrived_in_one_piece_has_no_time_per_token() -> None:
    whole = _ok(0.5, 0.0, 16, 0.5, chunks=1)
    assert whole.tpot_s is None
    assert _ok(0.5, 1.5, 16, 2.0).tpot_s == pytest.approx(0.1)
    stats = summarise(LoadRun((whole,), wall_s=0.5))
    assert stats.tpot_p50_ms is None
    assert stats.ttft_p50_ms == 500.0


def test_a_run_where_everything_failed_has_no_timings() -> None:
    failed = RequestResult("m", ok=False, started_s=0.0, latency_s=0.1, error="boom")
    stats = summarise(LoadRun((failed,), wall_s=0.1))
    assert (stats.failed, stats.output_tokens, stats.tokens_per_s) == (1, 0, 0.0)
    assert stats.ttft_p50_ms is None and stats.latency_p99_ms is None
