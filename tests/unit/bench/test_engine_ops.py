"""The engine part of the bench: its engines, its cases, its ratios and targets."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from lorastack.bench.cases import ServingPlan
from lorastack.bench.engine_ops import (
    EngineCase,
    EngineCaseResult,
    EngineReport,
    EngineVariant,
    engine_comparisons,
    engine_targets,
    engine_variants,
    run_engine_ops,
)
from tests.fake_upstream import FakeUpstream
from tests.unit.bench.results import stats


def _adapters(tmp_path: Path, count: int = 3) -> dict[str, list[Path]]:
    adapters = {}
    for shape in ("r8-qv", "r16-all"):
        adapters[shape] = [tmp_path / f"{shape}-{i}" for i in range(1, count + 1)]
        for path in adapters[shape]:
            path.mkdir()
    return adapters


def test_each_variant_runs_its_cases_on_an_engine_of_its_own(tmp_path: Path) -> None:
    adapters = _adapters(tmp_path)
    started: list[tuple[str, str | None, int, list[str]]] = []
    plan = ServingPlan(levels=(1, 2), requests=lambda c: 2 * c, max_tokens=4, seed=0)
    report = EngineReport(cases=[], memory_mib={})
    with FakeUpstream(base_model="tiny") as fake:

        @contextmanager
        def start(variant: EngineVariant, at_start: dict[str, Path]) -> Iterator[SimpleNamespace]:
            started.append((variant.name, variant.lora_ops, variant.max_loras, sorted(at_start)))
            fake.loaded.update({name: str(path) for name, path in at_start.items()})
            try:
                yield SimpleNamespace(url=fake.url, pid=os.getpid())
            finally:
                for name in at_start:
                    fake.loaded.pop(name)

        run_engine_ops(
            start, engine_variants(2, [4, 3]), "tiny", adapters, plan, lambda pid: 512.0, report
        )
        left_loaded = dict(fake.loaded)

    assert started == [
        ("vllm-ops", "vllm", 2, []),
        ("lorastack-ops", "lorastack", 2, ["r16-all-at-start", "r8-qv-at-start"]),
        ("lorastack-ops-compiled", "lorastack", 2, []),
        ("no-lora", None, 2, []),
        ("lorastack-ops-max-loras-4", "lorastack", 4, []),
        ("lorastack-ops-max-loras-3", "lorastack", 3, []),
    ]
    names = [r.case.name for r in report.cases]
    # Per level: vLLM's ops 1 base + 2 shapes x (adapter, mixed); lorastack's also 2
    # adapters given at start; compiled 1 base + 2 adapters; no LoRA 1 base; each
    # max_loras variant 2 mixed.
    assert len(names) == 2 * (5 + 7 + 3 + 1 + 2 + 2)
    assert "lorastack-ops/r16-all/at-start/c2" in names
    assert "no-lora/base/base/c1" in names
    for result in report.cases:
        assert result.stats.failed == 0, (result.case.name, result.stats.errors)
        assert result.stats.output_tokens > 0
    assert report.memory_mib == {variant: 512.0 for variant, *_ in started}
    assert left_loaded == {}
    # The mixed workload asked for every adapter of its shape, loaded under its folder name.
    assert {"r8-qv-1", "r8-qv-2", "r8-qv-3", "r16-all-3"} <= set(fake.load_calls)
    assert {c.name for c in report.comparisons()} == {
        "adapter vs base",
        "mixed vs one adapter",
        "lorastack vs vllm ops",
        "LoRA enabled vs not, base model",
        "adapter vs base without LoRA",
        "compiled vs not",
        "at start vs at run time",
    }


def _result(variant: str, workload: str, shape: str | None, level: int, tps: float):
    return EngineCaseResult(EngineCase(variant, workload, shape, level), stats(tokens_per_s=tps))


def _measured() -> list[EngineCaseResult]:
    results = []
    for level in (1, 8):
        results += [
            _result("vllm-ops", "base", None, level, 100.0),
            _result("vllm-ops", "adapter", "r16-all", level, 50.0),
            _result("lorastack-ops", "base", None, level, 100.0),
            _result("lorastack-ops", "adapter", "r16-all", level, 90.0),
            _result("lorastack-ops", "adapter", "r8-qv", level, 85.0),
            _result("lorastack-ops", "mixed", "r8-qv", level, 68.0),
            _result("lorastack-ops", "at-start", "r8-qv", level, 86.7),
            _result("lorastack-ops-max-loras-5", "mixed", "r8-qv", level, 85.0),
            _result("lorastack-ops-compiled", "base", None, level, 150.0),
            _result("lorastack-ops-compiled", "adapter", "r16-all", level, 120.0),
            _result("no-lora", "base", None, level, 125.0),
        ]
    return results


def test_ratios_divide_cases_of_the_same_shape_and_level() -> None:
    values = {(c.name, c.subject, c.concurrency): c.value for c in engine_comparisons(_measured())}
    at = "c8"
    assert values[("adapter vs base", f"vllm-ops/r16-all/adapter/{at}", 8)] == 0.5
    assert values[("adapter vs base", f"lorastack-ops/r16-all/adapter/{at}", 8)] == 0.9
    assert values[("lorastack vs vllm ops", f"lorastack-ops/r16-all/adapter/{at}", 8)] == 1.8
    assert values[("mixed vs one adapter", f"lorastack-ops/r8-qv/mixed/{at}", 8)] == 0.8
    assert values[("mixed vs one adapter", f"lorastack-ops-max-loras-5/r8-qv/mixed/{at}", 8)] == 1.0
    assert values[("LoRA enabled vs not, base model", f"lorastack-ops/base/base/{at}", 8)] == 0.8
    assert values[("at start vs at run time", f"lorastack-ops/r8-qv/at-start/{at}", 8)] == 1.02
    compiled = f"lorastack-ops-compiled/r16-all/adapter/{at}"
    assert values[("adapter vs base", compiled, 8)] == 0.8
    assert values[("adapter vs base without LoRA", compiled, 8)] == 0.96
    assert (
        values[("adapter vs base without LoRA", f"lorastack-ops/r16-all/adapter/{at}", 8)] == 0.72
    )
    assert values[("compiled vs not", compiled, 8)] == 1.3333
    assert values[("compiled vs not", f"lorastack-ops-compiled/base/base/{at}", 8)] == 1.5
    # Nothing measured, nothing compared: vLLM's ops ran no r8-qv case here.
    assert ("adapter vs base", f"vllm-ops/r8-qv/adapter/{at}", 8) not in values


def test_targets_hold_lorastacks_ops_on_the_default_engine() -> None:
    checks = engine_targets(engine_comparisons(_measured()))
    verdicts = {(c.target, c.where.split(" vs ")[0]): c.verdict for c in checks}
    assert verdicts[("adapter speed, r16 all-linear", "lorastack-ops/r16-all/adapter/c1")] == "pass"
    assert verdicts[("adapter speed, r8 q/v", "lorastack-ops/r8-qv/adapter/c8")] == "miss"
    assert verdicts[("N adapters mixed (engine)", "lorastack-ops/r8-qv/mixed/c8")] == "miss"
    assert verdicts[("adapter loaded at run time", "lorastack-ops/r8-qv/at-start/c1")] == "pass"
    # The mixed target is for many streams; vLLM's ops and other max_loras are not held to it.
    assert ("N adapters mixed (engine)", "lorastack-ops/r8-qv/mixed/c1") not in verdicts
    assert not any(where.startswith(("vllm-ops", "lorastack-ops-max")) for _, where in verdicts)


@pytest.mark.parametrize(
    ("default", "sweep", "extra"), [(2, [4, 5], 2), (4, [4, 5], 1), (2, [], 0)]
)
def test_more_adapters_per_batch_are_variants_of_their_own(
    default: int, sweep: list[int], extra: int
) -> None:
    variants = engine_variants(default, sweep)
    assert [v.name for v in variants[:4]] == [
        "vllm-ops",
        "lorastack-ops",
        "lorastack-ops-compiled",
        "no-lora",
    ]
    assert [v.lora_compile for v in variants[:4]] == [False, False, True, False]
    assert len(variants) == 4 + extra
    assert all(v.workloads == ("mixed",) for v in variants[4:])
