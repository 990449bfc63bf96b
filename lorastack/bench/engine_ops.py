"""The engine's own LoRA speed: vLLM's CPU LoRA ops against lorastack's, on vLLM directly.

Every variant is an engine of its own, started in turn on the bundled model and measured
directly (no gateway), with the load of the serving cases:

| variant | engine |
|---|---|
| `vllm-ops` | LoRA enabled, vLLM's own CPU LoRA ops |
| `lorastack-ops` | LoRA enabled, lorastack's ops (serve/cpu_lora), the default; also |
| | serves one adapter of each shape given at start (`--lora-modules`) |
| `lorastack-ops-compiled` | lorastack's ops with the model compiled (`engine.lora_compile`) |
| `no-lora` | LoRA not enabled: what `--enable-lora` costs the base model |
| `lorastack-ops-max-loras-N` | lorastack's ops with N adapters per batch instead of the default |

Adapters come in two shapes (`adapters.SHAPES`): rank 8 on q/v and what `lorastack train`
trains by default, rank 16 on every linear layer; N of each for the mixed workload.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from lorastack.bench.adapters import SHAPES, LoraShape, write_random_loras
from lorastack.bench.cases import DirectTarget, ServingPlan, measure
from lorastack.bench.stats import CaseStats
from lorastack.bench.targets import RATIO, Comparison, TargetCheck, check
from lorastack.progress import NullProgress, Progress

STOCK = "vllm-ops"
OURS = "lorastack-ops"
OURS_COMPILED = "lorastack-ops-compiled"
NO_LORA = "no-lora"
BASE = "base"
ADAPTER = "adapter"
MIXED = "mixed"
AT_START = "at-start"
"""One adapter given to the engine at start instead of loaded at run time."""
# Small random weights, as in the serving cases: the cost does not depend on them.
LORA_STD = 0.02


@dataclass(frozen=True)
class EngineVariant:
    name: str
    lora_ops: str | None
    """`lorastack` or `vllm`; None: an engine without LoRA."""
    max_loras: int
    workloads: tuple[str, ...]
    lora_compile: bool = False
    """Compile the model with LoRA on (lorastack's ops only)."""


def engine_variants(default_max_loras: int, max_loras_sweep: Sequence[int]) -> list[EngineVariant]:
    variants = [
        EngineVariant(STOCK, "vllm", default_max_loras, (BASE, ADAPTER, MIXED)),
        EngineVariant(OURS, "lorastack", default_max_loras, (BASE, ADAPTER, MIXED, AT_START)),
        EngineVariant(OURS_COMPILED, "lorastack", default_max_loras, (BASE, ADAPTER), True),
        EngineVariant(NO_LORA, None, default_max_loras, (BASE,)),
    ]
    variants += [
        EngineVariant(f"{OURS}-max-loras-{n}", "lorastack", n, (MIXED,))
        for n in dict.fromkeys(max_loras_sweep)
        if n != default_max_loras
    ]
    return variants


@dataclass(frozen=True)
class EngineCase:
    variant: str
    workload: str
    shape: str | None
    """The adapters' shape; None for the base model."""
    concurrency: int

    @property
    def name(self) -> str:
        return f"{self.variant}/{self.shape or BASE}/{self.workload}/c{self.concurrency}"


@dataclass(frozen=True)
class EngineCaseResult:
    case: EngineCase
    stats: CaseStats

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.case.name, **asdict(self.case), **self.stats.to_dict()}


@dataclass
class EngineReport:
    cases: list[EngineCaseResult]
    memory_mib: dict[str, float]
    """Resident memory of each variant's engine processes after its cases."""

    def comparisons(self) -> list[Comparison]:
        return engine_comparisons(self.cases)

    def targets(self) -> list[TargetCheck]:
        return engine_targets(self.comparisons())

    def to_dict(self) -> dict[str, Any]:
        return {
            "cases": [r.to_dict() for r in self.cases],
            "memory_mib": self.memory_mib,
            "ratios": [c.to_dict() for c in self.comparisons()],
        }


