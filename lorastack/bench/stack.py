"""What a benchmark run sets up around the engine: a scratch home, gateways, the guard bench.

The run never touches the user's registry: its domains live in a scratch home whose model
store points at the bundled checkpoint in place. Gateways and the guard micro-benchmark run
as their own processes, through the same entry points as in production
(`lorastack serve --upstream`, `lorastack guard bench`): a gateway in the load generator's
process would share its interpreter lock and add waits that no deployment has, and the
guard benchmark pins itself to one core, which must not pin the benchmark.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorastack.bench.adapters import write_random_loras
from lorastack.bench.errors import BenchError
from lorastack.keys import KeyLimits
from lorastack.models import ModelStore
from lorastack.processes import OFFLINE_ENV, ChildProcess, log_tail
from lorastack.progress import NullProgress, Progress
from lorastack.registry import AdapterRegistry

DOMAIN_PREFIX = "bench"
# Small random LoRA weights: vLLM's cost does not depend on them, and the answers stay
# English text a little different from the base model's. Large ones (the tests' 0.5) make
# word salad without spaces, which the guarded path's streaming redactor holds back whole,
# so guarded adapter cases would measure an artefact.
LORA_STD = 0.02


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class BenchHome:
    """A scratch LORASTACK_HOME with the base model and N random domain adapters."""

    home: Path
    base_model: str
    domains: tuple[str, ...]
    adapter_dirs: dict[str, Path]
    """Domain -> its published version 1 (the first domain also has a version 2)."""


def prepare_home(
    home: Path,
    model_name: str,
    checkpoint: Path,
    domains: int,
    max_rank: int,
    seed: int,
    progress: Progress | None = None,
) -> BenchHome:
    """Register the base model and publish `domains` random adapters, plus a second version
    of the first one for the hot-swap case."""
    progress = progress or NullProgress()
    store = ModelStore(home / "models")
    progress.step(f"registering {model_name} in the scratch home")
    store.add(checkpoint, model_name)
    registry = AdapterRegistry(home / "adapters", store, max_rank)
    names = tuple(f"{DOMAIN_PREFIX}-{i}" for i in range(1, domains + 1))
    sources = home / "sources"
    targets = [(sources / name, seed + i) for i, name in enumerate(names, start=1)]
    targets.append((sources / f"{names[0]}-v2", seed + domains + 1))
    progress.step(f"writing {len(targets)} random LoRA adapters")
    write_random_loras(checkpoint, targets, std=LORA_STD)
    adapter_dirs = {}
    for (source, _), name in zip(targets, names, strict=False):
        manifest = registry.publish(source, name, display_name=name, promote="prod")
        adapter_dirs[name] = registry.version_dir(name, manifest.version)
    registry.publish(targets[-1][0], names[0], display_name=names[0])
    return BenchHome(home, model_name, names, adapter_dirs)


def process_env(home: Path, base_model: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a lorastack process working in the scratch `home` (and its own
    database, never the one the user's settings name)."""
    return {
        **os.environ,
        **OFFLINE_ENV,
        "LORASTACK_HOME": str(home),
        "LORASTACK_BASE_MODEL": base_model,
        "LORASTACK_DATABASE_URL": scratch_database(home),
        # `prepare_home` published into the scratch home's folder registry.
        "LORASTACK_REGISTRY__INDEX": "folder",
        **(extra or {}),
    }


def scratch_database(home: Path) -> str:
    return f"sqlite:///{home / 'lorastack.db'}"


def create_limited_key(home: Path) -> str:
    """A key with every kind of limit, none of them reachable in a run: the limited route
    counts each request and answer as a real one would, and is never refused."""
    from lorastack.db import make_engine  # here: SQLAlchemy only for the serving part
    from lorastack.db.key_store import SqlKeyStore

    engine = make_engine(scratch_database(home))
    try:
        limits = KeyLimits(
            rpm=1_000_000, tpm=1_000_000_000, budget_tokens=10**15, budget_period="month"
        )
        _, secret = SqlKeyStore(engine).create("bench-limited", limits=limits)
    finally:
        engine.dispose()
    return secret


@dataclass
class GatewayProcess:
    """`lorastack serve --upstream ENGINE` on a free loopback port, as its own process."""

    home: BenchHome
    upstream: str
    guardrails: bool
    log_path: Path
    admin_key: str
    client_key: str
    port: int = field(default_factory=free_port)
    child: ChildProcess = field(init=False, repr=False)

    def __post_init__(self) -> None:
        env = process_env(
            self.home.home,
            self.home.base_model,
            {
                "LORASTACK_GATEWAY__GUARDRAILS": "true" if self.guardrails else "false",
                "LORASTACK_GATEWAY__ADMIN_KEY": self.admin_key,
                "LORASTACK_GATEWAY__API_KEYS": json.dumps([self.client_key]),
            },
        )
        argv = [sys.executable, "-m", "lorastack.cli", "serve", "--upstream", self.upstream]
        argv += ["--host", "127.0.0.1", "--port", str(self.port)]
        self.child = ChildProcess("gateway", argv, self.log_path, env, BenchError)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.child.start()

    def wait_ready(self, timeout_s: float = 300.0) -> None:
        """Block until its /ready answers 200 (its engine answers too)."""
        self.child.wait_ready(f"{self.url}/ready", timeout_s)

    def stop(self, grace_s: float = 15.0) -> None:
        self.child.stop(grace_s)


def run_guard_bench(
    env: dict[str, str], repeats: int, log_path: Path, timeout_s: float = 600.0
) -> list[dict[str, Any]]:
    """`lorastack guard bench --json` (one core, default policy): its timings per size."""
    argv = [sys.executable, "-m", "lorastack.cli", "guard", "bench", "--json"]
    argv += ["--repeats", str(repeats)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        try:
            done = subprocess.run(
                argv,
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"the guard benchmark took over {timeout_s:.0f} s") from None
    if done.returncode != 0:
        raise BenchError(
            f"the guard benchmark failed (exit code {done.returncode}); last lines of "
            f"{log_path}:\n{log_tail(log_path, 15)}"
        )
    try:
        timings = json.loads(done.stdout)
    except ValueError:
        raise BenchError("the guard benchmark printed something that is not JSON") from None
    if not isinstance(timings, list) or not all(isinstance(t, dict) for t in timings):
        raise BenchError("the guard benchmark printed an unexpected JSON shape")
    return timings


def unique(values: Sequence[int]) -> tuple[int, ...]:
    """`values` without repeats, in their order."""
    return tuple(dict.fromkeys(values))
