"""`lorastack bench --quick` for real: vLLM on the CPU, two gateways, Presidio, TRL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lorastack.models import ModelRecord

pytestmark = pytest.mark.integration

QUICK_TOKENS = 16
ROUTES = ("direct", "gateway", "guarded")
WORKLOADS = ("base", "adapter", "mixed")
# One level keeps CI short; the ratios and targets are the same code at every level.
LEVELS = (2,)
TARGETS = {
    "gateway throughput",
    "gateway TTFT",
    "guardrails latency",
    "N domains mixed",
    "hot-swap TPOT",
    "hot-swap failures",
    "limits enforcement",
    "guard scan time",
    "adapter speed, r16 all-linear",
    "adapter speed, r8 q/v",
    "N adapters mixed (engine)",
    "adapter loaded at run time",
}
# --quick runs the default engine only: lorastack's LoRA ops.
ENGINE_CASES = {
    *(
        f"lorastack-ops/{shape}/{w}"
        for shape in ("r8-qv", "r16-all")
        for w in ("adapter", "mixed", "at-start")
    ),
    "lorastack-ops/base/base",
}


# About 6 minutes on an idle 2-core machine; a slow or busy one takes several times longer.
@pytest.mark.timeout(1800)
def test_quick_bench_measures_every_case(bundled_model: ModelRecord, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    env = {**os.environ, "LORASTACK_HOME": str(bundled_model.path.parent.parent)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lorastack.cli",
            "bench",
            "--quick",
            *(f"--concurrency={level}" for level in LEVELS),
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.strip().splitlines()[-1] == str(out)

    data = json.loads((out / "bench.json").read_text())
    cases = {c["name"]: c for c in data["serving"]["cases"]}
    expected = {f"{r}/{w}/c{c}" for c in LEVELS for w in WORKLOADS for r in ROUTES}
    expected |= {f"gateway/swap/c{c}" for c in LEVELS}
    expected |= {f"limited/base/c{c}" for c in LEVELS}  # a key with limits, never reached
    assert set(cases) == expected
    for name, case in cases.items():
        assert case["failed"] == 0, (name, case["errors"])
        # ignore_eos holds on every route: each answer is exactly --max-tokens long.
        assert case["output_tokens"] == case["requests"] * QUICK_TOKENS, name
        assert case["tokens_per_s"] > 0 and case["ttft_p50_ms"] > 0, name
    assert all(cases[f"gateway/swap/c{c}"]["swap"]["operations"] >= 1 for c in LEVELS)

    ratios = data["serving"]["ratios"]
    assert {r["name"] for r in ratios} == {
        "gateway vs direct",
        "guarded vs unguarded",
        "adapter vs base",
        "mixed vs one adapter",
        "swap vs steady",
        "limited vs unlimited key",
    }
    for ratio in ratios:
        subject = cases[ratio["subject"]][ratio["metric"]]
        reference = cases[ratio["reference"]][ratio["metric"]]
        if ratio["kind"] == "ratio":
            assert ratio["value"] == pytest.approx(subject / reference, abs=1e-4), ratio
        else:
            assert ratio["value"] == pytest.approx(subject - reference, abs=0.01), ratio

    engine = {c["name"]: c for c in data["engine"]["cases"]}
    assert set(engine) == {f"{case}/c{c}" for case in ENGINE_CASES for c in LEVELS}
    for name, case in engine.items():
        assert case["failed"] == 0, (name, case["errors"])
        assert case["output_tokens"] == case["requests"] * QUICK_TOKENS, name
    assert set(data["engine"]["memory_mib"]) == {"lorastack-ops"}
    for ratio in data["engine"]["ratios"]:
        subject, reference = engine[ratio["subject"]], engine[ratio["reference"]]
        expected = subject["tokens_per_s"] / reference["tokens_per_s"]
        assert ratio["value"] == pytest.approx(expected, abs=1e-4), ratio

    sizes = ["short", "medium", "long"]
    screens = [
        f"{size}, {screen}" for screen in ("injection screen", "leak screen") for size in sizes
    ]
    assert [t["name"] for t in data["guard"]["timings"]] == sizes + screens
    runs = data["training"]["runs"]
    assert [r["packing"] for r in runs] == [False, True]
    assert all(r["tokens"] > 0 and r["tokens_per_s"] > 0 and r["peak_gib"] > 0 for r in runs)

    assert {t["target"] for t in data["targets"]} == TARGETS
    assert {t["verdict"] for t in data["targets"]} <= {"pass", "miss"}
    markdown = (out / "bench.md").read_text()
    assert "## Targets" in markdown and f"| gateway/swap/c{LEVELS[-1]} |" in markdown
    for plot in ("throughput.png", "latency.png", "guard.png", "training.png"):
        assert (out / plot).read_bytes().startswith(b"\x89PNG")