class RunningEngine(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def pid(self) -> int | None: ...


EngineStarter = Callable[[EngineVariant, dict[str, Path]], AbstractContextManager[RunningEngine]]
"""Starts an engine for a variant, with these adapters (name -> folder) given at start,
and stops it on leaving."""
MemoryProbe = Callable[[int], float]


def write_adapters(base: Path, folder: Path, count: int, seed: int) -> dict[str, list[Path]]:
    """`count` random adapters of every shape: shape name -> folders."""
    written = {}
    for offset, shape in enumerate(SHAPES.values()):
        targets = [
            (folder / f"{shape.name}-{i}", seed + 100 * offset + i) for i in range(1, count + 1)
        ]
        write_random_loras(base, targets, std=LORA_STD, shape=shape)
        written[shape.name] = [path for path, _ in targets]
    return written


def _cases(variant: EngineVariant, levels: Sequence[int]) -> list[EngineCase]:
    cases = []
    for level in levels:
        for workload in variant.workloads:
            shapes: Sequence[LoraShape | None] = (
                [None] if workload == BASE else list(SHAPES.values())
            )
            cases += [
                EngineCase(variant.name, workload, s.name if s else None, level) for s in shapes
            ]
    return cases


def _models(case: EngineCase, base_model: str, adapters: dict[str, list[Path]]) -> list[str]:
    if case.shape is None:
        return [base_model]
    if case.workload == AT_START:
        return [f"{case.shape}-{AT_START}"]
    names = [path.name for path in adapters[case.shape]]
    return names[:1] if case.workload == ADAPTER else names


async def _run_variant(
    url: str,
    cases: Sequence[EngineCase],
    base_model: str,
    adapters: dict[str, list[Path]],
    plan: ServingPlan,
    progress: Progress,
    on_case: Callable[[EngineCaseResult], None],
) -> None:
    dirs = {path.name: path for paths in adapters.values() for path in paths}
    async with httpx.AsyncClient(timeout=plan.timeout_s, trust_env=False) as client:
        target = DirectTarget(url, dirs, client)
        for case in cases:
            models = _models(case, base_model, adapters)
            stats, _ = await measure(case.name, models, case.concurrency, target, plan, progress)
            on_case(EngineCaseResult(case, stats))


def run_engine_ops(
    start: EngineStarter,
    variants: Sequence[EngineVariant],
    base_model: str,
    adapters: dict[str, list[Path]],
    plan: ServingPlan,
    memory: MemoryProbe,
    report: EngineReport,
    progress: Progress | None = None,
) -> None:
    """Each variant's engine in turn, its cases at every level; results land in `report`
    as they come, so that a run stopped halfway still reports what it measured."""
    progress = progress or NullProgress()
    for variant in variants:
        at_start = {}
        if AT_START in variant.workloads:
            at_start = {f"{shape}-{AT_START}": paths[0] for shape, paths in adapters.items()}
        progress.step(f"starting the {variant.name} engine")
        with start(variant, at_start) as engine:
            asyncio.run(
                _run_variant(
                    engine.url,
                    _cases(variant, plan.levels),
                    base_model,
                    adapters,
                    plan,
                    progress,
                    report.cases.append,
                )
            )
            if engine.pid is not None:
                report.memory_mib[variant.name] = round(memory(engine.pid), 1)


@dataclass(frozen=True)
class _EnginePair:
    name: str
    subject: tuple[str, str]
    """(variant, workload) measured."""
    reference: tuple[str, str]
    """(variant, workload) it is divided by; the shape is the subject's, or the base model."""


def _pairs(variants: Sequence[str]) -> list[_EnginePair]:
    with_lora = (STOCK, OURS, OURS_COMPILED)
    pairs = [_EnginePair("adapter vs base", (v, ADAPTER), (v, BASE)) for v in with_lora]
    pairs += [_EnginePair("mixed vs one adapter", (v, MIXED), (v, ADAPTER)) for v in (STOCK, OURS)]
    # What a domain costs against the base model served the fastest way: no LoRA at all.
    pairs += [
        _EnginePair("adapter vs base without LoRA", (v, ADAPTER), (NO_LORA, BASE))
        for v in with_lora
    ]
    pairs += [
        _EnginePair("compiled vs not", (OURS_COMPILED, w), (OURS, w)) for w in (BASE, ADAPTER)
    ]
    pairs += [
        _EnginePair("mixed vs one adapter", (v, MIXED), (OURS, ADAPTER))
        for v in variants
        if v.startswith(f"{OURS}-max-loras-")
    ]
    pairs += [_EnginePair("lorastack vs vllm ops", (OURS, w), (STOCK, w)) for w in (ADAPTER, MIXED)]
    pairs += [
        _EnginePair("LoRA enabled vs not, base model", (v, BASE), (NO_LORA, BASE))
        for v in with_lora
    ]
    pairs.append(_EnginePair("at start vs at run time", (OURS, AT_START), (OURS, ADAPTER)))
    return pairs


def engine_comparisons(results: Sequence[EngineCaseResult]) -> list[Comparison]:
    """Tokens/s ratios between the cases measured, per concurrency level and shape."""
    by_key = {
        (r.case.variant, r.case.workload, r.case.shape, r.case.concurrency): r for r in results
    }
    variants = list(dict.fromkeys(r.case.variant for r in results))
    levels = list(dict.fromkeys(r.case.concurrency for r in results))
    comparisons = []
    for level in levels:
        for pair in _pairs(variants):
            shapes: list[str | None] = [None] if pair.subject[1] == BASE else list(SHAPES)
            for shape in shapes:
                reference_shape = None if pair.reference[1] == BASE else shape
                subject = by_key.get((*pair.subject, shape, level))
                reference = by_key.get((*pair.reference, reference_shape, level))
                if subject is None or reference is None:
                    continue
                value = None
                if reference.stats.tokens_per_s:
                    value = round(subject.stats.tokens_per_s / reference.stats.tokens_per_s, 4)
                comparisons.append(
                    Comparison(
                        pair.name,
                        "tokens_per_s",
                        RATIO,
                        level,
                        subject.case.name,
                        reference.case.name,
                        value,
                    )
                )
    return comparisons


@dataclass(frozen=True)
class _EngineRule:
    target: str
    rule: str
    comparison: str
    subject_prefix: str
    limit: float
    min_concurrency: int = 1
    """Held only from this many concurrent streams on."""


# The targets of lorastack's CPU LoRA ops (docs/performance.md); held on the default engine.
ENGINE_RULES = (
    _EngineRule(
        "adapter speed, r16 all-linear",
        ">= 0.85x base",
        "adapter vs base",
        f"{OURS}/r16-all/",
        0.85,
    ),
    _EngineRule(
        "adapter speed, r8 q/v", ">= 0.90x base", "adapter vs base", f"{OURS}/r8-qv/", 0.90
    ),
    _EngineRule(
        "N adapters mixed (engine)",
        ">= 0.90x one adapter",
        "mixed vs one adapter",
        f"{OURS}/",
        0.90,
        min_concurrency=2,
    ),
    _EngineRule(
        "adapter loaded at run time",
        "at start <= 1.05x run time",
        "at start vs at run time",
        f"{OURS}/",
        1.05,
    ),
)


def engine_targets(comparisons: Sequence[Comparison]) -> list[TargetCheck]:
    checks = []
    for rule in ENGINE_RULES:
        at_least = rule.comparison != "at start vs at run time"
        for comparison in comparisons:
            if comparison.name != rule.comparison:
                continue
            if not comparison.subject.startswith(rule.subject_prefix):
                continue
            if comparison.subject.startswith(f"{OURS}-max-loras-"):
                continue
            if comparison.concurrency < rule.min_concurrency:
                continue
            checks.append(
                TargetCheck(
                    rule.target,
                    rule.rule,
                    f"{comparison.subject} vs {comparison.reference}",
                    comparison.value,
                    rule.limit,
                    check(comparison.value, rule.limit, at_least),
                )
            )
    return checks
