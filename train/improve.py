"""`lorastack improve`: a domain's feedback into a better version, served as a canary.

`improve` composes the steps an operator would run one by one, with their own code and
checks:

1. `export_feedback`: the domain's rated exchanges as a prepared kto or dpo dataset, in a
   new folder under `$LORASTACK_HOME/feedback/`; kto with `replay` (`train/replay.py`,
   off by default): answers from the train split of the data prod learnt from, as
   desirable rows, meant to keep what prod knew;
2. `run_training` in that mode, from the domain's `prod` version, with the default
   preference training settings;
3. `evaluate_run`: the candidate against `prod` (loss, rules and fact recall on the data
   prod learnt from; preference accuracy and margin on the held-out feedback);
4. `publish_run` through the quality gate (never forced), not promoted;
5. `AdapterRegistry.start_canary` at `weight` percent with the default guard, which
   stops it by itself if it does worse than prod in use.

Each step's refusal ends the loop with that step's one-line reason; nothing is published
unless the gate lets the candidate through. `compare` reads the candidate-vs-prod numbers
out of the run's metrics for the command to print.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from lorastack.feedback import FeedbackStore
from lorastack.guardrails.guard import Guard
from lorastack.manifest import DEFAULT_ALIAS, AdapterManifest, DomainIndex
from lorastack.models import ModelStore
from lorastack.progress import NullProgress, Progress
from lorastack.registry import AdapterRegistry
from lorastack.settings import Settings
from lorastack.train import quality
from lorastack.train.config import PREFERENCE_MODES, ConfigError, build_config
from lorastack.train.evaluate import evaluate_run, publish_run
from lorastack.train.feedback_export import ExportResult, export_feedback
from lorastack.train.gate import PublishRefused
from lorastack.train.replay import ReplayOptions, load_replay
from lorastack.train.run import new_run_dir
from lorastack.train.trainer import TrainResult, train_new_run

ImproveFormat = Literal["kto", "dpo"]
IMPROVE_FORMATS: tuple[ImproveFormat, ...] = ("kto", "dpo")
DEFAULT_WEIGHT = 10.0
"""Percent of the domain's conversations the new version answers at first."""
FEEDBACK_FOLDER = "feedback"
"""Under `$LORASTACK_HOME`: the datasets `improve` exports, one folder per loop."""


class ImproveRefused(ConfigError):
    """The quality gate refused the candidate: nothing was published.

    `problems` are the gate's, one line each; `run` is the evaluated run folder, which
    `lorastack publish RUN --force --reason ...` could still publish."""

    def __init__(self, refused: PublishRefused, run: Path) -> None:
        self.problems = refused.problems
        self.run = run
        super().__init__(f"{refused}; the evaluated run: {run}")


@dataclass(frozen=True)
class Measure:
    """One number of the candidate and of prod, from the same evaluation."""

    name: str
    candidate: float | None
    prod: float | None
    rate: bool
    """A share (0-1, shown as a percentage), else a plain number (a loss, a margin)."""
    higher_is_better: bool = True

    def show(self, value: float | None, digits: int = 4) -> str:
        """`value` (the candidate's or prod's) as people read this measure; `-` if none."""
        if value is None:
            return "-"
        return f"{value:.0%}" if self.rate else f"{value:.{digits}f}"


@dataclass(frozen=True)
class ImproveResult:
    """What one loop made: the dataset, the run, the published version and its canary."""

    export: ExportResult
    training: TrainResult
    manifest: AdapterManifest
    """The published version (`manifest.ref`: `DOMAIN@vN`)."""
    prod: int
    """The prod version it started from and was compared with."""
    index: DomainIndex | None
    """The domain's index after the canary started; None: no canary (`weight=None`)."""
    comparison: list[Measure]

    @property
    def run(self) -> Path:
        return self.training.paths.root


