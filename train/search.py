"""Hyper-parameter search on Optuna: TPE over what matters most for LoRA on small data,
pruning on validation loss, the study shared by workers on several machines.

It tunes the learning rate, rank, alpha and epochs (the LoRA rank included, which
transformers' own search cannot tune). Optuna's TPE sampler draws each trial from what the
study's finished trials found; each trial trains in its own folder under `trials/`,
reports its validation loss at every evaluation, and stops early when the median pruner
finds it behind the other trials at the same step. `trials` is the study's total: several
`lorastack train --search N --study NAME` processes on one storage (`train/study.py`)
share N trials between them. At the end each worker waits for the others' trials under way
and copies the study's best trial (which another worker may have trained) into its run
folder: its adapter, config and log become the run's own.

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
import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from lorastack.db.engine import display_url
from lorastack.errors import AdapterInvalid
from lorastack.guardrails import Guard
from lorastack.models import ModelStore
from lorastack.progress import NullProgress, Progress
from lorastack.registry import AdapterRegistry
from lorastack.train import study as studies
from lorastack.train.config import PREFERENCE_MODES, ConfigError, TrainConfig
from lorastack.train.run import RunPaths, dataset_sha256
from lorastack.train.trainer import TrainResult, prepare_run, run_training
from lorastack.validation import validate_adapter

logger = logging.getLogger(__name__)

# The old grid's ends, as a log-uniform range: TPE models a continuous learning rate, and
# two trials drawing the same set of values (wasted training) becomes unlikely.
LEARNING_RATE_RANGE = (2e-4, 2e-3)
RANKS = (4, 8, 16, 32)
ALPHA_FACTORS = (1, 2)
EPOCH_FACTORS = (0.5, 1.0, 1.5)
# Around the preference default (5e-5, measured with `lorastack eval-improve`); 5e-6, TRL's
# LoRA DPO example, did not move a small adapter in a few dozen steps.
PREFERENCE_LEARNING_RATE_RANGE = (1e-5, 1e-4)
# The median pruner compares a trial with the completed ones: from the second completed
# trial on, and from a trial's second evaluation (the first comes mid warm-up).
PRUNER_STARTUP_TRIALS = 2
SEARCHED = ("learning_rate", "r", "lora_alpha", "num_train_epochs")
"""What a trial's parameters say, as training options."""
SEARCH_FILE = "search.json"
TRIAL_FILE = "trial.json"
"""In each trial's folder: its study, number, parameters and end (complete, pruned)."""


class _Surplus(Exception):
    """The study already had its total when this trial was created."""


def epoch_choices(config: TrainConfig) -> list[float]:
    """0.5, 1 and 1.5 times the configured epochs, at least 1, without repeats."""
    epochs = float(config.training_fields().get("num_train_epochs", 3))
    return sorted({max(1.0, round(epochs * scale, 1)) for scale in EPOCH_FACTORS})


def suggest(trial: optuna.Trial, config: TrainConfig, max_rank: int) -> dict[str, Any]:
    """Draw one trial's hyper-parameters: learning rate, rank, alpha, epochs."""
    if config.mode in PREFERENCE_MODES:
        low, high = PREFERENCE_LEARNING_RATE_RANGE
        return {
            "learning_rate": trial.suggest_float("learning_rate", low, high, log=True),
            "num_train_epochs": trial.suggest_categorical(
                "num_train_epochs", epoch_choices(config)
            ),
        }
    ranks = [r for r in RANKS if r <= max_rank]
    low, high = LEARNING_RATE_RANGE
    choice = {
        "learning_rate": trial.suggest_float("learning_rate", low, high, log=True),
        "r": trial.suggest_categorical("r", ranks),
        "alpha_factor": trial.suggest_categorical("alpha_factor", ALPHA_FACTORS),
        "num_train_epochs": trial.suggest_categorical("num_train_epochs", epoch_choices(config)),
    }
    return _choice_of(choice)


