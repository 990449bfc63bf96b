import os
import threading
from dataclasses import asdict

import pytest

from lorastack.guardrails.benchmark import (
    SIZES,
    benchmark,
    benchmark_screens,
    pinned,
    process_cores,
    sample_message,
    time_scans,
)
from lorastack.guardrails.guard import Guard
from lorastack.guardrails.policy import GuardPolicy
from tests.fakes import RegexDetector

needs_affinity = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs per-thread CPU affinity and two cores",
)


def _guard() -> Guard:
    return Guard(GuardPolicy(), RegexDetector())


def test_sample_messages_have_the_asked_length_and_personal_data() -> None:
    for words in SIZES.values():
        text = sample_message(words)
        assert len(text.split()) == words
    assert "Jane Porter" in sample_message(12)


@needs_affinity
def test_pinned_moves_threads_started_before_and_restores_them() -> None:
    before = os.sched_getaffinity(0)
    ready, stop = threading.Event(), threading.Event()
    seen: list[set[int]] = []

    def worker() -> None:
        ready.set()
        stop.wait(10)
        seen.append(os.sched_getaffinity(0))

    thread = threading.Thread(target=worker)
    thread.start()
    ready.wait(10)
    try:
        with pinned(1) as cores:
            assert cores == 1
            assert process_cores() == 1
            assert thread.native_id is not None
            assert len(os.sched_getaffinity(thread.native_id)) == 1
    finally:
        stop.set()
        thread.join(10)
    assert os.sched_getaffinity(0) == before
    assert seen == [before]


@needs_affinity
def test_timings_say_on_how_many_cores_they_ran() -> None:
    timings = benchmark(_guard(), repeats=10, cores=1)
    assert [t.name for t in timings] == list(SIZES)
    assert [t.words for t in timings] == list(SIZES.values())
    for timing in timings:
        assert timing.cores == 1
        assert 0 < timing.p50_ms <= timing.p99_ms
    assert process_cores() == len(os.sched_getaffinity(0)) > 1  # unpinned afterwards


@needs_affinity
def test_the_injection_and_leak_screens_are_timed_on_each_size() -> None:
    timings = benchmark_screens(repeats=10, cores=1)
    names = [t.name for t in timings]
    assert names == [
        f"{size}, {screen}" for screen in ("injection screen", "leak screen") for size in SIZES
    ]
    assert [t.words for t in timings] == list(SIZES.values()) * 2
    for timing in timings:
        assert timing.cores == 1
        assert 0 < timing.p50_ms <= timing.p99_ms


def test_time_scans_keeps_its_signature_and_fields() -> None:
    timing = time_scans(_guard(), sample_message(12), "short", repeats=10)
    assert set(asdict(timing)) == {"name", "words", "p50_ms", "p99_ms", "mean_ms", "cores"}
    assert timing.words == 12
