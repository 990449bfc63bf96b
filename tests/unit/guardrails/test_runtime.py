"""The process-wide settings the guard runs best with (each test puts them back)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from threadpoolctl import ThreadpoolController

from lorastack.guardrails.runtime import (
    freeze_loaded_objects,
    limit_numpy_blas_threads,
    numpy_blas_single_threaded,
)


@pytest.fixture
def blas_restored() -> Iterator[None]:
    with ThreadpoolController().limit(limits=None):  # gives back the thread counts on exit
        yield


@pytest.mark.usefixtures("blas_restored")
def test_numpy_blas_is_limited_to_one_thread_and_nothing_else_is() -> None:
    others = [i for i in ThreadpoolController().info() if "numpy.libs" not in i["filepath"]]
    assert limit_numpy_blas_threads()
    assert numpy_blas_single_threaded()
    assert [i for i in ThreadpoolController().info() if "numpy.libs" not in i["filepath"]] == others


def test_freezing_moves_what_is_alive_out_of_the_collections() -> None:
    alive = [object() for _ in range(100)]
    try:
        freeze_loaded_objects()
        assert gc.get_freeze_count() >= len(alive)
    finally:
        gc.unfreeze()
