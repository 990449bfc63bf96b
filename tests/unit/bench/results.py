"""Made-up case results, for tests of the ratios, targets and reports."""

from __future__ import annotations

from typing import Any

from lorastack.bench.cases import Case, CaseResult, Route, SwapStats, Workload, case_matrix
from lorastack.bench.stats import CaseStats


def stats(**values: Any) -> CaseStats:
    fields: dict[str, Any] = {
        "requests": 8,
        "failed": 0,
        "output_tokens": 512,
        "wall_s": 10.0,
        "tokens_per_s": 51.2,
        "ttft_p50_ms": 100.0,
        "ttft_p99_ms": 150.0,
        "tpot_p50_ms": 20.0,
        "tpot_p99_ms": 30.0,
        "latency_p50_ms": 1400.0,
        "latency_p99_ms": 1600.0,
    }
    fields.update(values)
    return CaseStats(**fields)


def result(route: Route, workload: Workload, concurrency: int = 1, **values: Any) -> CaseResult:
    swap = SwapStats(operations=6, failed=0) if workload is Workload.SWAP else None
    return CaseResult(Case(route, workload, concurrency), stats(**values), swap)


def matrix(levels: tuple[int, ...] = (1, 8)) -> list[CaseResult]:
    """Every case with the same made-up numbers."""
    return [
        CaseResult(case, stats(), SwapStats(4, 0) if case.workload is Workload.SWAP else None)
        for case in case_matrix(levels)
    ]
