"""Ratios between cases of one run, and the targets they are held to."""

from __future__ import annotations

from lorastack.bench.cases import Route, Workload, case_matrix
from lorastack.bench.targets import compare, evaluate
from tests.unit.bench.results import matrix, result


def test_the_matrix_compares_each_route_and_workload_next_to_each_other() -> None:
    names = [c.name for c in case_matrix([1, 8])]
    assert names[:5] == [
        "direct/base/c1",
        "gateway/base/c1",
        "guarded/base/c1",
        "limited/base/c1",
        "direct/adapter/c1",
    ]
    assert names[10] == "gateway/swap/c1"
    assert names[11] == "direct/base/c8"
    assert len(names) == 22 == len(set(names))


def test_ratios_and_differences_of_the_cases_measured() -> None:
    results = [
        result(Route.DIRECT, Workload.BASE, tokens_per_s=100.0, ttft_p50_ms=50.0),
        result(Route.GATEWAY, Workload.BASE, tokens_per_s=98.0, ttft_p50_ms=53.5),
        result(Route.GUARDED, Workload.BASE, latency_p50_ms=1500.0, tokens_per_s=80.0),
        result(Route.GATEWAY, Workload.ADAPTER, tokens_per_s=40.0),
        result(Route.GATEWAY, Workload.MIXED, tokens_per_s=30.0, tpot_p99_ms=40.0),
        result(Route.GATEWAY, Workload.SWAP, tpot_p99_ms=50.0, tokens_per_s=0.0),
    ]
    found = {(c.name, c.metric, c.subject): c for c in compare(results)}
    gateway = found[("gateway vs direct", "tokens_per_s", "gateway/base/c1")]
    assert (gateway.value, gateway.reference, gateway.kind) == (0.98, "direct/base/c1", "ratio")
    assert found[("gateway vs direct", "ttft_p50_ms", "gateway/base/c1")].value == 3.5
    assert found[("guarded vs unguarded", "latency_p50_ms", "guarded/base/c1")].value == (
        round(1500 / 1400, 4)
    )
    assert found[("adapter vs base", "tokens_per_s", "gateway/adapter/c1")].value == round(
        40 / 98, 4
    )
    assert found[("mixed vs one adapter", "tokens_per_s", "gateway/mixed/c1")].value == 0.75
    assert found[("swap vs steady", "tpot_p99_ms", "gateway/swap/c1")].value == 1.25
    # Only pairs whose both cases ran: no direct adapter, so no direct adapter-vs-base.
    assert ("adapter vs base", "tokens_per_s", "direct/adapter/c1") not in found
    # A zero reference gives no ratio rather than a division error.
    zero = compare(
        [
            result(Route.DIRECT, Workload.BASE, tokens_per_s=0.0),
            result(Route.GATEWAY, Workload.BASE, tokens_per_s=10.0),
        ]
    )
    assert next(c for c in zero if c.metric == "tokens_per_s").value is None


def test_a_full_matrix_has_every_comparison_at_every_level() -> None:
    comparisons = compare(matrix((1, 8)))
    per_level = [c for c in comparisons if c.concurrency == 1]
    assert len(comparisons) == 2 * len(per_level)
    assert {c.name for c in per_level} == {
        "gateway vs direct",
        "guarded vs unguarded",
        "adapter vs base",
        "mixed vs one adapter",
        "swap vs steady",
        "limited vs unlimited key",
    }
    assert all(c.value == (0.0 if c.kind == "difference" else 1.0) for c in comparisons)


def test_targets_pass_miss_or_are_not_evaluated() -> None:
    results = [
        result(Route.DIRECT, Workload.BASE, 8, tokens_per_s=100.0, ttft_p50_ms=50.0),
        result(Route.GATEWAY, Workload.BASE, 8, tokens_per_s=96.0, ttft_p50_ms=54.0),
        result(Route.GUARDED, Workload.BASE, 8, latency_p50_ms=1540.0),
        result(Route.GATEWAY, Workload.ADAPTER, 8, tokens_per_s=40.0),
        result(Route.GATEWAY, Workload.MIXED, 8, tokens_per_s=36.0, tpot_p99_ms=None),
        result(Route.GATEWAY, Workload.SWAP, 8, tpot_p99_ms=31.0, failed=1),
        result(Route.DIRECT, Workload.MIXED, 8, tokens_per_s=10.0),
        result(Route.DIRECT, Workload.ADAPTER, 8, tokens_per_s=40.0),
    ]
    guard = [
        {"name": "short", "words": 12, "p50_ms": 2.0},
        {"name": "medium", "words": 50, "p50_ms": 5.5},
    ]
    checks = evaluate(results, compare(results), guard)
    verdicts = {(c.target, c.where): c.verdict for c in checks}
    assert verdicts == {
        ("gateway throughput", "gateway/base/c8 vs direct/base/c8"): "miss",  # 0.96 < 0.97
        ("gateway TTFT", "gateway/base/c8 vs direct/base/c8"): "pass",  # +4 ms
        ("gateway throughput", "gateway/adapter/c8 vs direct/adapter/c8"): "pass",
        ("gateway TTFT", "gateway/adapter/c8 vs direct/adapter/c8"): "pass",
        ("gateway throughput", "gateway/mixed/c8 vs direct/mixed/c8"): "pass",
        ("gateway TTFT", "gateway/mixed/c8 vs direct/mixed/c8"): "pass",
        ("guardrails latency", "guarded/base/c8 vs gateway/base/c8"): "pass",  # exactly 1.10x
        # Only the gateway's mixed-vs-adapter ratio is a target (direct's 0.25 is not).
        ("N domains mixed", "gateway/mixed/c8 vs gateway/adapter/c8"): "pass",  # 0.9x
        ("hot-swap TPOT", "gateway/swap/c8 vs gateway/mixed/c8"): "n/a",  # no steady p99
        ("hot-swap failures", "gateway/swap/c8"): "miss",
        ("guard scan time", "50-word message"): "miss",
    }
    scan = next(c for c in checks if c.target == "guard scan time")
    assert (scan.value, scan.limit, scan.passed) == (5.5, 5.0, False)
    assert scan.to_dict()["verdict"] == "miss"


def test_without_a_guard_measurement_there_is_no_scan_target() -> None:
    assert all(c.target != "guard scan time" for c in evaluate([], [], None))
    [missing] = evaluate([], [], [{"name": "long", "p50_ms": 20.0}])
    assert missing.verdict == "n/a"
