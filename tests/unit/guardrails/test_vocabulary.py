"""A business's own names: the name-like values recurring across its records."""

from __future__ import annotations

from lorastack.guardrails.entities import Finding
from lorastack.guardrails.vocabulary import recurring_names


def _record(*texts: str) -> list[tuple[str, list[Finding]]]:
    """Each text with a finding for every capitalised run of words in it and "skerry
    point" (a NER stand-in), and an e-mail finding for every word holding an @."""
    import re

    out = []
    for text in texts:
        findings = [
            Finding(m.start(), m.end(), "PERSON", 0.85)
            for m in re.finditer(r"\b[A-Z][a-z]+(?: [A-Z][a-z]+)*|skerry point", text)
        ]
        findings += [
            Finding(m.start(), m.end(), "EMAIL_ADDRESS", 0.9) for m in re.finditer(r"\S+@\S+", text)
        ]
        out.append((text, findings))
    return out


def test_a_value_counts_once_per_record_and_needs_enough_records() -> None:
    records = [_record("Skerry Point to Skerry Point", "via Skerry Point") for _ in range(4)]
    assert recurring_names(records) == []  # 12 findings, but in 4 records
    records.append(_record("skerry point"))
    assert recurring_names(records) == ["Skerry Point"]  # the most common spelling


def test_a_large_dataset_needs_two_percent_of_its_records() -> None:
    quiet = [_record("hello") for _ in range(1470)]
    greeted = [_record("hello Sam") for _ in range(29)]
    assert recurring_names(greeted + quiet) == []  # 29 of 1499 records: under 2%
    assert recurring_names([*greeted, _record("thanks Sam"), *quiet]) == ["Sam"]  # 30 of 1500


def test_only_name_like_values_and_never_the_excluded_ones_most_frequent_first() -> None:
    records = [
        _record("Ask at the Galley Cafe or help@ferry.example", f"Dock {n % 2}", "Sam Barista")
        for n in range(6)
    ]
    records += [_record("Galley Cafe") for _ in range(3)]
    names = recurring_names(records, never=["sam barista"])
    assert names == ["Galley Cafe", "Ask", "Dock"]  # no e-mail, no staff name; ties by name
    assert recurring_names([_record("Nobody")]) == []
    assert recurring_names(records, min_records=7) == ["Galley Cafe"]
