"""Integration fixtures: the shared engine (shared_engine.py), whose tests run last."""

from __future__ import annotations

import pytest

from tests.integration.shared_engine import SHARED_ENGINE, shared_engine

__all__ = ["shared_engine"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The shared engine's tests last, in their usual order (the sort is stable)."""
    items.sort(key=lambda item: SHARED_ENGINE in getattr(item, "fixturenames", ()))
