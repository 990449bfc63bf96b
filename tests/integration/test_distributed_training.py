"""`lorastack train` under torchrun: two CPU processes (gloo) train one run with DDP.

The main process alone writes the run folder, its log and the adapter; the adapter
validates, and its validation loss is the single-process run's, trained on the same
examples per step (two processes of batch 2 against one of batch 4).

DDP averages the two processes' mean losses, where one process of batch 4 averages over
all the batch's tokens: the two agree only when every example counts as many tokens. So
the data is plain text cut to `max_length` (every example of tiny-domain.jsonl is longer).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lorastack.models import ModelRecord, ModelStore
from lorastack.train.data import PrepareOptions, prepare_dataset
from lorastack.validation import validate_adapter
from tests.cli_homes import cli_home
from tests.servers import free_port

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"


def _config(tmp_path: Path, batch: int) -> Path:
    data = tmp_path / "domain"
    if not data.exists():
        prepare_dataset([EXAMPLES / "tiny-domain.jsonl"], PrepareOptions(out=data))
    config = {
        "domain": "coffee",
        "data": str(data),
        "mode": "pretrain",
        "lora": {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]},
        "training": {
            # Two full batches of 4 of the 11 training examples: a third would hold 3, and
            # DDP would fill the second process's share with a repeat of the first example.
            "max_steps": 2,
            "eval_steps": 2,
            "save_steps": 2,
            "logging_steps": 1,
            "per_device_train_batch_size": batch,
            "per_device_eval_batch_size": batch,
            "max_length": 24,  # tokens: the shortest example has 25
        },
    }
    path = tmp_path / f"train-{batch}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _train(home: Path, bundled_model: ModelRecord, config: Path, launcher: list[str]) -> Any:
    # Two processes share the cores.
    env = {**cli_home(home, bundled_model), "OMP_NUM_THREADS": "1"}
    argv = [*launcher, "-m", "lorastack.cli", "train", "--config", str(config)]
    argv += ["--base-model", bundled_model.name]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)


def test_two_processes_write_one_run_with_the_single_process_loss(
    bundled_model: ModelRecord, tmp_path: Path
) -> None:
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    torchrun += ["--master_port", str(free_port())]
    ddp_home, single_home = tmp_path / "ddp", tmp_path / "single"
    ddp = _train(ddp_home, bundled_model, _config(tmp_path, 2), torchrun)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = _train(single_home, bundled_model, _config(tmp_path, 4), [sys.executable])
    assert single.returncode == 0, single.stderr[-3000:]

    # One run folder, printed once, by the main process.
    runs = list((ddp_home / "runs").iterdir())
    assert len(runs) == 1
    assert ddp.stdout.split() == [str(runs[0])]
    run = runs[0]
    assert sorted(p.name for p in run.iterdir()) == sorted(
        p.name for p in Path(single.stdout.split()[-1]).iterdir()
    )
    assert [p.name for p in (run / "checkpoints").glob("checkpoint-*")] == ["checkpoint-2"]
    adapter = validate_adapter(
        run / "adapter", ModelStore(bundled_model.path.parent), 16, base_model=bundled_model.name
    )
    assert adapter.path == run / "adapter"
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "loss" in e] == [1, 2]  # one log, not two interleaved

    # The same examples per step, each of as many tokens, so the same training losses: the
    # runs differ by float summation order (gradients averaged across processes) alone.
    # Measured: equal losses, gradient norms 5e-4 apart; examples other than the single
    # run's (a short last batch) put a step's loss about 2e-2 away.
    single_run = Path(single.stdout.split()[-1])
    single_log = [json.loads(line) for line in (single_run / "log.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in log if "loss" in e]
    assert losses == pytest.approx([e["loss"] for e in single_log if "loss" in e], rel=1e-3)
    # The validation loss after the update, looser: Adam's first step moves every weight by
    # the learning rate whatever its gradient's size, so float noise that flips the sign of
    # a near-zero gradient moves that weight the whole step the other way (measured: 3e-3).
    trained = json.loads((run / "train_result.json").read_text())
    alone = json.loads((single_run / "train_result.json").read_text())
    assert trained["steps"] == alone["steps"] == 2
    assert trained["best_eval_loss"] == pytest.approx(alone["best_eval_loss"], rel=1e-2)
