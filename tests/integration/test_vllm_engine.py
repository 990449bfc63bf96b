"""The real thing: vLLM on the CPU serving the bundled model, a published adapter loaded at
run time, and, with no gateway in between, registry versions by name through lorastack's
LoRA resolver (an alias and a tampered version refused with clear errors; after v2 is
published and promoted, `coffee@2` serves v2 while `coffee@1` still serves v1).

The integration tests' shared engine (tests/integration/conftest.py), started with the
resolver switched on: the runtime-loading test shows it changes nothing for adapters given
by path.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from lorastack import fsutil
from lorastack.blobs import LocalBlobStore, blob_key
from lorastack.models import ModelRecord, ModelStore
from lorastack.registry import AdapterRegistry
from lorastack.registry.database import DatabaseIndex
from lorastack.serve.lora_resolver import REGISTRY_COPIES
from tests.integration.shared_engine import SharedEngine
from tests.peft_adapters import write_random_lora, write_random_loras
from tests.registries import home_registry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

PROMPT = "The capital of France is"


@dataclass
class Engine:
    url: str
    served: ModelRecord
    """The model the server runs, registered in the home the resolver reads."""
    registry: AdapterRegistry
    """The resolver's registry."""
    cache: Path
    log: Path
    v2: Path
    """A second coffee adapter, published by the resolver test."""


@pytest.fixture(scope="module")
def engine(
    shared_engine: SharedEngine,
    bundled_model: ModelRecord,
    tmp_path_factory: pytest.TempPathFactory,
) -> Engine:
    root = tmp_path_factory.mktemp("vllm-engine")
    store = ModelStore(shared_engine.resolver_home / "models")
    served = store.get(bundled_model.name)
    registry = home_registry(shared_engine.resolver_home, store=store)
    v1, v2, tea = (root / "v1", root / "v2", root / "tea")
    write_random_loras(bundled_model.path, [(v1, 0), (v2, 1), (tea, 2)])
    registry.publish(v1, "coffee", promote="prod")
    published = registry.publish(tea, "tea", promote="prod")
    # Damaged in the blob store, where the engine's registry copies it from.
    backend = registry.backend
    assert isinstance(backend, DatabaseIndex) and isinstance(backend.blobs, LocalBlobStore)
    blobs = backend.blobs
    tampered = blobs.root / blob_key(published.adapter_sha256)
    data = bytearray(tampered.read_bytes())
    data[-1] ^= 0xFF
    tampered.write_bytes(bytes(data))
    return Engine(
        shared_engine.url, served, registry, shared_engine.resolver_cache, shared_engine.log, v2
    )


def _chat(client: httpx.Client, model: str) -> httpx.Response:
    return client.post(
        "/v1/chat/completions",
        json={
            "model": model,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 24,
            "temperature": 0,
        },
    )


def _complete(client: httpx.Client, model: str) -> httpx.Response:
    return client.post(
        "/v1/completions",
        json={"model": model, "prompt": PROMPT, "max_tokens": 16, "temperature": 0},
    )


def _text(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["text"])


def _error(response: httpx.Response) -> str:
    return str(response.json()["error"]["message"])


