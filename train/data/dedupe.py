"""Duplicate records: exact, near-exact (trivial edits) and fuzzy (similar wording).

The first of each group of duplicates is kept, in input order. Exact and
near-exact duplicates share a key; fuzzy ones are records whose word 3-gram
sets have a Jaccard similarity at or above a threshold, found with MinHash
locality-sensitive hashing (`datasketch`) and each confirmed exactly.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence

from lorastack.train.data.records import Record, record_format, record_label, record_turns

_NOT_WORD = re.compile(r"[^\w\s]|_")
_SHINGLE_WORDS = 3
_PERMUTATIONS = 128
# A pair at the threshold becomes a candidate this often (or more); candidates are then
# checked exactly, so the threshold means what it says.
_RECALL = 0.999


def _loose(text: str) -> str:
    """Case, punctuation, symbols and whitespace ignored: trivial edits give the same key."""
    return " ".join(_NOT_WORD.sub("", text.casefold()).split())


def exact_key(record: Record) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False)


def _label(record: Record) -> str | None:
    """An unpaired preference's label: the same answer rated good once and bad once is two
    examples, never duplicates of each other, however alike their texts."""
    return record_label(record) if record_format(record) == "unpaired-preference" else None


def near_key(record: Record) -> str:
    key = "\x1f".join(f"{role}\x1e{_loose(text)}" for role, text in record_turns(record))
    label = _label(record)
    return key if label is None else f"{key}\x1flabel\x1e{label}"


def shingles(record: Record) -> frozenset[str]:
    """Word 3-grams of a record's loose text, each turn tagged with its role (and each
    3-gram with the record's label, if it has one: records of two labels share none)."""
    words: list[str] = []
    for role, text in record_turns(record):
        words.append(f"<{role}>")
        words.extend(_loose(text).split())
    if len(words) <= _SHINGLE_WORDS:
        grams = [" ".join(words)]
    else:
        grams = [
            " ".join(words[i : i + _SHINGLE_WORDS]) for i in range(len(words) - _SHINGLE_WORDS + 1)
        ]
    label = _label(record)
    return frozenset(grams if label is None else (f"<{label}> {gram}" for gram in grams))


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def _bands(threshold: float) -> tuple[int, int]:
    """LSH bands and rows: the most rows per band (the fewest chance candidates) with
    which a pair whose similarity is `threshold` still becomes a candidate `_RECALL` of
    the time (a pair is one when all rows of any band agree). Two bands at least:
    datasketch's minimum."""
    for rows in range(_PERMUTATIONS // 2, 1, -1):
        bands = _PERMUTATIONS // rows
        if 1 - (1 - threshold**rows) ** bands >= _RECALL:
            return bands, rows
    return _PERMUTATIONS, 1


def fuzzy_duplicates(records: Sequence[Record], threshold: float) -> list[bool]:
    """For each record, whether an earlier kept one has word-shingle Jaccard >= threshold."""
    # Slow to import (it pulls in scipy): only when fuzzy deduplication is asked for.
    from datasketch import MinHash, MinHashLSH

    index = MinHashLSH(num_perm=_PERMUTATIONS, params=_bands(threshold))
    # Fixed seed and hash function: the same data gives the same result in every process.
    # Copies share the template's permutations instead of drawing them again.
    template = MinHash(num_perm=_PERMUTATIONS)
    kept: dict[int, frozenset[str]] = {}
    duplicate: list[bool] = []
    for position, record in enumerate(records):
        items = shingles(record)
        signature = template.copy()
        signature.update_batch(item.encode() for item in sorted(items))
        candidates = index.query(signature)
        if any(_jaccard(items, kept[other]) >= threshold for other in candidates):
            duplicate.append(True)
            continue
        duplicate.append(False)
        kept[position] = items
        index.insert(position, signature)
    return duplicate


def deduplicate(
    records: Sequence[Record], threshold: float | None
) -> tuple[list[int], Counter[str]]:
    """The positions of the records to keep, and how many were dropped for each reason.

    Reasons: `duplicate_exact`, `duplicate_near` and (with a `threshold`)
    `duplicate_fuzzy`.
    """
    exact: set[str] = set()
    near: set[str] = set()
    dropped: Counter[str] = Counter()
    kept: list[int] = []
    for position, record in enumerate(records):
        key = exact_key(record)
        if key in exact:
            dropped["duplicate_exact"] += 1
            continue
        exact.add(key)
        loose = near_key(record)
        if loose in near:
            dropped["duplicate_near"] += 1
            continue
        near.add(loose)
        kept.append(position)
    if threshold is not None:
        flags = fuzzy_duplicates([records[i] for i in kept], threshold)
        dropped["duplicate_fuzzy"] += sum(flags)
        kept = [i for i, duplicate in zip(kept, flags, strict=True) if not duplicate]
    return kept, dropped
