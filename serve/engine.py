"""Start, watch and stop vLLM's OpenAI server as a child process.

vLLM listens on a private loopback port: its adapter-loading endpoints load
any path they are given, so only lorastack itself may reach them.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lorastack.errors import EngineError
from lorastack.models import ModelRecord
from lorastack.processes import OFFLINE_ENV, ChildProcess
from lorastack.serve.cpu_lora.plugin import COMPILE_SWITCH
from lorastack.serve.cpu_lora.plugin import SWITCH as LORA_OPS_SWITCH
from lorastack.settings import EngineSettings

logger = logging.getLogger(__name__)

# `gpu_memory_utilization` by device when the settings leave it unset: vLLM's usual share
# of a GPU, and on the CPU the share of RAM its workers still start with.
GPU_MEMORY_UTILIZATION = {"cuda": 0.9, "cpu": 0.3}


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


def build_launch(
    engine: EngineSettings, model: ModelRecord, max_lora_rank: int, *, lora: bool = True
) -> EngineLaunch:
    """Translate settings into vLLM's flags (the CPU build's needs included).

    `lora=False` starts an engine for the base model alone (the benchmark measures what
    enabling LoRA costs it); lorastack serves with LoRA on.
    """
    use_cpu = engine.device == "cpu" or (engine.device == "auto" and not gpu_visible())
    memory = engine.gpu_memory_utilization
    if memory is None:
        memory = GPU_MEMORY_UTILIZATION["cpu" if use_cpu else "cuda"]
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
        str(memory),
        "--dtype",
        engine.dtype,
        "--tensor-parallel-size",
        str(engine.tensor_parallel_size),
        *(_lora_flags(engine, max_lora_rank) if lora else []),
        "--disable-uvicorn-access-log",
        *engine.extra_args,
    ]
    env = {
        **OFFLINE_ENV,
        # Lets the gateway load and unload adapters while the engine runs.
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
        # Read by lorastack's vLLM plugin (serve/cpu_lora/plugin.py) in the engine's processes.
        LORA_OPS_SWITCH: engine.lora_ops,
        COMPILE_SWITCH: "1" if engine.lora_compile else "0",
        "VLLM_LOGGING_LEVEL": engine.log_level,
    }
    if use_cpu:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(engine.cpu_kv_cache_gib)
    return EngineLaunch(
        argv=argv,
        env=env,
        url=f"http://{engine.host}:{engine.port}",
        served_model_name=model.name,
    )


def _lora_flags(engine: EngineSettings, max_lora_rank: int) -> list[str]:
    return [
        "--enable-lora",
        "--max-lora-rank",
        str(max_lora_rank),
        "--max-loras",
        str(engine.max_loras),
        "--max-cpu-loras",
        str(engine.max_cpu_loras),
    ]


@dataclass
class EngineProcess:
    """One running vLLM server; use as a context manager to stop it on every exit path."""

    launch: EngineLaunch
    log_path: Path
    startup_timeout_s: float = 600.0
    child: ChildProcess = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.child = ChildProcess(
            "engine", self.launch.argv, self.log_path, self.launch.env, EngineError
        )

    @property
    def url(self) -> str:
        return self.launch.url

    @property
    def pid(self) -> int | None:
        return self.child.pid

    def start(self) -> None:
        self.child.start()

    def wait_ready(self) -> None:
        """Block until /health answers 200; raise `EngineError` if it dies or times out."""
        self.child.wait_ready(f"{self.url}/health", self.startup_timeout_s, interval_s=1.0)

    def alive(self) -> bool:
        return self.child.alive()

    def stop(self, grace_s: float = 30.0) -> None:
        self.child.stop(grace_s)

    def __enter__(self) -> EngineProcess:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
