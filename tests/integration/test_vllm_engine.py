"""The real thing: vLLM on the CPU serving the bundled model and a published adapter."""

from pathlib import Path

import httpx
import pytest

from lorastack.models import ModelRecord, ModelStore
from lorastack.registry import AdapterRegistry
from lorastack.serve.engine import EngineProcess, build_launch
from lorastack.settings import load_settings
from tests.peft_adapters import write_random_lora
from tests.servers import free_port

pytestmark = pytest.mark.integration


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


def test_vllm_serves_the_base_model_and_a_runtime_loaded_adapter(
    bundled_model: ModelRecord, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ModelStore(bundled_model.path.parent)
    registry = AdapterRegistry(tmp_path / "adapters", store, max_rank=16)
    adapter = write_random_lora(bundled_model.path, tmp_path / "trained", seed=0)
    manifest = registry.publish(adapter, "coffee", promote="prod")
    published = registry.version_dir("coffee", manifest.version)
    trained = _trained_adapter(bundled_model, tmp_path)
    trained_manifest = registry.publish(trained, "tickets")
    trained_path = registry.version_dir("tickets", trained_manifest.version)

    monkeypatch.setenv("LORASTACK_ENGINE__PORT", str(free_port()))
    settings = load_settings()
    launch = build_launch(settings.engine, bundled_model, settings.max_lora_rank)
    engine = EngineProcess(launch, tmp_path / "engine.log", startup_timeout_s=600)

    with engine, httpx.Client(base_url=engine.url, timeout=120) as client:
        base = _chat(client, bundled_model.name)
        assert base.status_code == 200, base.text
        base_answer = base.json()["choices"][0]["message"]["content"]
        assert "Paris" in base_answer

        loaded = client.post(
            "/v1/load_lora_adapter", json={"lora_name": "coffee", "lora_path": str(published)}
        )
        assert loaded.status_code == 200, loaded.text
        served = {m["id"] for m in client.get("/v1/models").json()["data"]}
        assert {bundled_model.name, "coffee"} <= served

        tuned = _chat(client, "coffee")
        assert tuned.status_code == 200, tuned.text
        assert tuned.json()["model"] == "coffee"
        assert tuned.json()["choices"][0]["message"]["content"] != base_answer

        unloaded = client.post("/v1/unload_lora_adapter", json={"lora_name": "coffee"})
        assert unloaded.status_code == 200, unloaded.text
        assert _chat(client, "coffee").status_code == 404

        # An adapter that `lorastack train` produced loads and answers too.
        loaded = client.post(
            "/v1/load_lora_adapter", json={"lora_name": "tickets", "lora_path": str(trained_path)}
        )
        assert loaded.status_code == 200, loaded.text
        answer = _chat(client, "tickets")
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"]


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
