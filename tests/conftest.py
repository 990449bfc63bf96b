"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

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
def bundled_model(tmp_path_factory: pytest.TempPathFactory) -> ModelRecord:
    """The real bundled SmolLM2 checkpoint, converted once per test session."""
    store = ModelStore(tmp_path_factory.mktemp("bundled") / "models")
    record, created = store.pull_bundled()
    assert created
    return record
