"""Registries on the database index for tests: SQLite (or a given URL) and a blob folder."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lorastack.models import ModelStore
from lorastack.registry import AdapterRegistry, open_database_index, open_registry
from lorastack.registry.database import DatabaseIndex
from lorastack.settings import Settings, load_settings


def database_settings(**overrides: Any) -> Settings:
    """The test's settings (its LORASTACK_HOME) with the registry's index in the database:
    `<home>/lorastack.db` unless `database_url` is given, blobs under `<home>/blobs`."""
    registry = {"index": "database", **overrides.pop("registry", {})}
    return load_settings(registry=registry, **overrides)


@contextmanager
def database_registry(store: ModelStore, **overrides: Any) -> Iterator[AdapterRegistry]:
    """A registry on the database index, its engine disposed of on exit. It leaves a folder
    registry in the home where it is (`open_registry` would move it in)."""
    registry = AdapterRegistry(open_database_index(database_settings(**overrides)), store, 16)
    assert isinstance(registry.backend, DatabaseIndex)
    try:
        yield registry
    finally:
        registry.backend.engine.dispose()


def home_registry(
    home: Path,
    *,
    store: ModelStore | None = None,
    database_url: str | None = None,
    max_rank: int = 16,
) -> AdapterRegistry:
    """The registry a lorastack process working in `home` opens with the default settings
    (the database index, on `database_url` when given): where a test publishes for a
    gateway, an engine or a command it runs there. `store`: the models, when not the
    home's own."""
    settings = load_settings(home=home, database_url=database_url)
    return open_registry(settings, store or ModelStore(settings.models_dir), max_rank=max_rank)
