"""Splitting a dataset into train, validation and test: sizes, labels and positions.

Deterministic for a seed; stratified by label when the records look like a
classification task, so every split holds each label in proportion.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from typing import cast

from lorastack.train.data.records import DataError, Record, record_label

# Stratify when completions look like labels: few distinct values, each seen twice or more.
MAX_STRATIFY_LABELS = 20


def parse_split(text: str) -> tuple[float, float, float]:
    """ "0.8,0.1,0.1" (or percentages, "80,10,10") as three fractions summing to 1."""
    try:
        parts = [float(part) for part in text.split(",")]
    except ValueError:
        raise DataError(f"split {text!r}: expected three numbers like 0.8,0.1,0.1") from None
    if len(parts) != 3:
        raise DataError(f"split {text!r}: expected three numbers (train, validation, test)")
    total = sum(parts)
    if math.isclose(total, 100, abs_tol=1e-6):
        parts = [part / 100 for part in parts]
    train, validation, test = parts
    return (train, validation, test)


def check_fractions(fractions: tuple[float, float, float]) -> None:
    if any(not math.isfinite(f) or f < 0 for f in fractions):
        raise DataError(f"split {fractions}: fractions must be non-negative numbers")
    if not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise DataError(f"split {fractions}: fractions must add up to 1")
    if fractions[0] <= 0:
        raise DataError("split: the train fraction must be above 0")


def split_sizes(count: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Train, validation and test sizes for `count` records.

    Train is never empty; with 3 records or more, validation and test get at
    least one each when their fraction is above 0, so a tiny dataset still has
    something to evaluate on.
    """
    _, validation_fraction, test_fraction = fractions
    validation = math.floor(count * validation_fraction + 0.5)
    test = math.floor(count * test_fraction + 0.5)
    if count >= 3:
        validation = max(validation, 1 if validation_fraction > 0 else 0)
        test = max(test, 1 if test_fraction > 0 else 0)
    while count - validation - test < 1 and (validation or test):
        if test >= validation:
            test -= 1
        else:
            validation -= 1
    return count - validation - test, validation, test


def stratify_labels(records: Sequence[Record]) -> list[str] | None:
    """Each record's label when the data is classification-like, else None.

    Classification-like: prompt/completion records whose completions take at
    most `MAX_STRATIFY_LABELS` distinct values, each at least twice.
    """
    labels = [record_label(record) for record in records]
    if not labels or any(label is None for label in labels):
        return None
    counts = Counter(cast(list[str], labels))
    if len(counts) > MAX_STRATIFY_LABELS or min(counts.values()) < 2:
        return None
    return cast(list[str], labels)


def split_indices(
    count: int,
    fractions: tuple[float, float, float],
    seed: int,
    labels: Sequence[str] | None = None,
) -> tuple[list[int], list[int], list[int]]:
    """Deterministic train/validation/test positions of `count` records.

    With labels, each label's records are shuffled and spread evenly over one
    ordering (record j of n gets position (j + 0.5) / n), so every slice of it
    holds each label in proportion; validation and test are the first slices.
    """
    rng = random.Random(seed)
    _, validation_size, test_size = split_sizes(count, fractions)
    if labels is None:
        order = list(range(count))
        rng.shuffle(order)
    else:
        groups: dict[str, list[int]] = {}
        for index, label in enumerate(labels):
            groups.setdefault(label, []).append(index)
        keyed: list[tuple[float, float, int]] = []
        for label in sorted(groups):
            members = groups[label]
            rng.shuffle(members)
            tiebreak = rng.random()  # labels at the same position take turns at random
            keyed.extend(
                ((j + 0.5) / len(members), tiebreak, index) for j, index in enumerate(members)
            )
        order = [index for *_, index in sorted(keyed)]
    validation = order[:validation_size]
    test = order[validation_size : validation_size + test_size]
    train = order[validation_size + test_size :]
    for part in (train, validation, test):
        rng.shuffle(part)
    return train, validation, test
