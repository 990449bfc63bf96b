"""Start, watch and stop vLLM's OpenAI server as a child process.

vLLM listens on a private loopback port: its adapter-loading endpoints load
any path they are given, so only lorastack itself may reach them.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from lorastack.errors import EngineError
from lorastack.models import ModelRecord
from lorastack.processes import log_tail, stop_group
from lorastack.settings import EngineSettings

logger = logging.getLogger(__name__)

# No process of ours may call out to a hub or send usage statistics.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


def gpu_visible() -> bool:
    """Whether an NVIDIA GPU is present, without importing torch."""
    return Path("/dev/nvidiactl").exists()


@dataclass(frozen=True)
class EngineLaunch:
    """The command line and environment that start one vLLM server."""

    argv: list[str]
    env: dict[str, str]
    url: str
    served_model_name: str


def build_launch(engine: EngineSettings, model: ModelRecord, max_lora_rank: int) -> EngineLaunch:
    """Translate settings into vLLM's flags (the CPU build's needs included)."""
    use_cpu = engine.device == "cpu" or (engine.device == "auto" and not gpu_visible())
    argv = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model.path),
        "--served-model-name",
        model.name,
        "--host",
        engine.host,
        "--port",
        str(engine.port),
        "--max-model-len",
        str(engine.max_model_len),
        "--gpu-memory-utilization",
        str(engine.gpu_memory_utilization),
        "--dtype",
        engine.dtype,
        "--tensor-parallel-size",
        str(engine.tensor_parallel_size),
        "--enable-lora",
        "--max-lora-rank",
        str(max_lora_rank),
        "--max-loras",
        str(engine.max_loras),
        "--max-cpu-loras",
        str(engine.max_cpu_loras),
        "--disable-uvicorn-access-log",
        *engine.extra_args,
    ]
    env = {
        **OFFLINE_ENV,
        # Lets the gateway load and unload adapters while the engine runs.
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
    }
    if use_cpu:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(engine.cpu_kv_cache_gib)
    return EngineLaunch(
        argv=argv,
        env=env,
        url=f"http://{engine.host}:{engine.port}",
        served_model_name=model.name,
    )


@dataclass
class EngineProcess:
    """One running vLLM server; use as a context manager to stop it on every exit path."""

    launch: EngineLaunch
    log_path: Path
    startup_timeout_s: float = 600.0
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return self.launch.url

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.launch.argv,
                env={**os.environ, **self.launch.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its workers form one group we can stop together
            )
        logger.info("engine starting (pid %s), log: %s", self._process.pid, self.log_path)

    def wait_ready(self) -> None:
        """Block until /health answers 200; raise `EngineError` if it dies or times out."""
        deadline = time.monotonic() + self.startup_timeout_s
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() < deadline:
                self._raise_if_exited()
                try:
                    if client.get(f"{self.url}/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(1.0)
        self.stop()
        raise EngineError(
            f"engine did not become healthy within {self.startup_timeout_s:.0f} s; "
            f"see {self.log_path}"
        )

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _raise_if_exited(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            code = self._process.returncode
            raise EngineError(f"engine exited with code {code}; last lines:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines)

    def stop(self, grace_s: float = 30.0) -> None:
        if self._process is not None:
            stop_group(self._process, grace_s, "engine")

    def __enter__(self) -> EngineProcess:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
