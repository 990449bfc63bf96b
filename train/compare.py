"""Choose a base model: loss and perplexity of each candidate on a sample of your task."""

from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lorastack.models import ModelStore
from lorastack.progress import NullProgress, Progress
from lorastack.train.config import ConfigError
from lorastack.train.evaluate import eval_trainer
from lorastack.train.run import read_jsonl, split_file
from lorastack.train.trainer import to_examples


@dataclass(frozen=True)
class Candidate:
    name: str
    loss: float
    perplexity: float
    examples: int


def compare_models(
    names: list[str],
    data: Path,
    mode: str,
    store: ModelStore,
    samples: int = 64,
    seed: int = 42,
    progress: Progress | None = None,
) -> list[Candidate]:
    """Rank base models by loss on the validation split (lower first), same sample for all."""
    import math

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress = progress or NullProgress()
    source = data / split_file("validation") if data.is_dir() else data
    if not source.is_file():
        raise ConfigError(f"{source} not found: give a prepared dataset folder or a JSONL file")
    if len(set(names)) < 2:
        raise ConfigError("name at least two different base models to compare")
    records = read_jsonl(source)
    examples = to_examples(records, mode)
    if not examples:
        raise ConfigError(f"{source} holds no examples for {mode} mode")
    sample = random.Random(seed).sample(examples, min(samples, len(examples)))
    ranked = []
    for name in names:
        record = store.get(name)
        progress.step(f"scoring {name} on {len(sample)} examples")
        tokenizer = AutoTokenizer.from_pretrained(record.path)
        model = AutoModelForCausalLM.from_pretrained(record.path, dtype=torch.float32)
        with tempfile.TemporaryDirectory() as scratch:
            loss = float(
                eval_trainer(model, tokenizer, sample, mode, Path(scratch)).evaluate()["eval_loss"]
            )
        ranked.append(Candidate(name, loss, math.exp(min(loss, 50.0)), len(sample)))
    return sorted(ranked, key=lambda c: c.loss)