def _choice_of(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's parameters as training options (`alpha_factor` becomes `lora_alpha`)."""
    choice = dict(params)
    if "alpha_factor" in choice and "r" in choice:
        choice["lora_alpha"] = choice["r"] * choice.pop("alpha_factor")
    return {k: choice[k] for k in SEARCHED if k in choice}


def describe(choice: dict[str, Any]) -> str:
    """`learning_rate 3.2e-04, r 8, ...` for progress lines and tables."""
    return ", ".join(
        f"{k} {v:.1e}" if k == "learning_rate" else f"{k} {v:g}" for k, v in choice.items()
    )


def _with_choice(config: TrainConfig, choice: dict[str, Any]) -> TrainConfig:
    shape: dict[str, Any] = {k: choice[k] for k in ("r", "lora_alpha") if k in choice}
    training = {k: choice[k] for k in ("learning_rate", "num_train_epochs")}
    return replace(config, lora={**config.lora, **shape}, training={**config.training, **training})


def _pruning_callback(trial: optuna.Trial) -> Any:
    """A TrainerCallback reporting each validation loss to the study; it stops training
    when the pruner says so, and remembers where (`pruned_at`: step and loss)."""
    from transformers import TrainerCallback

    class ReportToStudy(TrainerCallback):
        pruned_at: tuple[int, float] | None = None

        def on_evaluate(
            self, args: Any, state: Any, control: Any, metrics: Any = None, **_: Any
        ) -> None:
            loss = (metrics or {}).get("eval_loss")
            if not isinstance(loss, int | float) or self.pruned_at is not None:
                return
            trial.report(float(loss), state.global_step)
            if trial.should_prune():
                self.pruned_at = (state.global_step, float(loss))
                control.should_training_stop = True

    return ReportToStudy()


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
    *,
    study_name: str | None = None,
    storage: str | None = None,
    seed: int | None = None,
) -> TrainResult:
    """Run the study to `trials` trials in all (this worker's share of them); the run
    folder ends up holding the study's best trial.

    `storage`: a SQLAlchemy URL for the study (None: in memory, this call only).
    `study_name`: default `<domain>-<hash of config and data>`. `seed`: the sampler's
    (default: the config's). `budget_s`: no new trial starts after this long (the first
    always does). `registry`: where a kto or dpo run finds the adapter it starts from.
    """
    if trials < 1:
        raise ConfigError("--search needs at least 1 trial")
    if config.mode not in PREFERENCE_MODES and min(RANKS) > max_rank:
        raise ConfigError(f"--search tries ranks {RANKS}: the rank limit {max_rank} allows none")
    progress = progress or NullProgress()
    started = time.monotonic()
    # Checks the config and lays out (or prepares) the data once for every trial.
    base = prepare_run(config, paths, store, default_base, max_rank, scrub, progress, registry)
    fingerprint = studies.config_fingerprint(config, dataset_sha256(paths.data), max_rank)
    name = study_name or studies.default_study_name(config.domain, fingerprint)
    eval_steps = int(config.training_fields().get("eval_steps") or 10)
    sampler = studies.TrialSeededTPE(
        seed if seed is not None else int(config.training_fields().get("seed", 42)),
        # Half the trials explore at random before TPE models them (Optuna's 10 at most).
        n_startup_trials=max(2, min(10, trials // 2)),
    )
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=2 * eval_steps
    )
    study = studies.open_study(studies.open_storage(storage), name, fingerprint, sampler, pruner)
    done = studies.claimed(study)
    where = display_url(storage) if storage else "memory"
    progress.step(f"study {name} in {where}: {min(done, trials)} of {trials} trials run or running")

    attempts = 0

    def objective(trial: optuna.Trial) -> float:
        nonlocal attempts
        attempts += 1
        if studies.is_surplus(trial, trials):
            trial.set_user_attr(studies.SURPLUS, True)
            trial.study.stop()
            raise _Surplus
        choice = suggest(trial, config, max_rank)
        trial_paths = RunPaths(paths.root / "trials" / studies.display_number(trial))
        trial_paths.root.mkdir(parents=True, exist_ok=True)
        if not trial_paths.data.exists():
            shutil.copytree(paths.data, trial_paths.data)
        trial.set_user_attr(studies.RUN, str(trial_paths.root.absolute()))
        trial.set_user_attr(studies.HOST, studies.this_host())
        marker: dict[str, Any] = {"study": name, "number": trial.number, "params": choice}
        _mark(trial_paths, marker, "running")
        progress.step(f"trial {trial.number + 1}/{trials}: {describe(choice)}")
        reporter = _pruning_callback(trial)
        try:
            result = run_training(
                _with_choice(config, choice),
                trial_paths,
                store,
                default_base,
                max_rank,
                progress=progress,
                extra_callbacks=[reporter],
                registry=registry,
            )
        except BaseException:
            _mark(trial_paths, marker, "fail")
            raise
        for key, value in (
            ("best_eval_loss", result.best_eval_loss),
            ("steps", result.steps),
            ("seconds", round(result.seconds, 1)),
        ):
            trial.set_user_attr(key, value)
        if reporter.pruned_at is not None:
            step, loss = reporter.pruned_at
            _mark(trial_paths, {**marker, "pruned_at": {"step": step, "eval_loss": loss}}, "pruned")
            raise optuna.TrialPruned(f"validation loss {loss:.4f} at step {step}")
        _mark(trial_paths, marker, "complete")
        # NaN fails the trial in Optuna: one that never evaluated has nothing to compare.
        return float("nan") if result.best_eval_loss is None else result.best_eval_loss

    def stop_when_full(study: optuna.Study, _: Any) -> None:
        if studies.claimed(study) >= trials:
            study.stop()

    def may_start() -> bool:
        over = budget_s is not None and attempts > 0 and _spent(started) > budget_s
        return studies.claimed(study) < trials and attempts < trials and not over

    # `attempts` bounds this worker's trials (failed ones too); the study's total is held by
    # the surplus check and the callback. After waiting for the other workers, once more:
    # a trial whose worker died was failed meanwhile, and is left to run again.
    while True:
        if may_start():
            study.optimize(
                objective,
                n_trials=trials - attempts,
                # At least a second: the first trial always starts, whatever came before.
                timeout=None if budget_s is None else max(1.0, budget_s - _spent(started)),
                callbacks=[stop_when_full],
                catch=(_Surplus,),
            )
        studies.wait_for_other_workers(study, progress)
        if not may_start():
            break
    best, kept = _keep(study, name, paths)
    _write_summary(study, paths, name, where, best, kept, _spent(started))
    try:
        adapter = validate_adapter(paths.adapter, store, max_rank, base_model=base.name)
    except AdapterInvalid as error:
        raise ConfigError(f"the kept trial's adapter failed validation: {error}") from None
    recorded = json.loads(paths.result.read_text())
    return TrainResult(
        paths=RunPaths(paths.root),
        adapter=adapter,
        steps=int(recorded["steps"]),
        best_eval_loss=recorded["best_eval_loss"],
        stopped_early=bool(recorded["stopped_early"]),
        seconds=float(recorded["seconds"]),
        from_adapter=recorded.get("from_adapter"),
    )


def _spent(started: float) -> float:
    return time.monotonic() - started


def _mark(trial_paths: RunPaths, marker: dict[str, Any], state: str) -> None:
    (trial_paths.root / TRIAL_FILE).write_text(json.dumps({**marker, "state": state}, indent=2))


def _trained(paths: RunPaths) -> tuple[Path, ...]:
    """What a finished training leaves in its run folder (the data aside)."""
    return (paths.adapter, paths.log, paths.config, paths.result)


def _reachable(trial: FrozenTrial, name: str) -> RunPaths | None:
    """The trial's run folder, when this machine can read it (the trial ran here, or on a
    shared file system) and it is that trial's (its trial.json says so)."""
    run = trial.user_attrs.get(studies.RUN)
    if not run:
        return None
    paths = RunPaths(Path(run))
    marker = paths.root / TRIAL_FILE
    if not marker.is_file() or not all(p.exists() for p in _trained(paths)):
        return None
    recorded = json.loads(marker.read_text())
    if recorded.get("study") != name or recorded.get("number") != trial.number:
        return None
    return paths


def _keep(study: optuna.Study, name: str, paths: RunPaths) -> tuple[FrozenTrial, FrozenTrial]:
    """Copy the study's best trial into the run folder; where this machine cannot read its
    folder, the best one it can (said in a warning and in search.json)."""
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ranked = sorted(finished, key=lambda t: (float(t.value or 0.0), t.number))
    if not ranked:
        raise ConfigError("no trial produced a validation loss")
    best = ranked[0]
    readable = [(t, p) for t in ranked if (p := _reachable(t, name)) is not None]
    if not readable:
        raise ConfigError(
            f"the study's best trial, {studies.display_number(best)}, is in "
            f"{best.user_attrs.get(studies.RUN)} on {best.user_attrs.get(studies.HOST)}, "
            "which this machine cannot read; no trial of the study here can stand in"
        )
    kept, source = readable[0]
    if kept.number != best.number:
        logger.warning(
            "the study's best trial, %s, is in %s on %s, which this machine cannot read; "
            "the run keeps %s, the best here",
            studies.display_number(best),
            best.user_attrs.get(studies.RUN),
            best.user_attrs.get(studies.HOST),
            studies.display_number(kept),
        )
    for origin, target in zip(_trained(source), _trained(paths), strict=True):
        if target.is_dir():
            shutil.rmtree(target)
        if origin.is_dir():
            shutil.copytree(origin, target)
        else:
            shutil.copyfile(origin, target)
    return best, kept


def _write_summary(
    study: optuna.Study,
    paths: RunPaths,
    name: str,
    where: str,
    best: FrozenTrial,
    kept: FrozenTrial,
    seconds: float,
) -> None:
    rows = [
        {
            "trial": studies.display_number(t),
            "number": t.number,
            "state": t.state.name.lower(),
            **_choice_of(t.params),
            **{k: t.user_attrs.get(k) for k in ("best_eval_loss", "steps", "seconds")},
            "run": t.user_attrs.get(studies.RUN),
            "host": t.user_attrs.get(studies.HOST),
        }
        for t in study.get_trials(deepcopy=False)
        if not t.user_attrs.get(studies.SURPLUS)
    ]
    summary = {
        "study": name,
        "storage": where,
        "best": studies.display_number(best),
        "best_run": best.user_attrs.get(studies.RUN),
        "best_host": best.user_attrs.get(studies.HOST),
        "kept": studies.display_number(kept),
        "trials": rows,
        "seconds": round(seconds, 1),
    }
    (paths.root / SEARCH_FILE).write_text(json.dumps(summary, indent=2))
