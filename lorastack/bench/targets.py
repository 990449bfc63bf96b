"""Ratios between cases measured in the same run, and the targets they are held to.

Absolute numbers move with the machine and whatever else runs on it; ratios of cases
measured back to back on the same engine move much less, so the targets are ratios (the
guard's scan time is the one absolute target, measured on one core).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from lorastack.bench.cases import CaseResult, Route, Workload

Kind = Literal["ratio", "difference"]
RATIO: Kind = "ratio"
DIFFERENCE: Kind = "difference"
SCAN_TARGET_SIZE = "medium"
"""The guard benchmark's 50-word message."""


@dataclass(frozen=True)
class Comparison:
    """`subject` against `reference` on one metric, at one concurrency level."""

    name: str
    metric: str
    kind: Kind
    concurrency: int
    subject: str
    reference: str
    value: float | None
    """subject / reference for a ratio, subject - reference for a difference; None when
    either is missing or the reference is zero."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Pair:
    name: str
    metric: str
    kind: Kind
    subject: tuple[Route, Workload]
    reference: tuple[Route, Workload]


_SERVED = (Workload.BASE, Workload.ADAPTER, Workload.MIXED)

PAIRS: tuple[_Pair, ...] = (
    *(
        _Pair("gateway vs direct", metric, kind, (Route.GATEWAY, w), (Route.DIRECT, w))
        for w in _SERVED
        for metric, kind in (("tokens_per_s", RATIO), ("ttft_p50_ms", DIFFERENCE))
    ),
    *(
        _Pair("guarded vs unguarded", metric, kind, (Route.GUARDED, w), (Route.GATEWAY, w))
        for w in _SERVED
        for metric, kind in (
            ("latency_p50_ms", RATIO),
            ("tokens_per_s", RATIO),
            ("ttft_p50_ms", DIFFERENCE),
        )
    ),
    _Pair(
        "limited vs unlimited key",
        "tokens_per_s",
        RATIO,
        (Route.LIMITED, Workload.BASE),
        (Route.GATEWAY, Workload.BASE),
    ),
    *(
        _Pair("adapter vs base", "tokens_per_s", "ratio", (r, Workload.ADAPTER), (r, Workload.BASE))
        for r in Route
    ),
    *(
        _Pair(
            "mixed vs one adapter",
            "tokens_per_s",
            "ratio",
            (r, Workload.MIXED),
            (r, Workload.ADAPTER),
        )
        for r in Route
    ),
    *(
        _Pair(
            "swap vs steady",
            metric,
            "ratio",
            (Route.GATEWAY, Workload.SWAP),
            (Route.GATEWAY, Workload.MIXED),
        )
        for metric in ("tpot_p99_ms", "tokens_per_s")
    ),
)


def _compare(kind: Kind, subject: float | None, reference: float | None) -> float | None:
    if subject is None or reference is None:
        return None
    if kind == "difference":
        return round(subject - reference, 2)
    if reference == 0:
        return None
    return round(subject / reference, 4)


def compare(results: Sequence[CaseResult]) -> list[Comparison]:
    """Every comparison whose two cases were both measured."""
    by_key = {(r.case.route, r.case.workload, r.case.concurrency): r for r in results}
    levels = list(dict.fromkeys(r.case.concurrency for r in results))
    comparisons = []
    for level in levels:
        for pair in PAIRS:
            subject = by_key.get((*pair.subject, level))
            reference = by_key.get((*pair.reference, level))
            if subject is None or reference is None:
                continue
            comparisons.append(
                Comparison(
                    name=pair.name,
                    metric=pair.metric,
                    kind=pair.kind,
                    concurrency=level,
                    subject=subject.case.name,
                    reference=reference.case.name,
                    value=_compare(
                        pair.kind,
                        getattr(subject.stats, pair.metric),
                        getattr(reference.stats, pair.metric),
                    ),
                )
            )
    return comparisons


@dataclass(frozen=True)
class TargetCheck:
    """One target applied to one measurement."""

    target: str
    rule: str
    where: str
    value: float | None
    limit: float
    passed: bool | None
    """None when the measurement is missing (not evaluated)."""

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "miss", None: "n/a"}[self.passed]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


@dataclass(frozen=True)
class _Rule:
    target: str
    rule: str
    comparison: str
    metric: str
    limit: float
    at_least: bool
    routes: tuple[Route, ...] | None = None
    """Only comparisons whose subject runs on these routes (None: all)."""


RULES: tuple[_Rule, ...] = (
    _Rule("gateway throughput", ">= 0.97x direct", "gateway vs direct", "tokens_per_s", 0.97, True),
    _Rule("gateway TTFT", "p50 <= direct + 5 ms", "gateway vs direct", "ttft_p50_ms", 5.0, False),
    _Rule(
        "guardrails latency",
        "p50 end-to-end <= 1.10x unguarded",
        "guarded vs unguarded",
        "latency_p50_ms",
        1.10,
        False,
    ),
    _Rule(
        "N domains mixed",
        ">= 0.9x one adapter (gateway)",
        "mixed vs one adapter",
        "tokens_per_s",
        0.9,
        True,
        (Route.GATEWAY,),
    ),
    _Rule(
        "limits enforcement",
        ">= 0.98x a key without limits",
        "limited vs unlimited key",
        "tokens_per_s",
        0.98,
        True,
    ),
    _Rule(
        "hot-swap TPOT",
        "p99 <= 1.1x steady state",
        "swap vs steady",
        "tpot_p99_ms",
        1.1,
        False,
    ),
)


def check(value: float | None, limit: float, at_least: bool) -> bool | None:
    if value is None:
        return None
    return value >= limit if at_least else value <= limit


def _where(comparison: Comparison) -> str:
    return f"{comparison.subject} vs {comparison.reference}"


def evaluate(
    results: Sequence[CaseResult],
    comparisons: Sequence[Comparison],
    guard_timings: Sequence[dict[str, Any]] | None = None,
    scan_limit_ms: float = 5.0,
) -> list[TargetCheck]:
    """Each target against every measurement it applies to."""
    checks = []
    for rule in RULES:
        for comparison in comparisons:
            if comparison.name != rule.comparison or comparison.metric != rule.metric:
                continue
            if rule.routes is not None and not comparison.subject.startswith(
                tuple(f"{r}/" for r in rule.routes)
            ):
                continue
            checks.append(
                TargetCheck(
                    rule.target,
                    rule.rule,
                    _where(comparison),
                    comparison.value,
                    rule.limit,
                    check(comparison.value, rule.limit, rule.at_least),
                )
            )
        if rule.comparison == "swap vs steady":
            for result in results:
                if result.case.workload is Workload.SWAP:
                    failed = float(result.stats.failed)
                    checks.append(
                        TargetCheck(
                            "hot-swap failures",
                            "zero failed requests",
                            result.case.name,
                            failed,
                            0.0,
                            check(failed, 0.0, False),
                        )
                    )
    if guard_timings is not None:
        medium = next((t for t in guard_timings if t.get("name") == SCAN_TARGET_SIZE), None)
        value = medium.get("p50_ms") if medium is not None else None
        words = medium.get("words", "?") if medium is not None else "?"
        checks.append(
            TargetCheck(
                "guard scan time",
                f"p50 <= {scan_limit_ms:g} ms, one core",
                f"{words}-word message",
                None if value is None else round(float(value), 3),
                scan_limit_ms,
                check(None if value is None else float(value), scan_limit_ms, False),
            )
        )
    return checks
