"""Child processes that run in a session of their own: start, wait until ready, stop.

The engine (vLLM), the bench's gateways and the demo's services are all started the same
way: their output goes to a log file, they lead a process group of their own so that
stopping one stops its workers too, and starting one means polling an HTTP URL until it
answers 200 while making sure the child has not died meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import tenacity

from lorastack.errors import LorastackError

logger = logging.getLogger(__name__)

_PROBE_TIMEOUT_S = 5.0

# No process of ours may call out to a hub or send usage statistics.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


class ChildProcessFailed(LorastackError):
    """A child process exited, or did not become ready in time."""


class _NotReady(Exception):
    """The readiness URL did not answer 200 yet: polled again until the deadline."""


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


@dataclass
class ChildProcess:
    """One child process with its log; a context manager stops it on every exit path.

    It may be started again after it stopped (the engine supervisor restarts vLLM).
    """

    name: str
    """What messages call it: `engine`, `gateway`, `UI`."""
    argv: Sequence[str]
    log_path: Path
    """Its stdout and stderr, appended to across starts."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Added to this process's environment."""
    error: type[LorastackError] = ChildProcessFailed
    """What `check_alive` and `wait_ready` raise: each caller's own failure type."""
    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    """The running (or last) process; None before the first start."""

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                list(self.argv),
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Its own session: its workers form one group that stops together, and a
                # Ctrl-C reaches only the parent, which stops its children in order.
                start_new_session=True,
            )
        logger.info("%s starting (pid %s), log: %s", self.name, self.process.pid, self.log_path)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_alive(self) -> None:
        """Raise `error`, with the last lines of the log, unless the child is running."""
        if self.process is None:
            raise self.error(f"the {self.name} was never started")
        code = self.process.poll()
        if code is not None:
            raise self.error(
                f"the {self.name} exited with code {code}; last lines of {self.log_path}:\n"
                f"{self.log_tail()}"
            )

    def wait_ready(
        self,
        url: str,
        timeout_s: float,
        interval_s: float = 0.5,
        on_poll: Callable[[], object] | None = None,
    ) -> None:
        """Poll `url` until it answers 200, checking before each poll that the child lives.

        Raises `error` as soon as the child exits; when `timeout_s` passes first, stops the
        child and raises `error`. `on_poll` is called before each poll (a heartbeat).
        """
        poll = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_NotReady),
            stop=tenacity.stop_after_delay(timeout_s),
            wait=tenacity.wait_fixed(interval_s),
            reraise=True,
        )
        # No proxies: the children listen on this machine.
        with httpx.Client(timeout=_PROBE_TIMEOUT_S, trust_env=False) as client:
            try:
                poll(self._probe, client, url, on_poll)
            except _NotReady:
                self.stop()
                raise self.error(
                    f"the {self.name} did not become healthy within {timeout_s:.0f} s "
                    f"({url}); see {self.log_path}"
                ) from None

    def _probe(self, client: httpx.Client, url: str, on_poll: Callable[[], object] | None) -> None:
        if on_poll is not None:
            on_poll()
        self.check_alive()
        try:
            status = client.get(url).status_code
        except httpx.HTTPError:
            raise _NotReady from None
        if status != 200:
            raise _NotReady

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines)

    def stop(self, grace_s: float = 30.0) -> None:
        if self.process is not None:
            stop_group(self.process, grace_s, self.name)

    def __enter__(self) -> ChildProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
