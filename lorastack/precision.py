"""How a trainer computes on this machine: the device, bf16 or not, gradient checkpointing.

`lorastack train`, `lorastack eval` and the training benchmark all ask here, so a run
and its measurement use the same options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
"""CPU features that compute in bf16 natively (x86: AVX-512 BF16, AMX)."""


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU multiplies bf16 natively, from the kernel's CPU flags (False where
    they cannot be read, e.g. off Linux: the safe choice, fp32)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return not CPU_BF16_FLAGS.isdisjoint(line.partition(":")[2].split())
    return False


def precision_options() -> dict[str, Any]:
    """`use_cpu`, `bf16` and `gradient_checkpointing` for a trainer on this machine.

    bf16 where the hardware computes in it: on a CPU with bf16 units, autocast makes a
    step about 1.3x faster (a rank-16 adapter on the bundled model, 2 cores); on a CPU
    without them it is about ten times slower, so TRL's bf16 default is never left to
    chance. On a CPU, no gradient checkpointing either: TRL turns it on to save memory,
    which the small models a CPU trains do not need, and recomputing the forward pass
    costs about 15% of every step.
    """
    import torch

    if torch.cuda.is_available():
        return {"use_cpu": False, "bf16": torch.cuda.is_bf16_supported()}
    return {"use_cpu": True, "bf16": cpu_has_bf16(), "gradient_checkpointing": False}
