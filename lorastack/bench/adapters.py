"""Real PEFT LoRA adapters with random weights, made on the spot for the bundled model.

Serving benchmarks and integration tests need adapters vLLM really loads and that really
change the answers, not trained ones: the cost of a LoRA in the engine does not depend on
what its weights learned.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LoraShape:
    """Which layers an adapter changes, and its rank."""

    name: str
    rank: int
    target_modules: str | tuple[str, ...]


QV_RANK8 = LoraShape("r8-qv", 8, ("q_proj", "v_proj"))
"""The smallest common shape: rank 8 on the attention's q and v projections."""
ALL_LINEAR_RANK16 = LoraShape("r16-all", 16, "all-linear")
"""What `lorastack train` trains by default (train/config.py): rank 16, every linear layer."""
SHAPES = {shape.name: shape for shape in (QV_RANK8, ALL_LINEAR_RANK16)}


def write_random_loras(
    base: Path,
    targets: Sequence[tuple[Path, int]],
    std: float = 0.5,
    shape: LoraShape = QV_RANK8,
) -> None:
    """Write one LoRA of `shape` per `(folder, seed)`, loading `base` once.

    The same seed gives the same weights. `std` is the spread of `lora_B`, large enough
    that each adapter changes the base model's answers.
    """
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    target_modules = shape.target_modules
    config = LoraConfig(
        r=shape.rank,
        lora_alpha=2 * shape.rank,
        target_modules=target_modules if isinstance(target_modules, str) else list(target_modules),
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, config)
    for folder, seed in targets:
        torch.manual_seed(seed)
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_A" in name:
                    # nn.Linear's own initialisation, which init_lora_weights=False keeps.
                    torch.nn.init.kaiming_uniform_(param, a=math.sqrt(5))
                elif "lora_B" in name:
                    param.normal_(0.0, std)
        peft_model.save_pretrained(str(folder))


def write_random_lora(
    base: Path, folder: Path, seed: int, std: float = 0.5, shape: LoraShape = QV_RANK8
) -> Path:
    """A LoRA of `shape` with random weights strong enough to change answers."""
    write_random_loras(base, [(folder, seed)], std, shape)
    return folder
