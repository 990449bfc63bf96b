"""The training benchmark's inputs and result shape (the measurement runs in integration)."""

from __future__ import annotations

import pytest

from lorastack.bench.training import TrainingRun, TrainingSpec, synthetic_texts


def test_texts_come_from_the_seed_within_the_bounds() -> None:
    spec = TrainingSpec(min_words=3, max_words=9, seed=5)
    texts = synthetic_texts(50, spec)
    assert texts == synthetic_texts(50, spec)
    assert texts != synthetic_texts(50, TrainingSpec(min_words=3, max_words=9, seed=6))
    lengths = {len(t.split()) for t in texts}
    assert min(lengths) >= 3 and max(lengths) <= 9 and len(lengths) > 3
    assert all(word.startswith("w") for word in texts[0].split())


def test_the_gpu_check_keeps_its_texts() -> None:
    # tests/gpu/check_training.py measured on these texts before it shared this code.
    import random

    rng = random.Random(0)
    before = [
        " ".join(f"w{rng.randrange(4000)}" for _ in range(rng.randint(40, 700))) for _ in range(4)
    ]
    assert synthetic_texts(4, TrainingSpec()) == before


@pytest.mark.parametrize(
    "fields", [{"steps": 0}, {"batch": 0}, {"min_words": 10, "max_words": 5}, {"max_length": 0}]
)
def test_a_spec_that_cannot_run_is_refused(fields: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        TrainingSpec(**fields)


def test_a_run_reports_what_the_gpu_check_reported_and_more() -> None:
    run = TrainingRun(True, 30, 12.5, 12400, 3.8, 155000, "cuda", "cuda_max_allocated")
    data = run.to_dict()
    assert {"packing", "steps", "seconds", "tokens_per_s", "peak_gib"} <= set(data)
    assert data["memory"] == "cuda_max_allocated"
