"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lorastack import models
from lorastack.models import ModelRecord, ModelStore
from lorastack.registry import AdapterRegistry, open_registry
from lorastack.settings import get_settings
from tests.fakes import RegexDetector, write_base_checkpoint

# A real PostgreSQL server for the tests that name these fixtures (tests/postgres.py).
from tests.postgres import postgres_server, postgres_url  # noqa: F401

# A real Redis server, for the rate limits kept there (tests/redis_server.py).
from tests.redis_server import redis_url  # noqa: F401

# Nothing in the test suite may reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test gets its own LORASTACK_HOME and re-reads the settings."""
    for name in list(os.environ):
        if name.startswith("LORASTACK_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LORASTACK_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def store(home: Path) -> ModelStore:
    return ModelStore(home / "models")


@pytest.fixture
def fake_base(store: ModelStore, tmp_path: Path) -> ModelRecord:
    """A tiny Llama-shaped checkpoint registered as base model `tiny`."""
    return store.add(write_base_checkpoint(tmp_path / "tiny-checkpoint"), "tiny")


@pytest.fixture
def registry(store: ModelStore, fake_base: ModelRecord) -> AdapterRegistry:
    """The registry the settings give (the database index, by default): the one the
    gateway and the commands under test open."""
    return open_registry(get_settings(), store, max_rank=16)


@pytest.fixture
def fake_pii_detector(monkeypatch: pytest.MonkeyPatch) -> RegexDetector:
    """The commands' PII detector is the regex fake (returned) instead of Presidio."""
    from lorastack.cli import context

    detector = RegexDetector()
    monkeypatch.setattr(context, "pii_detector", lambda: detector)
    return detector


@pytest.fixture(scope="session")
def bundled_model(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> ModelRecord:
    """The real bundled SmolLM2 checkpoint, in a store of this session's own.

    Converting it takes most of a minute, and `make test` has three sessions that want it
    (two unit workers, then the integration tests): it is converted once per checkout into
    pytest's cache, keyed by the GGUF and the converter's code, and copied from there.
    """
    # pytest sets `config.cache` only while its cache plugin is on.
    pytest_cache = getattr(pytestconfig, "cache", None)
    if pytest_cache is not None:
        cache = pytest_cache.mkdir("bundled-model")
    else:  # pytest's cache is off (-p no:cacheprovider)
        cache = tmp_path_factory.mktemp("bundled-cache")
    key = _conversion_key()
    for stale in cache.iterdir():  # converted by an older converter: 270 MB each
        if stale.name != key:
            shutil.rmtree(stale, ignore_errors=True)
    source = _converted_once(cache / key)
    store = ModelStore(tmp_path_factory.mktemp("bundled") / "models")
    shutil.copytree(source.path, store.root / source.path.name)
    record, created = store.pull_bundled()
    assert not created and record.checkpoint_sha256 == source.checkpoint_sha256
    return record


def _conversion_key() -> str:
    """What the converted checkpoint depends on: the GGUF, and how it is converted."""
    converter = hashlib.sha256(Path(models.__file__).read_bytes()).hexdigest()
    return f"{models.BUNDLED_GGUF_SHA256[:16]}-{converter[:16]}"


def _converted_once(home: Path) -> ModelRecord:
    """The bundled model converted in `home` (by whichever process comes first: the store
    converts under a file lock, and the others then find it done)."""
    record, _ = ModelStore(home / "models").pull_bundled()
    return record
