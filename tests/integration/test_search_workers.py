"""`lorastack train --search` by two worker processes sharing one study on a real
PostgreSQL server, training the bundled model for real (two steps a trial).

Each worker has a home of its own, as on two machines; only the database is shared. The
server is a throwaway cluster (tests/postgres.py): skipped without the server binaries,
failed instead under CI.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from lorastack.models import ModelRecord
from lorastack.train.data import PrepareOptions, prepare_dataset
from tests.cli_homes import cli_home

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"
TRIALS = 4
STUDY = "tickets-shared"


def _sha(adapter: Path) -> str:
    return hashlib.sha256((adapter / "adapter_model.safetensors").read_bytes()).hexdigest()


def _config(tmp_path: Path) -> Path:
    data = tmp_path / "tickets"
    prepare_dataset([EXAMPLES / "tiny-tickets.csv"], PrepareOptions(out=data))
    config = {
        "domain": "tickets",
        "data": str(data),
        "mode": "sft",
        "lora": {"target_modules": ["q_proj", "v_proj"]},
        "training": {
            "max_steps": 2,
            "eval_steps": 1,
            "save_steps": 1,
            "logging_steps": 1,
            "per_device_train_batch_size": 2,
            "per_device_eval_batch_size": 2,
            "max_length": 96,
        },
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _worker(
    home: Path, bundled_model: ModelRecord, config: Path, url: str
) -> subprocess.Popen[str]:
    # Two trainings share the cores.
    env = {**cli_home(home, bundled_model), "OMP_NUM_THREADS": "1"}
    argv = [
        *(sys.executable, "-m", "lorastack.cli", "train", "--config", str(config)),
        *("--base-model", bundled_model.name, "--search", str(TRIALS)),
        *("--study", STUDY, "--study-storage", url),
    ]
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_two_workers_share_one_study_and_keep_its_best_trial(
    bundled_model: ModelRecord, postgres_url: str, tmp_path: Path
) -> None:
    url = postgres_url.replace("postgresql+psycopg://", "postgresql://")  # as a user writes it
    config = _config(tmp_path)
    homes = [tmp_path / "machine-a", tmp_path / "machine-b"]
    workers = [_worker(home, bundled_model, config, url) for home in homes]
    runs = []
    for worker in workers:
        out, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-3000:]
        runs.append(Path(out.strip().splitlines()[-1]))

    study = optuna.load_study(study_name=STUDY, storage=postgres_url)
    counted = [t for t in study.trials if not t.user_attrs.get("surplus")]
    assert [t.state.name for t in study.trials if t.user_attrs.get("surplus")] in ([], ["FAIL"])
    # Four trials in all, each numbered, drawn and trained once, each in its own folder.
    assert len(counted) == TRIALS
    assert len({t.number for t in counted}) == TRIALS
    assert len({tuple(sorted(t.params.items())) for t in counted}) == TRIALS
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in counted)
    folders = [Path(t.user_attrs["run"]) for t in counted]
    assert len(set(folders)) == TRIALS
    for trial, folder in zip(counted, folders, strict=True):
        marker = json.loads((folder / "trial.json").read_text())
        assert (marker["study"], marker["number"]) == (STUDY, trial.number)
        assert (folder / "adapter" / "adapter_model.safetensors").is_file()
    # Both workers trained: the study was shared, not run twice.
    assert {home for home in homes if any(home in f.parents for f in folders)} == set(homes)

    # Each worker waited for the other and kept the study's best trial.
    best = study.best_trial
    assert best.value == min(t.value for t in counted if t.state.name == "COMPLETE")
    best_adapter = Path(best.user_attrs["run"]) / "adapter"
    for run in runs:
        summary = json.loads((run / "search.json").read_text())
        assert summary["best"] == summary["kept"] == f"trial-{best.number + 1}"
        assert _sha(run / "adapter") == _sha(best_adapter)
        result = json.loads((run / "train_result.json").read_text())
        assert result["best_eval_loss"] == pytest.approx(best.value)


def _open_storage(url: str, start: Any) -> None:
    from lorastack.train.study import open_storage

    start.wait()
    open_storage(url)


def test_workers_opening_a_new_storage_together_all_get_it(postgres_url: str) -> None:
    """Optuna creates its tables on first use; on PostgreSQL all but one of the processes
    racing to do so fail with a duplicate key in the catalogue, unless they retry."""
    context = multiprocessing.get_context("fork")
    start = context.Barrier(4)
    workers = [context.Process(target=_open_storage, args=(postgres_url, start)) for _ in "abcd"]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
