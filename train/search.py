"""Hyper-parameter search: try N configurations, keep the best by validation loss.

It tunes what matters most for LoRA on small data: learning rate, rank, alpha and
epochs (the LoRA rank included, which transformers' own search cannot tune).
Trials are drawn from a grid with the run's seed, each trained in its own folder
under `trials/`; the search stops at N trials or when the time budget is spent,
and the best trial's adapter, config and log become the run's own.

A kto or dpo run keeps its starting adapter's rank and alpha, so it searches the
learning rate and epochs only, at the configured beta. Not beta: validation losses
at different betas do not compare (beta scales the rewards inside the loss), and
what a lower beta buys, moving further from the starting version, can only be
judged against what it costs (brand rules, facts, the original data's loss): a
full `lorastack eval` per trial. Try betas as separate runs and compare their
evaluations.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from lorastack.guardrails import Guard
from lorastack.models import ModelStore
from lorastack.progress import NullProgress, Progress
from lorastack.registry import AdapterRegistry
from lorastack.train.config import PREFERENCE_MODES, ConfigError, TrainConfig
from lorastack.train.run import RunPaths
from lorastack.train.trainer import TrainResult, prepare_run, run_training

LEARNING_RATES = (2e-4, 5e-4, 1e-3, 2e-3)
RANKS = (4, 8, 16, 32)
ALPHA_FACTORS = (1, 2)
EPOCH_FACTORS = (0.5, 1.0, 1.5)
# Around the preference default (5e-5, measured with `lorastack eval-improve`); 5e-6, TRL's
# LoRA DPO example, did not move a small adapter in a few dozen steps.
PREFERENCE_LEARNING_RATES = (1e-5, 2e-5, 5e-5, 1e-4)


def _candidates(config: TrainConfig, max_rank: int, seed: int) -> list[dict[str, Any]]:
    training = config.training_fields()
    epochs = float(training.get("num_train_epochs", 3))
    grid: list[dict[str, Any]]
    if config.mode in PREFERENCE_MODES:
        # Distinct epoch counts only: at one epoch, half as many is one too.
        counts = sorted({max(1.0, round(epochs * scale, 1)) for scale in EPOCH_FACTORS})
        grid = [
            {"learning_rate": lr, "num_train_epochs": count}
            for lr in PREFERENCE_LEARNING_RATES
            for count in counts
        ]
        random.Random(seed).shuffle(grid)
        return grid
    grid = [
        {
            "learning_rate": lr,
            "r": r,
            "lora_alpha": r * factor,
            "num_train_epochs": max(1.0, round(epochs * scale, 1)),
        }
        for lr in LEARNING_RATES
        for r in RANKS
        if r <= max_rank
        for factor in ALPHA_FACTORS
        for scale in EPOCH_FACTORS
    ]
    random.Random(seed).shuffle(grid)
    return grid


def _trained(paths: RunPaths) -> tuple[Path, ...]:
    """What a finished training leaves in its run folder (the data aside)."""
    return (paths.adapter, paths.log, paths.config, paths.result)


def search(
    config: TrainConfig,
    paths: RunPaths,
    store: ModelStore,
    default_base: str,
    max_rank: int,
    trials: int,
    budget_s: float | None = None,
    scrub: Guard | None = None,
    progress: Progress | None = None,
    registry: AdapterRegistry | None = None,
) -> TrainResult:
    """Run up to `trials` trainings; the run folder ends up holding the best one.

    `registry`: where a kto or dpo run finds the adapter it starts from.
    """
    if trials < 1:
        raise ConfigError("--search needs at least 1 trial")
    progress = progress or NullProgress()
    # Checks the config and lays out (or prepares) the data once for every trial.
    prepare_run(config, paths, store, default_base, max_rank, scrub, progress, registry)
    seed = int(config.training_fields().get("seed", 42))
    started = time.monotonic()
    results: list[tuple[dict[str, Any], TrainResult]] = []
    for number, choice in enumerate(_candidates(config, max_rank, seed)[:trials], start=1):
        if budget_s is not None and results and time.monotonic() - started > budget_s:
            break
        shape: dict[str, Any] = {k: choice[k] for k in ("r", "lora_alpha") if k in choice}
        trial = replace(
            config,
            lora={**config.lora, **shape},
            training={
                **config.training,
                "learning_rate": choice["learning_rate"],
                "num_train_epochs": choice["num_train_epochs"],
            },
        )
        trial_paths = RunPaths(paths.root / "trials" / f"trial-{number}")
        trial_paths.root.mkdir(parents=True, exist_ok=True)
        if not trial_paths.data.exists():
            shutil.copytree(paths.data, trial_paths.data)
        progress.step(f"trial {number}/{trials}: {choice}")
        results.append(
            (
                choice,
                run_training(
                    trial,
                    trial_paths,
                    store,
                    default_base,
                    max_rank,
                    progress=progress,
                    registry=registry,
                ),
            )
        )
    scored = [(c, r) for c, r in results if r.best_eval_loss is not None]
    if not scored:
        raise ConfigError("no trial produced a validation loss")
    _, best = min(scored, key=lambda item: float(item[1].best_eval_loss or 0.0))
    for source, target in zip(_trained(best.paths), _trained(paths), strict=True):
        if target.is_dir():
            shutil.rmtree(target)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)
    summary = {
        "best": best.paths.root.name,
        "trials": [
            {
                "trial": r.paths.root.name,
                **c,
                "best_eval_loss": r.best_eval_loss,
                "steps": r.steps,
                "seconds": round(r.seconds, 1),
            }
            for c, r in results
        ],
        "seconds": round(time.monotonic() - started, 1),
    }
    (paths.root / "search.json").write_text(json.dumps(summary, indent=2))
    return replace(best, paths=RunPaths(paths.root))
