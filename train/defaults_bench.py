"""How well the training defaults learn a brand: its rules and its facts, in minutes.

`lorastack eval-defaults` trains each brand config as written (a config without
`lora:` or `training:` fields gets lorastack's defaults), evaluates the run on its
test split (`evaluate_run`: rules on the questions as written, facts on the same
questions reworded) and holds the numbers against the goals below. The demo's
brands and a brand written for the tests (`tests/data/trailhead`), never used to
tune the defaults, are the usual set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lorastack.fsutil import write_json_atomic
from lorastack.guardrails import Guard
from lorastack.models import ModelStore
from lorastack.progress import NullProgress, Progress
from lorastack.settings import Settings
from lorastack.train.config import TrainConfig
from lorastack.train.evaluate import evaluate_run
from lorastack.train.quality import DEFAULT_EXAMPLES
from lorastack.train.trainer import train_new_run

JSON_FILE = "quality.json"
MARKDOWN_FILE = "quality.md"


@dataclass(frozen=True)
class Goals:
    """What the defaults should reach on a brand they were not tuned on."""

    rule_rate: float = 0.9
    """Each brand rule followed on this share of unseen questions."""
    fact_recall: float = 0.8
    """The reference answers' facts stated on this share of reworded questions."""
    train_seconds: float = 300.0
    """Training (data preparation included) within this time."""


@dataclass(frozen=True)
class BrandQuality:
    """One brand trained and measured."""

    domain: str
    train_seconds: float
    steps: int
    test_examples: int
    rules: dict[str, float]
    base_rules: dict[str, float]
    fact_recall: float | None
    base_fact_recall: float | None
    run: str

    def misses(self, goals: Goals) -> list[str]:
        """The goals this brand missed, each with its number."""
        missed = [
            f"rule {label}: {rate:.0%} < {goals.rule_rate:.0%}"
            for label, rate in self.rules.items()
            if rate < goals.rule_rate
        ]
        if self.fact_recall is not None and self.fact_recall < goals.fact_recall:
            missed.append(f"fact recall {self.fact_recall:.0%} < {goals.fact_recall:.0%}")
        if self.train_seconds > goals.train_seconds:
            missed.append(f"training {self.train_seconds:.0f} s > {goals.train_seconds:.0f} s")
        return missed


@dataclass
class DefaultsReport:
    goals: Goals
    brands: list[BrandQuality] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "goals": asdict(self.goals),
            "brands": [{**asdict(b), "misses": b.misses(self.goals)} for b in self.brands],
        }


def quality_of(
    domain: str, train_seconds: float, steps: int, run: Path, metrics: dict[str, Any]
) -> BrandQuality:
    """A brand's numbers from its run's `metrics.json` (see `train/evaluate.py`)."""
    rules = metrics.get("rules") or {}
    recall = metrics.get("fact_recall") or {}
    return BrandQuality(
        domain=domain,
        train_seconds=train_seconds,
        steps=steps,
        test_examples=int(metrics.get("test_examples", 0)),
        rules=dict(rules.get("adapter") or {}),
        base_rules=dict(rules.get("base") or {}),
        fact_recall=recall.get("adapter"),
        base_fact_recall=recall.get("base"),
        run=str(run),
    )


def measure_brand(
    config: TrainConfig,
    settings: Settings,
    store: ModelStore,
    runs_dir: Path,
    scrub: Guard | None,
    progress: Progress | None = None,
    examples: int = DEFAULT_EXAMPLES,
) -> BrandQuality:
    """Train `config` in a new run under `runs_dir` and measure its rules and facts."""
    progress = progress or NullProgress()
    result = train_new_run(config, runs_dir, store, settings, scrub=scrub, progress=progress)
    metrics = evaluate_run(result.paths, store, None, 0, progress, examples=examples)
    return quality_of(config.domain, result.seconds, result.steps, result.paths.root, metrics)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def render_markdown(report: DefaultsReport) -> str:
    goals = report.goals
    lines = [
        "# Training defaults: brand rules and facts",
        "",
        f"Goals: each rule on >= {goals.rule_rate:.0%} of unseen questions, facts on >= "
        f"{goals.fact_recall:.0%} of reworded questions, training <= "
        f"{goals.train_seconds:.0f} s.",
        "",
        "| brand | training | steps | rule (adapter vs base) | fact recall (adapter vs base) "
        "| verdict |",
        "|---|---|---|---|---|---|",
    ]
    for brand in report.brands:
        rules = "<br>".join(
            f"{label} {rate:.0%} vs {_rate(brand.base_rules.get(label))}"
            for label, rate in brand.rules.items()
        )
        misses = brand.misses(goals)
        lines.append(
            f"| {brand.domain} | {brand.train_seconds:.0f} s | {brand.steps} | {rules or '-'} "
            f"| {_rate(brand.fact_recall)} vs {_rate(brand.base_fact_recall)} "
            f"| {'met' if not misses else 'missed: ' + '; '.join(misses)} |"
        )
    return "\n".join(lines) + "\n"


def write_report(report: DefaultsReport, folder: Path) -> Sequence[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / JSON_FILE, report.to_dict())
    (folder / MARKDOWN_FILE).write_text(render_markdown(report), encoding="utf-8")
    return [folder / JSON_FILE, folder / MARKDOWN_FILE]