def improve(
    domain: str,
    store: FeedbackStore,
    registry: AdapterRegistry,
    models: ModelStore,
    settings: Settings,
    *,
    fmt: ImproveFormat = "kto",
    since: datetime | None = None,
    weight: float | None = DEFAULT_WEIGHT,
    scrub: Guard | None = None,
    training: dict[str, Any] | None = None,
    examples: int = quality.DEFAULT_EXAMPLES,
    progress: Progress | None = None,
    replay: ReplayOptions | None = None,
) -> ImproveResult:
    """Export `domain`'s feedback, train on it from prod, evaluate, publish, start a canary.

    `weight`: the canary's share in percent (None: publish without a canary). `scrub`
    masks personal data in the export again with the domain's input policy. `training`:
    TRL fields over the default preference settings (tests make the run tiny with it).
    `examples`: the test examples the evaluation answers for rules and fact recall.
    `replay` (kto): how much of prod's own data joins the feedback (default
    `ReplayOptions()`: none; dpo takes pairs and replays nothing).
    Raises the refusing step's error: `DataError` (too little feedback), `ConfigError`
    (no prod version, a run refused), `ImproveRefused` (the quality gate).
    """
    if fmt not in PREFERENCE_MODES:
        raise ConfigError(f"format {fmt!r}: expected one of {', '.join(IMPROVE_FORMATS)}")
    if weight is not None and not 0 < weight <= 100:
        # The registry refuses it too, but only after training: say so before.
        raise ConfigError(f"a canary's weight is a percentage above 0, up to 100: {weight:g}")
    progress = progress or NullProgress()
    prod = registry.index(domain).aliases.get(DEFAULT_ALIAS)
    if prod is None:
        raise ConfigError(
            f"{domain} has no {DEFAULT_ALIAS} version to improve: publish one with "
            "`lorastack publish RUN --promote` first"
        )
    replay = replay or ReplayOptions()
    replayed = None
    if fmt == "kto" and replay.share > 0:
        start = registry.manifest(domain, prod)
        replayed = load_replay(start, registry, settings.runs_dir, replay)
        if replayed.unavailable:
            progress.step(f"nothing to replay: {replayed.unavailable}")
    dataset = new_run_dir(settings.home / FEEDBACK_FOLDER, domain).root
    exported = export_feedback(store, domain, fmt, dataset, since, scrub, progress, replayed)

    config = build_config(
        {
            "mode": fmt,
            "from_adapter": f"{domain}@{DEFAULT_ALIAS}",
            "data": str(exported.out),
            "training": training or {},
        },
        source="lorastack improve",
    )
    trained = train_new_run(
        config,
        settings.runs_dir,
        models,
        settings,
        scrub=scrub,
        progress=progress,
        registry=registry,
    )
    paths = trained.paths
    metrics = evaluate_run(paths, models, registry, samples=0, progress=progress, examples=examples)
    try:
        manifest = publish_run(paths, registry, tolerances=settings.publish)
    except PublishRefused as refused:
        raise ImproveRefused(refused, paths.root) from None
    index = None
    if weight is not None:
        progress.step(f"starting a canary of {manifest.ref} at {weight:g}%")
        index = registry.start_canary(domain, manifest.version, weight)
    return ImproveResult(exported, trained, manifest, prod, index, compare(metrics))


def compare(metrics: dict[str, Any]) -> list[Measure]:
    """The candidate's numbers beside prod's, from a preference run's `metrics.json`.

    Preference accuracy and margin are measured on the held-out feedback against the
    version the run started from (prod, when `improve` made it); loss, rules, fact recall
    and exact match on the data that version learnt from.
    """
    measures: list[Measure] = []
    preference = metrics.get("preference") or {}
    if preference:
        adapter, start = preference["adapter"], preference["start"]
        measures += [
            Measure("preference accuracy", adapter["accuracy"], start["accuracy"], rate=True),
            Measure("preference margin", adapter["margin"], start["margin"], rate=False),
        ]
    rules = metrics.get("rules", {})
    for label, rate in rules.get("adapter", {}).items():
        measures.append(Measure(f"rule {label}", rate, rules.get("prod", {}).get(label), True))
    recall = metrics.get("fact_recall") or {}
    if recall.get("adapter") is not None:
        measures.append(Measure("fact recall", recall["adapter"], recall.get("prod"), rate=True))
    candidate, prod = metrics.get("adapter", {}), metrics.get("prod") or {}
    if "exact_match" in candidate:
        measures.append(
            Measure("exact match", candidate["exact_match"], prod.get("exact_match"), rate=True)
        )
    measures.append(
        Measure("test loss", candidate.get("loss"), prod.get("loss"), False, higher_is_better=False)
    )
    return measures
