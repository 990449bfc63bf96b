"""Training throughput: tokens per second and peak memory, padded vs packed.

One implementation for the CPU benchmark (`lorastack bench --only train`) and the GPU check
(`tests/gpu/check_training.py`): TRL's SFTTrainer with LoRA r16 on all linear layers over
synthetic text of random lengths, once padded and once packed. Only real tokens count
(padding is the cost packing removes).

Peak memory is the CUDA allocator's peak on a GPU; on the CPU it is the process's peak
resident set, which covers its whole life: the benchmark therefore runs each variant in a
fresh process (`python -m lorastack.bench.train_worker`, see `run_variants`).
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lorastack.bench.errors import BenchError
from lorastack.processes import OFFLINE_ENV


@dataclass(frozen=True)
class TrainingSpec:
    """What one training measurement runs."""

    steps: int = 30
    """Optimizer steps, each timed."""
    batch: int = 16
    """Sequences per step (per device)."""
    max_length: int = 1024
    """Longest sequence in tokens; longer texts are cut, packed ones fill it."""
    min_words: int = 40
    """Shortest synthetic text, in words (a word is one or more tokens)."""
    max_words: int = 700
    """Longest synthetic text, in words."""
    seed: int = 0
    """Seed of the texts' lengths and words."""

    def __post_init__(self) -> None:
        if min(self.steps, self.batch, self.max_length, self.min_words) < 1:
            raise ValueError("steps, batch, max_length and min_words must be at least 1")
        if self.max_words < self.min_words:
            raise ValueError("max_words must be at least min_words")


@dataclass(frozen=True)
class TrainingRun:
    """One measured training run."""

    packing: bool
    steps: int
    seconds: float
    tokens_per_s: int | None
    """Real (non-padding) tokens per second."""
    peak_gib: float
    tokens: int
    device: str
    memory: str
    """What `peak_gib` measures: `cuda_max_allocated` or `process_peak_rss`."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def synthetic_texts(count: int, spec: TrainingSpec) -> list[str]:
    """`count` texts of random lengths between the spec's bounds, from its seed."""
    rng = random.Random(spec.seed)
    return [
        " ".join(
            f"w{rng.randrange(4000)}" for _ in range(rng.randint(spec.min_words, spec.max_words))
        )
        for _ in range(count)
    ]


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def measure_training(model_dir: Path, packing: bool, spec: TrainingSpec) -> TrainingRun:
    """Train a fresh LoRA for `spec.steps` steps in this process and time it."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    from lorastack.precision import precision_options  # what `lorastack train` uses

    device = _device()
    texts = synthetic_texts(spec.steps * spec.batch * 2, spec)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as out:
        trainer = SFTTrainer(
            model=str(model_dir),
            args=SFTConfig(
                output_dir=out,
                max_steps=spec.steps,
                per_device_train_batch_size=spec.batch,
                max_length=spec.max_length,
                packing=packing,
                report_to="none",
                logging_steps=spec.steps,
                save_strategy="no",
                dataset_text_field="text",
                learning_rate=2e-4,
                disable_tqdm=True,
                # real tokens only: padding is the cost packing removes
                include_num_input_tokens_seen="non_padding",
                **precision_options(),
            ),
            train_dataset=Dataset.from_list([{"text": t} for t in texts]),
            peft_config=LoraConfig(
                r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"
            ),
        )
        if trainer.model is None:
            raise BenchError("the trainer built no model")
        placed = next(trainer.model.parameters()).device.type
        if placed != device:
            raise BenchError(f"the model trained on {placed}, expected {device}")
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        tokens = int(trainer.state.num_input_tokens_seen or 0)
    if device == "cuda":
        peak, memory = torch.cuda.max_memory_allocated(), "cuda_max_allocated"
    else:
        # ru_maxrss is in KiB on Linux.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        memory = "process_peak_rss"
    return TrainingRun(
        packing=packing,
        steps=spec.steps,
        seconds=round(seconds, 2),
        tokens_per_s=round(tokens / seconds) if tokens else None,
        peak_gib=round(peak / 2**30, 2),
        tokens=tokens,
        device=device,
        memory=memory,
    )


def run_variants(
    model_dir: Path, spec: TrainingSpec, log_path: Path, timeout_s: float = 1800.0
) -> list[TrainingRun]:
    """Padded, then packed, each in a fresh process so that its peak memory is its own."""
    runs = []
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for packing in (False, True):
        with tempfile.TemporaryDirectory() as scratch, log_path.open("ab") as log:
            result = Path(scratch) / "result.json"
            argv = [
                sys.executable,
                "-m",
                "lorastack.bench.train_worker",
                str(model_dir),
                str(result),
                "--packing" if packing else "--no-packing",
                "--spec",
                json.dumps(asdict(spec)),
            ]
            try:
                code = subprocess.run(
                    argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, **OFFLINE_ENV},
                    timeout=timeout_s,
                    check=False,
                ).returncode
            except subprocess.TimeoutExpired:
                raise BenchError(
                    f"training ({'packed' if packing else 'padded'}) took over "
                    f"{timeout_s:.0f} s; see {log_path}"
                ) from None
            if code != 0 or not result.is_file():
                raise BenchError(
                    f"training ({'packed' if packing else 'padded'}) failed with exit code "
                    f"{code}; see {log_path}"
                )
            runs.append(TrainingRun(**json.loads(result.read_text(encoding="utf-8"))))
    return runs
