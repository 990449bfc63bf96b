"""Time per scan, for short, medium and long messages: the guard's micro-benchmark.

The target (issue 8) is a time on one core, so `pinned` confines every thread
of the process, the detection threads included, to that many cores while the
scans are timed, and each `ScanTiming` says how many cores the scanning could
use.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lorastack.guardrails.guard import Guard
from lorastack.guardrails.injection import find_injection
from lorastack.guardrails.leaks import leak_index
from lorastack.stats import percentile

_SENTENCES = (
    "Hi, this is Jane Porter and my order has not arrived yet.",
    "You can call me on 020 7946 0958 or write to jane.porter@example.com any time.",
    "I ordered two bags of the house espresso blend and a grinder last Tuesday.",
    "The tracking page has said the parcel is in transit for five days now.",
    "My card ending 4242 was charged twice, so please check the payment as well.",
    "We moved from Leeds to Bristol in the spring, so maybe the old address is still on file.",
    "Could you also confirm whether the loyalty points were added to my account?",
    "Thanks a lot for your help, the baristas in the shop are always lovely.",
)


def sample_message(words: int) -> str:
    """A support message of about `words` words, with a few personal details in it."""
    text: list[str] = []
    index = 0
    while sum(len(s.split()) for s in text) < words:
        text.append(_SENTENCES[index % len(_SENTENCES)])
        index += 1
    return " ".join(" ".join(text).split()[:words])


@dataclass(frozen=True)
class ScanTiming:
    name: str
    words: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    cores: int | None = None
    """CPU cores the process's threads could run on while timing (None: not known here)."""


def _thread_ids() -> list[int]:
    try:
        return [int(task.name) for task in Path("/proc/self/task").iterdir()]
    except OSError:
        return [0]  # the calling thread


def process_cores() -> int | None:
    """How many CPU cores this process's threads may run on, together (None: not known)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cores: set[int] = set()
    for tid in _thread_ids():
        try:
            cores |= os.sched_getaffinity(tid)
        except OSError:
            continue  # the thread has ended
    return len(cores) or None


def _set_affinity(cpus_for: dict[int, set[int]], default: set[int]) -> None:
    for tid in _thread_ids():
        try:
            os.sched_setaffinity(tid, cpus_for.get(tid, default))
        except OSError:
            continue  # the thread has ended


@contextmanager
def pinned(cores: int = 1) -> Iterator[int | None]:
    """Run this process on its first `cores` allowed CPU cores until the block ends.

    Every existing thread is moved (Linux sets affinity per thread, so pinning
    only the caller leaves BLAS and detection threads on the other cores) and
    threads started inside inherit it; PyTorch, if loaded, uses as many
    threads. Yields the number of cores now usable (None where affinity is not
    supported); the previous affinity and thread count come back afterwards.
    """
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    previous = os.sched_getaffinity(0)
    before = {}
    for tid in _thread_ids():
        try:
            before[tid] = os.sched_getaffinity(tid)
        except OSError:
            continue  # the thread has ended
    allowed = set(sorted(previous)[:cores])
    torch = sys.modules.get("torch")  # set its threads if loaded; never load it for this
    torch_threads = torch.get_num_threads() if torch is not None else None
    try:
        _set_affinity({}, allowed)
        if torch is not None:
            torch.set_num_threads(len(allowed))
        yield process_cores()
    finally:
        # Threads started inside the block get the caller's former affinity.
        _set_affinity(before, previous)
        if torch is not None and torch_threads is not None:
            torch.set_num_threads(torch_threads)


def time_scans(guard: Guard, text: str, name: str, repeats: int = 200) -> ScanTiming:
    """Scan `text` `repeats` times after a warm-up; report per-scan latencies."""
    return time_calls(guard.find, text, name, repeats)


def time_calls(scan: Callable[[str], object], text: str, name: str, repeats: int) -> ScanTiming:
    """Call `scan(text)` `repeats` times after a warm-up; report per-call latencies."""
    for _ in range(min(10, repeats)):
        scan(text)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        scan(text)
        samples.append((time.perf_counter() - start) * 1000)
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    if p50 is None or p99 is None:
        raise ValueError("repeats must be at least 1")
    return ScanTiming(
        name=name,
        words=len(text.split()),
        p50_ms=p50,
        p99_ms=p99,
        mean_ms=statistics.fmean(samples),
        cores=process_cores(),
    )


SIZES = {"short": 12, "medium": 50, "long": 200}
"""The message sizes `benchmark` times, in words, by name."""


def benchmark(guard: Guard, repeats: int = 200, cores: int | None = 1) -> list[ScanTiming]:
    """Time `guard`'s scans of each of `SIZES` on `cores` cores (None: as the process runs)."""
    if cores is None:
        guard.find(sample_message(5))  # loads the models
        return [time_scans(guard, sample_message(w), n, repeats) for n, w in SIZES.items()]
    with pinned(cores):
        return benchmark(guard, repeats, None)


SCREEN_PROMPT = (
    "You are the barista of Bean There, a coffee shop. Answer in one short, cheerful "
    "sentence about coffee, and never share the staff rota or the supplier's prices."
)
"""The system prompt whose leaks the leak screen looks for in the timed messages."""


def benchmark_screens(repeats: int = 200, cores: int | None = 1) -> list[ScanTiming]:
    """Time the prompt-injection screen (user messages) and the system-prompt leak screen
    (answers) on each of `SIZES`, named `<size>, injection screen` and `<size>, leak screen`:
    what they add to a request besides the personal-data scan."""
    if cores is not None:
        with pinned(cores):
            return benchmark_screens(repeats, None)
    leaks = leak_index(SCREEN_PROMPT)
    screens: dict[str, Callable[[str], object]] = {
        "injection screen": find_injection,
        "leak screen": leaks.find,
    }
    return [
        time_calls(scan, sample_message(words), f"{size}, {screen}", repeats)
        for screen, scan in screens.items()
        for size, words in SIZES.items()
    ]
