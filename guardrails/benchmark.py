"""Time per scan, for short, medium and long messages: the guard's micro-benchmark."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from lorastack.guardrails.guard import Guard

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


def time_scans(guard: Guard, text: str, name: str, repeats: int = 200) -> ScanTiming:
    """Scan `text` `repeats` times after a warm-up; report per-scan latencies."""
    for _ in range(min(10, repeats)):
        guard.find(text)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        guard.find(text)
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return ScanTiming(
        name=name,
        words=len(text.split()),
        p50_ms=statistics.median(samples),
        p99_ms=samples[min(len(samples) - 1, int(len(samples) * 0.99))],
        mean_ms=statistics.fmean(samples),
    )