def test_vllm_serves_the_base_model_and_a_runtime_loaded_adapter(
    engine: Engine, bundled_model: ModelRecord, tmp_path: Path
) -> None:
    store = ModelStore(bundled_model.path.parent)
    registry = AdapterRegistry(tmp_path / "adapters", store, max_rank=16)
    adapter = write_random_lora(bundled_model.path, tmp_path / "trained", seed=0)
    manifest = registry.publish(adapter, "espresso", promote="prod")
    published = registry.version_dir("espresso", manifest.version)
    trained = _trained_adapter(bundled_model, tmp_path)
    trained_manifest = registry.publish(trained, "tickets")
    trained_path = registry.version_dir("tickets", trained_manifest.version)

    with httpx.Client(base_url=engine.url, timeout=120) as client:
        base = _chat(client, bundled_model.name)
        assert base.status_code == 200, base.text
        base_answer = base.json()["choices"][0]["message"]["content"]
        assert "Paris" in base_answer

        loaded = client.post(
            "/v1/load_lora_adapter", json={"lora_name": "espresso", "lora_path": str(published)}
        )
        assert loaded.status_code == 200, loaded.text
        served = {m["id"] for m in client.get("/v1/models").json()["data"]}
        assert {bundled_model.name, "espresso"} <= served

        tuned = _chat(client, "espresso")
        assert tuned.status_code == 200, tuned.text
        assert tuned.json()["model"] == "espresso"
        assert tuned.json()["choices"][0]["message"]["content"] != base_answer

        unloaded = client.post("/v1/unload_lora_adapter", json={"lora_name": "espresso"})
        assert unloaded.status_code == 200, unloaded.text
        # Unknown to vLLM and to the resolver's registry: not found.
        assert _chat(client, "espresso").status_code == 404

        # An adapter that `lorastack train` produced loads and answers too.
        loaded = client.post(
            "/v1/load_lora_adapter", json={"lora_name": "tickets", "lora_path": str(trained_path)}
        )
        assert loaded.status_code == 200, loaded.text
        answer = _chat(client, "tickets")
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"]


def test_a_plain_vllm_server_serves_domain_versions_from_the_registry(engine: Engine) -> None:
    registry, cache = engine.registry, engine.cache
    with httpx.Client(base_url=engine.url, timeout=120) as client:
        base = _text(_complete(client, engine.served.name))
        first = _text(_complete(client, "coffee@1"))
        assert first != base
        cached = [
            path
            for path in cache.iterdir()
            if path.is_dir() and not path.name.startswith(".") and path.name != REGISTRY_COPIES
        ]
        assert len(cached) == 1
        v1_sha = registry.manifest("coffee", 1).adapter_sha256
        assert fsutil.sha256_file(cached[0] / "adapter_model.safetensors") == v1_sha

        alias = _complete(client, "coffee@prod")
        assert alias.status_code == 400, alias.text
        assert "`coffee@prod` names an alias" in _error(alias)
        assert "it points to coffee@v1 now" in _error(alias)

        bad = _complete(client, "tea@v1")
        assert bad.status_code == 500, bad.text
        # The client gets no store path; the server's log says which blob is damaged.
        assert _error(bad) == (
            "`tea@v1` cannot be served: the lorastack registry could not be read "
            "(the server's log says why)"
        )

        registry.publish(engine.v2, "coffee", promote="prod")
        second = _text(_complete(client, "coffee@2"))
        assert second != first
        assert _text(_complete(client, "coffee@1")) == first
        alias = _complete(client, "coffee@prod")
        assert alias.status_code == 400 and "it points to coffee@v2 now" in _error(alias)

        models = {m["id"] for m in client.get("/v1/models").json()["data"]}
        assert {"coffee@1", "coffee@2"} <= models
        assert not {"coffee@prod", "tea@v1"} & models

    # The API server's lines (the one process that resolves); the start-up line comes from
    # whichever vLLM process loads plugins after logging is set up, so the unit tests check it.
    lines = engine.log.read_text(errors="replace")
    assert "resolved coffee@1 to coffee@v1 (copied into the cache" in lines
    assert re.search(r"refused tea@v1: blob store .* does not match its digest", lines)


def _trained_adapter(bundled_model: ModelRecord, tmp_path: Path) -> Path:
    """Two steps of `sft` training with all-linear LoRA: the adapter a user would publish."""
    import json

    from lorastack.train.config import build_config
    from lorastack.train.trainer import RunPaths, run_training

    data = tmp_path / "data"
    data.mkdir()
    records = [
        {"prompt": f"Ticket {i}: refund please\nTeam:", "completion": " billing"} for i in range(6)
    ]
    for split in ("train", "validation", "test"):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    config = build_config(
        {
            "domain": "tickets",
            "data": str(data),
            "mode": "sft",
            "training": {
                "max_steps": 2,
                "eval_steps": 1,
                "save_steps": 1,
                "max_length": 64,
                "per_device_train_batch_size": 2,
            },
        }
    )
    result = run_training(
        config,
        RunPaths(tmp_path / "run"),
        ModelStore(bundled_model.path.parent),
        bundled_model.name,
        16,
    )
    return result.paths.adapter
