"""Which process writes, when `lorastack train` runs under `accelerate launch` or `torchrun`.

Every process trains its share of each batch (DDP, or FSDP through accelerate's config);
one, the main process, lays out the run folder, keeps the log, saves the adapter and
reports progress, and the others wait for it where they read what it wrote. A launcher
says how many processes there are in `WORLD_SIZE`; without one there is a single process,
which is the main one, never waits and imports nothing for it.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar, cast

T = TypeVar("T")


def distributed() -> bool:
    """Whether a launcher started several processes for this run."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _state() -> Any:
    # Imported here: a single process never needs accelerate's process group.
    import torch
    from accelerate import PartialState

    # Joins the launcher's process group the first time. Without `cpu`, accelerate takes
    # processes on a machine without CUDA for one process each (the trainer passes
    # `use_cpu` there, from `lorastack.precision`).
    return PartialState(cpu=not torch.cuda.is_available())


def is_main_process() -> bool:
    """Whether this process writes the run's files (always, without a launcher)."""
    return not distributed() or bool(_state().is_main_process)


def wait_for_everyone() -> None:
    """Wait until every process gets here (after the main one wrote what they read)."""
    if distributed():
        _state().wait_for_everyone()


def agreed(value: T) -> T:
    """The main process's `value`, on every process: a run folder named after the time
    must be one folder, however far apart the processes' clocks are."""
    if not distributed():
        return value
    from accelerate.utils import broadcast_object_list

    _state()
    return cast(T, broadcast_object_list([value])[0])
