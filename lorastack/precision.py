"""How a trainer computes on this machine: the device, bf16 or not, gradient checkpointing,
and on a CPU how the C allocator keeps freed memory and which tokens the LM head scores.

`lorastack train`, `lorastack eval` and the training benchmark all ask here, so a run
and its measurement use the same options.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable
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


# glibc's mallopt(3) parameters.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_KEPT_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Let glibc keep the memory a training step frees for the next step, instead of
    handing it back to the kernel; returns whether it could.

    A step on a CPU allocates and frees a few hundred MB (logits over a 49k vocabulary,
    their gradients). By default glibc serves such blocks with mmap and unmaps them on
    free, so every step faults and zeroes them anew: a third of a step's time went to
    the kernel (2 cores, the bundled model). Raising the mmap and trim thresholds keeps
    them in the heap: the same step took 3.8 s instead of 7.2 s. mallopt is called
    through ctypes because jemalloc or tcmalloc would need LD_PRELOAD before the process
    starts, which a `lorastack train` in a user's shell cannot arrange. Elsewhere than
    glibc (macOS, musl) it does nothing.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return all(
        mallopt(parameter, _KEPT_BYTES) == 1
        for parameter in (_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD, _M_TOP_PAD)
    )


_compacting: list[Callable[[Any], bool]] = []


def score_labelled_tokens_only() -> bool:
    """Have TRL's LM head score only the tokens the loss counts on a CPU too; returns
    whether it does (idempotent).

    TRL's trainers project hidden states through the LM head with a fused, chunked kernel
    (`trl.trainer.utils.add_fused_lm_head`) that never builds the whole logits. On Triton
    devices it projects only the positions that have a label; elsewhere it projects every
    position and zeroes the rest after, because a compiler that specialises on shapes
    (Neuron) would recompile for every new count of labelled tokens. A CPU runs the
    kernel's PyTorch path eagerly, compiling nothing, so there that only costs: the reply
    is about a third of a brand chat example's tokens (the brand voice and the question
    are the rest), and the 49k-word head's forward, recomputation and backward at every
    other position is wasted. Scoring the labelled positions alone gives the same loss and
    gradients (a unit test compares them).

    TRL makes that choice with a private helper, `_use_triton`, looked up for each batch;
    this makes it say yes for CPU tensors too, and leaves the kernel's own choice of Triton
    or PyTorch alone. Where the helper is missing (another TRL), nothing changes: training
    stays correct, only slower.
    """
    try:
        from trl.trainer import utils
    except ImportError:  # an image that serves only has no TRL, and trains nothing
        return False
    decides = getattr(utils, "_use_triton", None)
    if decides is None:
        return False
    if decides in _compacting:
        return True

    def compact(device: Any) -> bool:
        return bool(device.type == "cpu" or decides(device))

    _compacting.append(compact)
    setattr(utils, "_use_triton", compact)  # noqa: B010 (a private name: see above)
    return True


def precision_options() -> dict[str, Any]:
    """`use_cpu`, `bf16` and `gradient_checkpointing` for a trainer on this machine.

    bf16 where the hardware computes in it: on a CPU with bf16 units, autocast makes a
    step about 1.3x faster (a rank-16 adapter on the bundled model, 2 cores); on a CPU
    without them it is about ten times slower, so TRL's bf16 default is never left to
    chance. On a CPU, no gradient checkpointing either: TRL turns it on to save memory,
    which the small models a CPU trains do not need, and recomputing the forward pass
    costs about 15% of every step. On a CPU it also keeps freed memory for the next step
    (`keep_freed_memory`) and scores only the labelled tokens (`score_labelled_tokens_only`).
    """
    import torch

    if torch.cuda.is_available():
        return {"use_cpu": False, "bf16": torch.cuda.is_bf16_supported()}
    keep_freed_memory()
    score_labelled_tokens_only()
    return {"use_cpu": True, "bf16": cpu_has_bf16(), "gradient_checkpointing": False}
