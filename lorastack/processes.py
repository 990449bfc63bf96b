"""Child processes that run in a session of their own: their logs and how they stop."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from pathlib import Path

logger = logging.getLogger(__name__)


def log_tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a child's log, or "" if it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def stop_group(process: subprocess.Popen[bytes], grace_s: float, name: str = "process") -> None:
    """SIGTERM to the process group `process` leads, SIGKILL after `grace_s`.

    The group must be its own (`start_new_session=True`): its workers stop with it, and
    any that outlived their parent are killed too, so none holds memory or ports.
    """
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        logger.warning("%s ignored SIGTERM for %.0f s; killing it", name, grace_s)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
