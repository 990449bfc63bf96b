"""One vLLM engine for the integration modules that only talk to one (see conftest.py).

Starting vLLM on the CPU takes about a minute; the feedback loop, the browser test and the
engine tests each need an engine but never stop or restart it, so they share this one.
Their tests run last (`pytest_collection_modifyitems`), so the engine is up only while they
run and never beside the engines other modules start. Each module publishes domains of its
own names: vLLM keeps an adapter under its name (`domain@vN`) for as long as it runs.

The engine starts with lorastack's LoRA resolver on, reading `resolver_home`'s registry:
the engine tests publish there; the other modules load their adapters by path, which the
resolver never sees.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lorastack.models import ModelRecord, ModelStore
from lorastack.serve.engine import EngineProcess, build_launch
from lorastack.serve.lora_resolver import CACHE_ENV, HOME_ENV
from lorastack.settings import load_settings
from tests.servers import free_port

SHARED_ENGINE = "shared_engine"


@dataclass(frozen=True)
class SharedEngine:
    url: str
    port: int
    resolver_home: Path
    """The lorastack home whose registry the engine's LoRA resolver serves by name."""
    resolver_cache: Path
    log: Path


@pytest.fixture(scope="session")
def shared_engine(
    bundled_model: ModelRecord, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedEngine]:
    root = tmp_path_factory.mktemp("shared-engine")
    home = root / "resolver-home"
    ModelStore(home / "models").add(bundled_model.path, bundled_model.name)  # used in place
    settings = load_settings(engine={"port": free_port()})
    launch = build_launch(settings.engine, bundled_model, settings.max_lora_rank)
    cache = root / "resolver-cache"
    # Unbuffered: tests read the engine's log while it runs.
    env = {**launch.env, HOME_ENV: str(home), CACHE_ENV: str(cache), "PYTHONUNBUFFERED": "1"}
    launch = dataclasses.replace(launch, env=env)
    log = root / "engine.log"
    with EngineProcess(launch, log, startup_timeout_s=600) as process:
        yield SharedEngine(process.url, settings.engine.port, home, cache, log)
