"""The benchmark's report: JSON (everything), a Markdown summary and PNG plots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorastack.bench.cases import CaseResult, Route, Workload
from lorastack.bench.engine_ops import EngineReport
from lorastack.bench.stats import CaseStats
from lorastack.bench.targets import Comparison, TargetCheck, compare, evaluate
from lorastack.bench.training import TrainingRun
from lorastack.fsutil import write_json_atomic

JSON_FILE = "bench.json"
MARKDOWN_FILE = "bench.md"
SCHEMA_VERSION = 1


@dataclass
class BenchReport:
    """One run's results; a part that did not run is None."""

    started_at: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    duration_s: float = 0.0
    serving: list[CaseResult] | None = None
    guard: list[dict[str, Any]] | None = None
    training: list[TrainingRun] | None = None
    engine: EngineReport | None = None
    notes: list[str] = field(default_factory=list)

    def comparisons(self) -> list[Comparison]:
        return compare(self.serving or [])

    def targets(self) -> list[TargetCheck]:
        checks = evaluate(self.serving or [], self.comparisons(), self.guard)
        return checks + (self.engine.targets() if self.engine is not None else [])

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 1),
            "machine": self.machine,
            "settings": self.settings,
            "serving": None
            if self.serving is None
            else {
                "cases": [r.to_dict() for r in self.serving],
                "ratios": [c.to_dict() for c in self.comparisons()],
            },
            "engine": None if self.engine is None else self.engine.to_dict(),
            "guard": None if self.guard is None else {"timings": self.guard},
            "training": None
            if self.training is None
            else {"runs": [r.to_dict() for r in self.training]},
            "targets": [t.to_dict() for t in self.targets()],
            "notes": self.notes,
        }


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def _describe(values: dict[str, Any]) -> str:
    """`key: value` pairs on one line; nested mappings as `key=value`, lists comma-separated."""

    def text(value: Any) -> str:
        if isinstance(value, dict):
            return ", ".join(f"{k}={text(v)}" for k, v in value.items())
        if isinstance(value, list | tuple):
            return ", ".join(text(v) for v in value) or "none"
        return str(value)

    return "; ".join(f"{k}: {text(v)}" for k, v in values.items())


def _cases_table(cases: Sequence[tuple[str, CaseStats]]) -> list[str]:
    return _table(
        [
            "case",
            "requests",
            "failed",
            "tokens/s",
            "TTFT p50 ms",
            "TTFT p99 ms",
            "TPOT p50 ms",
            "TPOT p99 ms",
            "latency p50 ms",
            "latency p99 ms",
        ],
        [
            [
                name,
                str(stats.requests),
                str(stats.failed),
                _num(stats.tokens_per_s),
                _num(stats.ttft_p50_ms),
                _num(stats.ttft_p99_ms),
                _num(stats.tpot_p50_ms),
                _num(stats.tpot_p99_ms),
                _num(stats.latency_p50_ms, 0),
                _num(stats.latency_p99_ms, 0),
            ]
            for name, stats in cases
        ],
    )


def _failures(cases: Sequence[tuple[str, CaseStats]]) -> list[str]:
    errors = [(name, error) for name, stats in cases for error in stats.errors]
    if not errors:
        return []
    return ["", "Failures seen:", "", *(f"- {name}: {error}" for name, error in errors)]


def _ratios_table(comparisons: Sequence[Comparison]) -> list[str]:
    return _table(
        ["comparison", "metric", "concurrency", "subject vs reference", "value"],
        [
            [
                c.name,
                c.metric,
                str(c.concurrency),
                f"{c.subject} vs {c.reference}",
                (_num(c.value, 3) + "x")
                if c.kind == "ratio" and c.value is not None
                else (f"{c.value:+.1f} ms" if c.value is not None else "-"),
            ]
            for c in comparisons
        ],
    )


def render_markdown(report: BenchReport) -> str:
    lines = [
        f"# lorastack bench, {report.started_at}",
        "",
        f"Machine: {_describe(report.machine)}.",
        "",
        f"Settings: {_describe(report.settings)}.",
        "",
        f"Took {report.duration_s:.0f} s.",
        "",
    ]
    targets = report.targets()
    if targets:
        met = sum(1 for t in targets if t.passed)
        evaluated = sum(1 for t in targets if t.passed is not None)
        lines += [f"## Targets ({met} of {evaluated} met)", ""]
        lines += _table(
            ["target", "rule", "where", "measured", "verdict"],
            [[t.target, t.rule, t.where, _num(t.value, 3), t.verdict] for t in targets],
        )
        lines.append("")
    if report.serving is not None:
        lines += ["## Serving", ""]
        lines += _cases_table([(r.case.name, r.stats) for r in report.serving])
        swaps = [r for r in report.serving if r.swap is not None]
        for result in swaps:
            assert result.swap is not None
            lines.append(
                f"\n{result.case.name}: {result.swap.operations} admin operations "
                f"(promote, unload) during the run, {result.swap.failed} failed."
            )
        lines += _failures([(r.case.name, r.stats) for r in report.serving])
        lines += ["", "## Ratios", ""]
        lines += _ratios_table(report.comparisons())
        lines.append("")
    if report.engine is not None:
        lines += ["## Engine: vLLM's CPU LoRA ops and lorastack's (vLLM directly)", ""]
        lines += _cases_table([(r.case.name, r.stats) for r in report.engine.cases])
        lines += _failures([(r.case.name, r.stats) for r in report.engine.cases])
        if report.engine.memory_mib:
            lines += ["", "Resident memory of each engine after its cases:", ""]
            lines += _table(
                ["engine", "MiB"],
                [[name, _num(mib, 0)] for name, mib in report.engine.memory_mib.items()],
            )
        lines += ["", "### Engine ratios", ""]
        lines += _ratios_table(report.engine.comparisons())
        lines.append("")
    if report.guard is not None:
        lines += ["## Guard scan time (one core)", ""]
        lines += _table(
            ["message", "words", "p50 ms", "p99 ms", "mean ms"],
            [
                [
                    str(t.get("name")),
                    str(t.get("words")),
                    _num(t.get("p50_ms"), 2),
                    _num(t.get("p99_ms"), 2),
                    _num(t.get("mean_ms"), 2),
                ]
                for t in report.guard
            ],
        )
        lines.append("")
    if report.training is not None:
        lines += ["## Training (LoRA r16, all linear layers)", ""]
        lines += _table(
            ["variant", "device", "steps", "tokens", "seconds", "tokens/s", "peak GiB"],
            [
                [
                    "packed" if run.packing else "padded",
                    run.device,
                    str(run.steps),
                    str(run.tokens),
                    _num(run.seconds),
                    _num(run.tokens_per_s),
                    f"{run.peak_gib:.2f} ({run.memory})",
                ]
                for run in report.training
            ],
        )
        lines.append("")
    if report.notes:
        lines += ["## Notes", "", *(f"- {note}" for note in report.notes), ""]
    return "\n".join(lines)


