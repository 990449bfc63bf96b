"""Apply a guard's input policy to training records, keeping each record's shape.

Each record is one conversation: its values get consistent placeholders, the
same ones the gateway will put in prompts at serving time, so the model learns
to work with placeholders rather than with people's data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from lorastack.guardrails.entities import Direction, Finding
from lorastack.guardrails.guard import Guard
from lorastack.guardrails.vault import Vault
from lorastack.guardrails.vocabulary import recurring_names
from lorastack.texts import business_texts, map_record, record_texts


@dataclass
class ScrubReport:
    records: int = 0
    records_changed: int = 0
    records_dropped: int = 0
    """Records holding data the policy blocks: left out of the training set."""
    entities: Counter[str] = field(default_factory=Counter)
    blocked: Counter[str] = field(default_factory=Counter)
    vocabulary: list[str] = field(default_factory=list)
    """The business's own names left unmasked (`scrub_records(learn_vocabulary=True)`)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "records_changed": self.records_changed,
            "records_dropped": self.records_dropped,
            "entities": dict(sorted(self.entities.items())),
            "blocked": dict(sorted(self.blocked.items())),
            "vocabulary": list(self.vocabulary),
        }


class _Blocked(Exception):
    pass


SCRUB_BATCH = 64
"""Records whose texts are detected together (`scrub_records`)."""


def scrub_records(
    records: Sequence[dict[str, Any]],
    guard: Guard,
    report: ScrubReport,
    learn_vocabulary: bool = False,
) -> Iterator[dict[str, Any] | None]:
    """`scrub_record` of each record, in order, `SCRUB_BATCH` records' texts detected at
    once (`Guard.find_many`), each distinct text once: a system prompt that every chat
    repeats is scanned once a batch, and spaCy's NER runs over the batch together.

    `learn_vocabulary`: first detect in every record, then leave the names that recur
    across them unmasked (the business's own, guardrails/vocabulary.py; listed in
    `report.vocabulary`). Holds every text's findings until the end, where without it
    records stream through a batch at a time.
    """
    if learn_vocabulary:
        yield from _scrub_with_vocabulary(records, guard, report)
        return
    for batch in _batches(records):
        find = _finder(batch, guard)
        for record in batch:
            yield _scrub(record, guard, report, find)


def _batches(records: Sequence[dict[str, Any]]) -> Iterator[Sequence[dict[str, Any]]]:
    for first in range(0, len(records), SCRUB_BATCH):
        yield records[first : first + SCRUB_BATCH]


def _finder(batch: Sequence[dict[str, Any]], guard: Guard) -> Callable[[str], list[Finding] | None]:
    """What `guard` finds in each text of `batch` (None for every text: detection failed
    and the policy fails open)."""
    texts = list(dict.fromkeys(text for record in batch for text in record_texts(record)))
    found = guard.find_many_or_fail_open(texts)
    if found is None:
        return _failed_open
    return dict(zip(texts, found, strict=True)).__getitem__


def _scrub_with_vocabulary(
    records: Sequence[dict[str, Any]], guard: Guard, report: ScrubReport
) -> Iterator[dict[str, Any] | None]:
    found: list[dict[str, list[Finding] | None]] = []
    for batch in _batches(records):
        find = _finder(batch, guard)
        found += [{text: find(text) for text in record_texts(record)} for record in batch]
    # Counted in the business's own texts only: a customer who introduces themselves in
    # many chats of a small dataset is still a customer.
    written = [
        [(text, texts[text]) for text in business_texts(record)]
        for record, texts in zip(records, found, strict=True)
    ]
    report.vocabulary = recurring_names(written, never=guard.policy.denied_values())
    allowing = guard.allowing(report.vocabulary)
    for record, texts in zip(records, found, strict=True):
        # Detected before the vocabulary was known: the allowing guard drops it now.
        kept = {
            text: None if findings is None else allowing.without_allowed(text, findings)
            for text, findings in texts.items()
        }
        yield _scrub(record, allowing, report, kept.__getitem__)


def _failed_open(_text: str) -> None:
    return None


def scrub_record(
    record: dict[str, Any], guard: Guard, report: ScrubReport
) -> dict[str, Any] | None:
    """A copy of `record` with personal data masked or redacted; None if the policy blocks it.

    Every text of the record is scrubbed (`lorastack.texts`: plain fields,
    chat messages in OpenAI or ShareGPT form, content parts) with one vault,
    so a value keeps its placeholder through the conversation.
    """
    return next(scrub_records([record], guard, report))


def _scrub(
    record: dict[str, Any],
    guard: Guard,
    report: ScrubReport,
    find: Callable[[str], list[Finding] | None],
) -> dict[str, Any] | None:
    vault = Vault()
    # Records already masked once (captured feedback) hold placeholders: a value found
    # now must not get one of theirs, or two people would become one.
    for text in record_texts(record):
        vault.reserve_literals(text)
    report.records += 1

    def scrub(text: str) -> str:
        result = guard.scan_found(text, find(text), Direction.INPUT, vault)
        report.entities.update(applied.type for applied in result.findings)
        if result.blocked_types:
            report.blocked.update(result.blocked_types)
            raise _Blocked
        return result.redacted

    try:
        scrubbed = map_record(record, scrub)
    except _Blocked:
        report.records_dropped += 1
        return None
    if scrubbed != record:
        report.records_changed += 1
    return scrubbed
