"""Registries on the database index for tests: SQLite (or a given URL) and a blob folder."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lorastack.models import ModelStore
from lorastack.registry import AdapterRegistry, open_registry
from lorastack.registry.database import DatabaseIndex
from lorastack.settings import Settings, load_settings


def database_settings(**overrides: Any) -> Settings:
    """The test's settings (its LORASTACK_HOME) with the registry's index in the database:
    `<home>/lorastack.db` unless `database_url` is given, blobs under `<home>/blobs`."""
    registry = {"index": "database", **overrides.pop("registry", {})}
    return load_settings(registry=registry, **overrides)


@contextmanager
def database_registry(store: ModelStore, **overrides: Any) -> Iterator[AdapterRegistry]:
    """A registry on the database index, its engine disposed of on exit."""
    registry = open_registry(database_settings(**overrides), store, max_rank=16)
    assert isinstance(registry.backend, DatabaseIndex)
    try:
        yield registry
    finally:
        registry.backend.engine.dispose()