def _serving_plots(results: Sequence[CaseResult], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = list(dict.fromkeys(r.case.concurrency for r in results))
    by_key = {(r.case.route, r.case.workload, r.case.concurrency): r for r in results}
    workloads = list(Workload)
    routes = list(Route)
    width = 0.8 / len(routes)
    written = []
    for filename, metrics in (
        ("throughput.png", [("tokens_per_s", "output tokens/s")]),
        ("latency.png", [("ttft_p50_ms", "TTFT p50 (ms)"), ("tpot_p50_ms", "TPOT p50 (ms)")]),
    ):
        figure, axes = plt.subplots(
            len(metrics),
            len(levels),
            figsize=(4.5 * len(levels), 3.2 * len(metrics)),
            squeeze=False,
        )
        for row, (metric, label) in enumerate(metrics):
            for column, level in enumerate(levels):
                ax = axes[row][column]
                for index, route in enumerate(routes):
                    values = []
                    for workload in workloads:
                        result = by_key.get((route, workload, level))
                        value = getattr(result.stats, metric) if result is not None else None
                        values.append(value or 0.0)
                    positions = [
                        x + (index - (len(routes) - 1) / 2) * width for x in range(len(workloads))
                    ]
                    ax.bar(positions, values, width, label=route.value)
                ax.set_xticks(range(len(workloads)), [w.value for w in workloads])
                ax.set_title(f"concurrency {level}")
                ax.set_ylabel(label)
        axes[0][0].legend(fontsize="small")
        figure.tight_layout()
        path = folder / filename
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    return written


def _guard_plot(timings: Sequence[dict[str, Any]], folder: Path, limit_ms: float) -> Path:
    """The personal-data scan's times (the target's); the screens' are in the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # The screens' rows are named `<size>, <screen>` (guardrails/benchmark.py).
    timings = [t for t in timings if ", " not in str(t.get("name"))]
    names = [f"{t.get('name')} ({t.get('words')} words)" for t in timings]
    figure, ax = plt.subplots(figsize=(5.5, 3.2))
    positions = range(len(timings))
    ax.bar(
        [p - 0.2 for p in positions],
        [float(t.get("p50_ms") or 0) for t in timings],
        0.4,
        label="p50",
    )
    ax.bar(
        [p + 0.2 for p in positions],
        [float(t.get("p99_ms") or 0) for t in timings],
        0.4,
        label="p99",
    )
    ax.axhline(
        limit_ms, color="grey", linestyle="--", label=f"target {limit_ms:g} ms (p50, 50 words)"
    )
    ax.set_xticks(list(positions), names)
    ax.set_ylabel("scan time (ms)")
    ax.legend(fontsize="small")
    figure.tight_layout()
    path = folder / "guard.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _training_plot(runs: Sequence[TrainingRun], folder: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["packed" if r.packing else "padded" for r in runs]
    figure, (speed, memory) = plt.subplots(1, 2, figsize=(7, 3.2))
    speed.bar(labels, [r.tokens_per_s or 0 for r in runs])
    speed.set_ylabel("tokens/s")
    memory.bar(labels, [r.peak_gib for r in runs])
    memory.set_ylabel(f"peak GiB ({runs[0].memory})" if runs else "peak GiB")
    figure.suptitle(f"training on {runs[0].device}" if runs else "training")
    figure.tight_layout()
    path = folder / "training.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def write_report(report: BenchReport, folder: Path, scan_limit_ms: float = 5.0) -> list[Path]:
    """Write the JSON, the Markdown and the plots of the parts that ran; return the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / JSON_FILE, report.to_dict())
    (folder / MARKDOWN_FILE).write_text(render_markdown(report), encoding="utf-8")
    written = [folder / JSON_FILE, folder / MARKDOWN_FILE]
    if report.serving:
        written += _serving_plots(report.serving, folder)
    if report.guard:
        written.append(_guard_plot(report.guard, folder, scan_limit_ms))
    if report.training:
        written.append(_training_plot(report.training, folder))
    return written
