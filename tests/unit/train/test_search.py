"""`--search` on Optuna, with a scripted stand-in for training.

The stand-in lays out a trial's run folder as `run_training` does (config, log, result, a
real adapter file for the fake base model) and plays the validation losses it is given
through the search's own TrainerCallback, so sampling, pruning, the study's storage and
the kept trial are the real code. Real training is tests/integration/test_search_workers.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest

from lorastack.models import ModelStore
from lorastack.train import search as search_module
from lorastack.train.config import ConfigError, TrainConfig, build_config
from lorastack.train.run import RunPaths
from lorastack.train.search import (
    ALPHA_FACTORS,
    LEARNING_RATE_RANGE,
    RANKS,
    epoch_choices,
    search,
)
from lorastack.train.study import TrialSeededTPE, config_fingerprint
from lorastack.train.trainer import TrainResult, prepare_run
from lorastack.validation import validate_adapter
from tests.fakes import write_adapter

Losses = Callable[[TrainConfig, int], list[float]]
"""The validation losses of the n-th training (0-based), one per evaluation."""


def _by_learning_rate(config: TrainConfig, _: int) -> list[float]:
    # Best near 6e-4; a little better at each evaluation.
    rate = float(config.training["learning_rate"])
    gap = abs(rate - 6e-4) * 1000
    return [1.0 + gap + 0.5 / step for step in range(1, 5)]


class FakeTraining:
    """Stands in for `run_training`; remembers the configs it trained."""

    def __init__(self, losses: Losses = _by_learning_rate) -> None:
        self.losses = losses
        self.configs: list[TrainConfig] = []

    def __call__(
        self,
        config: TrainConfig,
        paths: RunPaths,
        store: ModelStore,
        default_base: str,
        max_rank: int,
        *,
        progress: Any = None,
        extra_callbacks: list[Any] | None = None,
        registry: Any = None,
    ) -> TrainResult:
        base = prepare_run(config, paths, store, default_base, max_rank)
        losses = self.losses(config, len(self.configs))
        self.configs.append(config)
        state, control = SimpleNamespace(global_step=0), SimpleNamespace(should_training_stop=False)
        seen: list[float] = []
        for step, loss in enumerate(losses, start=1):
            state.global_step = step
            seen.append(loss)
            for callback in extra_callbacks or []:
                callback.on_evaluate(None, state, control, metrics={"eval_loss": loss})
            if control.should_training_stop:
                break
        paths.log.write_text(
            "".join(json.dumps({"step": i + 1, "eval_loss": v}) + "\n" for i, v in enumerate(seen))
        )
        lora = config.lora_fields()
        write_adapter(paths.adapter, base.name, rank=lora["r"], lora_alpha=lora["lora_alpha"])
        result = {"steps": len(seen), "best_eval_loss": min(seen), "stopped_early": False}
        paths.result.write_text(json.dumps({**result, "seconds": 0.1}))
        adapter = validate_adapter(paths.adapter, store, max_rank, base_model=base.name)
        return TrainResult(paths, adapter, len(seen), min(seen), False, 0.1)


@pytest.fixture
def training(monkeypatch: pytest.MonkeyPatch) -> FakeTraining:
    fake = FakeTraining()
    monkeypatch.setattr(search_module, "run_training", fake)
    return fake


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "tickets"
    folder.mkdir()
    for split in ("train", "validation", "test"):
        rows = [{"prompt": f"Ticket {i}: refund?\n", "completion": "billing"} for i in range(4)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _config(data: Path, **training: Any) -> TrainConfig:
    return build_config(
        {
            "domain": "tickets",
            "data": str(data),
            "mode": "sft",
            "lora": {"target_modules": ["q_proj", "v_proj"]},
            "training": {"eval_steps": 1, **training},
        }
    )


def _search(
    config: TrainConfig, store: ModelStore, root: Path, trials: int, **options: Any
) -> TrainResult:
    return search(config, RunPaths(root), store, "tiny", 16, trials, **options)


def _summary(root: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((root / "search.json").read_text())
    return loaded


def _sha(folder: Path) -> str:
    return hashlib.sha256((folder / "adapter_model.safetensors").read_bytes()).hexdigest()


@pytest.mark.usefixtures("fake_base")
def test_suggestions_stay_in_the_search_space(
    training: FakeTraining, data: Path, store: ModelStore, tmp_path: Path
) -> None:
    config = _config(data, num_train_epochs=2)
    _search(config, store, tmp_path / "run", trials=6)
    trials = _summary(tmp_path / "run")["trials"]
    assert [t["trial"] for t in trials] == [f"trial-{n}" for n in range(1, 7)]
    low, high = LEARNING_RATE_RANGE
    for trial, trained in zip(trials, training.configs, strict=True):
        assert low <= trial["learning_rate"] <= high
        assert trial["r"] in [r for r in RANKS if r <= 16]
        assert trial["lora_alpha"] in [trial["r"] * f for f in ALPHA_FACTORS]
        assert trial["num_train_epochs"] in epoch_choices(config) == [1.0, 2.0, 3.0]
        # What was trained is what the study recorded.
        assert trained.lora["r"] == trial["r"] and trained.lora["lora_alpha"] == trial["lora_alpha"]
        assert trained.training["learning_rate"] == trial["learning_rate"]
    assert len({t["learning_rate"] for t in trials}) == 6


def test_workers_with_one_seed_draw_different_trials() -> None:
    """Each process has its own sampler; with one seed, plain TPE would draw the same first
    trial in every worker. Trial-seeded TPE draws from (seed, trial number)."""

    def first_draws(sampler: Callable[[], optuna.samplers.BaseSampler]) -> list[float]:
        storage = optuna.storages.InMemoryStorage()
        optuna.create_study(storage=storage, study_name="s")
        workers = [
            optuna.load_study(study_name="s", storage=storage, sampler=sampler()) for _ in "ab"
        ]
        return [w.ask().suggest_float("learning_rate", 2e-4, 2e-3, log=True) for w in workers]

    plain = first_draws(lambda: optuna.samplers.TPESampler(seed=42))
    assert plain[0] == plain[1]
    seeded = first_draws(lambda: TrialSeededTPE(seed=42, n_startup_trials=2))
    assert seeded[0] != seeded[1]
    assert first_draws(lambda: TrialSeededTPE(seed=42, n_startup_trials=2)) == seeded


@pytest.mark.usefixtures("fake_base")
def test_pruning_stops_a_trial_that_falls_behind(
    monkeypatch: pytest.MonkeyPatch, data: Path, store: ModelStore, tmp_path: Path
) -> None:
    def losses(_: TrainConfig, index: int) -> list[float]:
        return [5.0] * 6 if index == 2 else [2.0, 1.5, 1.2, 1.1, 1.0, 0.9]

    training = FakeTraining(losses)
    monkeypatch.setattr(search_module, "run_training", training)
    result = _search(_config(data), store, tmp_path / "run", trials=3)
    trials = {t["trial"]: t for t in _summary(tmp_path / "run")["trials"]}
    # Pruned at its second evaluation (the first is never compared), not after six.
    assert trials["trial-3"]["state"] == "pruned" and trials["trial-3"]["steps"] == 2
    assert [trials[f"trial-{n}"]["state"] for n in (1, 2)] == ["complete", "complete"]
    marker = json.loads((tmp_path / "run" / "trials" / "trial-3" / "trial.json").read_text())
    assert marker["state"] == "pruned"
    assert marker["pruned_at"] == {"step": 2, "eval_loss": 5.0}
    assert result.best_eval_loss == 0.9 and _summary(tmp_path / "run")["best"] != "trial-3"


@pytest.mark.usefixtures("fake_base")
def test_the_study_persists_and_a_later_call_continues_it(
    training: FakeTraining, data: Path, store: ModelStore, tmp_path: Path
) -> None:
    storage = f"sqlite:///{tmp_path / 'db' / 'lorastack.db'}"
    config = _config(data)
    _search(config, store, tmp_path / "first", trials=2, storage=storage)
    _search(config, store, tmp_path / "second", trials=4, storage=storage)
    assert len(training.configs) == 4
    # The second call ran the study's trials 3 and 4 only, and reports all four.
    assert sorted(p.name for p in (tmp_path / "second" / "trials").iterdir()) == [
        "trial-3",
        "trial-4",
    ]
    summary = _summary(tmp_path / "second")
    assert [t["number"] for t in summary["trials"]] == [0, 1, 2, 3]
    params = {(t["learning_rate"], t["r"], t["lora_alpha"]) for t in summary["trials"]}
    assert len(params) == 4
    # The study is whole: a third call runs nothing and keeps its best, wherever it ran.
    result = _search(config, store, tmp_path / "third", trials=4, storage=storage)
    assert len(training.configs) == 4 and not (tmp_path / "third" / "trials").exists()
    best = _summary(tmp_path / "third")
    assert best["best"] == summary["best"] == best["kept"]
    assert _sha((tmp_path / "third") / "adapter") == _sha(Path(best["best_run"]) / "adapter")
    losses = [t["best_eval_loss"] for t in summary["trials"]]
    assert result.best_eval_loss == min(losses)


@pytest.mark.usefixtures("fake_base")
def test_the_best_trial_is_the_one_kept(
    training: FakeTraining, data: Path, store: ModelStore, tmp_path: Path
) -> None:
    root = tmp_path / "run"
    result = _search(_config(data), store, root, trials=4)
    summary = _summary(root)
    complete = [t for t in summary["trials"] if t["state"] == "complete"]
    best = min(complete, key=lambda t: t["best_eval_loss"])
    assert summary["best"] == summary["kept"] == best["trial"]
    assert result.best_eval_loss == best["best_eval_loss"]
    assert result.paths.root == root
    kept = root / "trials" / best["trial"]
    assert _sha(root / "adapter") == _sha(kept / "adapter")
    assert (root / "config.yaml").read_text() == (kept / "config.yaml").read_text()
    assert (root / "train_result.json").read_text() == (kept / "train_result.json").read_text()


@pytest.mark.usefixtures("fake_base")
def test_a_best_trial_out_of_reach_is_named_and_the_best_in_reach_kept(
    training: FakeTraining, data: Path, store: ModelStore, tmp_path: Path
) -> None:
    import shutil

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    config = _config(data)
    _search(config, store, tmp_path / "first", trials=3, storage=storage)
    best = _summary(tmp_path / "first")["best"]
    shutil.rmtree(tmp_path / "first" / "trials" / best)  # as if on another machine
    _search(config, store, tmp_path / "again", trials=3, storage=storage)
    summary = _summary(tmp_path / "again")
    assert summary["best"] == best and summary["kept"] != best
    kept = tmp_path / "first" / "trials" / summary["kept"]
    assert _sha(tmp_path / "again" / "adapter") == _sha(kept / "adapter")


@pytest.mark.usefixtures("fake_base")
def test_a_named_study_refuses_another_config(
    training: FakeTraining, data: Path, store: ModelStore, tmp_path: Path
) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    _search(_config(data), store, tmp_path / "a", trials=1, storage=storage, study_name="s")
    other = _config(data, max_length=64)
    with pytest.raises(ConfigError, match="study s searches another config"):
        _search(other, store, tmp_path / "b", trials=2, storage=storage, study_name="s")
    # Without a name, each config has a study of its own, the same on every machine.
    assert config_fingerprint(_config(data), "x", 16) == config_fingerprint(_config(data), "x", 16)
    assert config_fingerprint(_config(data), "x", 16) != config_fingerprint(other, "x", 16)


@pytest.mark.usefixtures("fake_base", "fake_pii_detector")
def test_the_command_line_keeps_the_study_in_the_lorastack_database(
    cli: Any, training: FakeTraining, data: Path, home: Path
) -> None:
    args = ("train", "--domain", "tickets", "--data", str(data), "--mode", "sft")
    refused = cli(*args, "--study", "s")
    assert refused.code == 1 and "go with --search" in refused.err
    done = cli(*args, "--base-model", "tiny", "--search", "2", "--study", "s")
    assert done.code == 0, done.err
    assert "trial-1" in done.err and "trial-2" in done.err and "validation loss" in done.err
    assert Path(done.last_line).parent == home / "runs"
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{home / 'lorastack.db'}")
    assert len(study.trials) == 2
    refused = cli(*args, "--search", "2", "--resume")
    assert refused.code == 1 and "cannot be combined" in refused.err


@pytest.mark.usefixtures("fake_base")
def test_a_dead_workers_trial_is_failed_and_run_again(
    training: FakeTraining,
    data: Path,
    store: ModelStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lorastack.train import study as studies

    for name, value in (("HEARTBEAT_S", 1), ("GRACE_S", 1), ("WAIT_POLL_S", 0.2)):
        monkeypatch.setattr(studies, name, value)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    config = _config(data)
    _search(config, store, tmp_path / "first", trials=2, storage=storage, study_name="s")
    # A worker took the third trial, beat once and died.
    rdb = studies.open_storage(storage)
    assert isinstance(rdb, optuna.storages.RDBStorage)
    study = optuna.load_study(study_name="s", storage=rdb)
    with pytest.warns(UserWarning, match="Heartbeat"):  # asked outside Study.optimize
        zombie = study.ask()
    rdb.record_heartbeat(zombie._trial_id)
    _search(config, store, tmp_path / "second", trials=3, storage=storage, study_name="s")
    states = [t.state.name for t in study.get_trials()]
    assert states[:3] == ["COMPLETE", "COMPLETE", "FAIL"] and states[3] in ("COMPLETE", "PRUNED")
    assert [p.name for p in (tmp_path / "second" / "trials").iterdir()] == ["trial-4"]
