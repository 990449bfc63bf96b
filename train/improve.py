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
4. `publish_run` through the quality gate (never forced), not promoted; a candidate the
   gate refuses is trained again from prod on the same dataset at half its learning rate
   (`RetryOptions`, once by default), evaluated and gated the same way: learning from
   thumbs can cost what prod knew (fact recall on reworded questions, measured in
   docs/training.md), and a gentler run often keeps it while still learning the rule;
5. `AdapterRegistry.start_canary` at `weight` percent with the default guard, which
   stops it by itself if it does worse than prod in use.

Each step's refusal ends the loop with that step's one-line reason; nothing is published
unless the gate lets a candidate through. `compare` reads the candidate-vs-prod numbers
out of the run's metrics for the command to print.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
from lorastack.train.config import (
    DEFAULT_PREFERENCE_TRAINING,
    PREFERENCE_MODES,
    ConfigError,
    build_config,
)
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


@dataclass(frozen=True)
class RetryOptions:
    """What `improve` does when the gate refuses a candidate."""

    times: int = 1
    """Further runs after the first refused one (0: none)."""
    rate_factor: float = 0.5
    """Each further run learns at this share of the refused run's learning rate."""

    def __post_init__(self) -> None:
        if self.times < 0:
            raise ConfigError(f"retries must be 0 or more: {self.times}")
        if not 0 < self.rate_factor < 1:
            raise ConfigError(f"a retry's rate factor is above 0 and below 1: {self.rate_factor}")


@dataclass(frozen=True)
class Attempt:
    """One preference run of the loop and what the gate said of it."""

    run: Path
    learning_rate: float
    problems: list[str] = field(default_factory=list)
    """The gate's, one line each; none: published."""


class ImproveRefused(ConfigError):
    """The quality gate refused every candidate: nothing was published.

    `problems` are the gate's for the last one, one line each; `run` is its evaluated run
    folder, which `lorastack publish RUN --force --reason ...` could still publish;
    `attempts` holds every run tried, in order."""

    def __init__(self, refused: PublishRefused, attempts: list[Attempt]) -> None:
        self.problems = refused.problems
        self.run = attempts[-1].run
        self.attempts = attempts
        tried = f" (runs tried: {len(attempts)})" if len(attempts) > 1 else ""
        super().__init__(f"{refused}; the evaluated run: {self.run}{tried}")


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
    attempts: list[Attempt] = field(default_factory=list)
    """Every run tried, in order; the last one is the published version's."""

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
    retries: RetryOptions | None = None,
) -> ImproveResult:
    """Export `domain`'s feedback, train on it from prod, evaluate, publish, start a canary.

    `weight`: the canary's share in percent (None: publish without a canary). `scrub`
    masks personal data in the export again with the domain's input policy. `training`:
    TRL fields over the default preference settings (tests make the run tiny with it).
    `examples`: the test examples the evaluation answers for rules and fact recall.
    `replay` (kto): how much of prod's own data joins the feedback (default
    `ReplayOptions()`: none; dpo takes pairs and replays nothing). `retries`: how often a
    refused candidate is trained again, more gently (default `RetryOptions()`: once, at
    half the learning rate).
    Raises the refusing step's error: `DataError` (too little feedback), `ConfigError`
    (no prod version, a run refused), `ImproveRefused` (the quality gate, every time).
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

    retries = retries or RetryOptions()
    overrides = dict(training or {})
    rate = float(overrides.get("learning_rate", DEFAULT_PREFERENCE_TRAINING["learning_rate"]))
    attempts: list[Attempt] = []
    while True:
        config = build_config(
            {
                "mode": fmt,
                "from_adapter": f"{domain}@{DEFAULT_ALIAS}",
                "data": str(exported.out),
                "training": {**overrides, "learning_rate": rate},
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
        metrics = evaluate_run(
            paths, models, registry, samples=0, progress=progress, examples=examples
        )
        try:
            manifest = publish_run(paths, registry, tolerances=settings.publish)
        except PublishRefused as refused:
            attempts.append(Attempt(paths.root, rate, list(refused.problems)))
            # A prod promoted meanwhile refuses every run the same way: no retry.
            moved = registry.index(domain).aliases.get(DEFAULT_ALIAS) != prod
            if len(attempts) > retries.times or moved:
                raise ImproveRefused(refused, attempts) from None
            rate *= retries.rate_factor
            progress.step(
                f"the gate refused the candidate ({'; '.join(refused.problems)}); "
                f"training again from prod at learning rate {rate:g}"
            )
        else:
            attempts.append(Attempt(paths.root, rate))
            break
    index = None
    if weight is not None:
        progress.step(f"starting a canary of {manifest.ref} at {weight:g}%")
        index = registry.start_canary(domain, manifest.version, weight)
    return ImproveResult(exported, trained, manifest, prod, index, compare(metrics), attempts)


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
