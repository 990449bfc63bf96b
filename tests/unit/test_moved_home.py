"""A LORASTACK_HOME moved to another folder (a restored backup, a volume mounted at another
path) keeps working: its models, its adapters and the gateway serving them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest

from lorastack import fsutil, models
from lorastack.models import METADATA_FILE, ModelStore
from lorastack.registry import open_registry
from lorastack.serve import engine as engine_module
from lorastack.serve.app import build_gateway, create_app, engine_client
from lorastack.serve.engine import build_launch
from lorastack.settings import BUNDLED_MODEL_NAME, get_settings, load_settings
from lorastack.validation import validate_adapter
from tests.fake_upstream import FakeUpstream
from tests.fakes import RegexDetector, write_adapter, write_base_checkpoint
from tests.servers import serve_in_thread


def _move_home(old: Path, new: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.move(old, new)
    monkeypatch.setenv("LORASTACK_HOME", str(new))
    get_settings.cache_clear()


def _recorded_path(store: ModelStore, name: str) -> str:
    return str(json.loads((store.root / name / METADATA_FILE).read_text())["path"])


def test_a_moved_home_validates_publishes_and_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / "home"
    store = ModelStore(old / "models")
    checkpoint = write_base_checkpoint(old / "checkpoints" / "tiny")
    store.add(checkpoint, "tiny")
    assert _recorded_path(store, "tiny") == "checkpoints/tiny"
    registry = open_registry(load_settings(), store)  # the database index under the home
    made_before = write_adapter(tmp_path / "before", str(checkpoint.resolve()), seed=1)
    registry.publish(made_before, "coffee-shop", promote="prod")
    not_yet_published = write_adapter(tmp_path / "later", str(checkpoint.resolve()), seed=3)

    new = tmp_path / "restored" / "lorastack"
    _move_home(old, new, monkeypatch)
    store = ModelStore(new / "models")
    record = store.get("tiny")
    assert record.path == new / "checkpoints" / "tiny"
    registry = open_registry(load_settings(), store)

    # An adapter trained on the moved checkpoint names it by its new path.
    made_after = write_adapter(tmp_path / "after", str(record.path), seed=2)
    assert validate_adapter(made_after, store, 16).base_model.name == "tiny"
    manifest = registry.publish(made_after, "coffee-shop", promote="prod")
    assert manifest.version == 2
    # One made before the move names the checkpoint's old path, which is gone.
    assert registry.publish(not_yet_published, "ledger-desk").base_model.name == "tiny"
    assert store.find(str(tmp_path / "gone" / "tiny")) is None

    settings = load_settings(base_model="tiny", gateway={"admin_key": "admin-key-0123456789"})
    assert settings.home == new
    monkeypatch.setattr(engine_module, "gpu_visible", lambda: False)
    launch = build_launch(settings.engine, store.get(settings.base_model), 16)
    assert launch.argv[launch.argv.index("--model") + 1] == str(new / "checkpoints" / "tiny")
    with FakeUpstream(base_model="tiny") as fake:
        client = engine_client(30.0)
        gateway = build_gateway(settings, [fake.url], client, detector=RegexDetector())
        app = create_app(gateway, settings.gateway.max_body_bytes, client)
        with serve_in_thread(app) as url:
            body = {"model": "coffee-shop", "messages": [{"role": "user", "content": "Hi"}]}
            answer = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30.0)
        assert answer.status_code == 200, answer.text
        assert "echo from coffee-shop@v2" in answer.json()["choices"][0]["message"]["content"]
        assert fake.loaded["coffee-shop@v2"] == str(
            new / "cache" / "adapters" / "coffee-shop" / "v2"
        )


def _fake_bundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`pull_bundled` converts a fake GGUF file into the tiny checkpoint."""
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"not really a model")
    monkeypatch.setattr(models, "bundled_gguf_path", lambda: gguf)
    monkeypatch.setattr(models, "BUNDLED_GGUF_SHA256", fsutil.sha256_file(gguf))
    monkeypatch.setattr(
        models, "convert_gguf_checkpoint", lambda source, out: write_base_checkpoint(out)
    )


def test_a_pulled_model_is_found_in_a_moved_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_bundled(tmp_path, monkeypatch)
    old, new = tmp_path / "home", tmp_path / "elsewhere"
    ModelStore(old / "models").pull_bundled()
    _move_home(old, new, monkeypatch)
    store = ModelStore(new / "models")
    assert _recorded_path(store, BUNDLED_MODEL_NAME) == f"models/{BUNDLED_MODEL_NAME}"
    record = store.get(BUNDLED_MODEL_NAME)
    assert record.path == new / "models" / BUNDLED_MODEL_NAME
    assert store.find(str(record.path)) == record
    again, created = store.pull_bundled()
    assert (again, created) == (record, False)


def test_records_with_absolute_paths_are_still_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stores written before paths were relative: an added model outside the home is read
    as recorded; a pulled one, whose checkpoint is its own folder, is found after a move."""
    _fake_bundled(tmp_path, monkeypatch)
    old, new = tmp_path / "home", tmp_path / "elsewhere"
    store = ModelStore(old / "models")
    pulled, _ = store.pull_bundled()
    outside = write_base_checkpoint(tmp_path / "outside")
    added = store.add(outside, "tiny")
    for record in (pulled, added):
        meta = store.root / record.name / METADATA_FILE
        data = json.loads(meta.read_text())
        data["path"] = str(record.path.resolve())  # as older versions wrote it
        meta.write_text(json.dumps(data))
    _move_home(old, new, monkeypatch)
    store = ModelStore(new / "models")
    assert store.get("tiny").path == outside.resolve()
    assert store.get(BUNDLED_MODEL_NAME).path == new / "models" / BUNDLED_MODEL_NAME
