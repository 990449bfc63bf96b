"""Apply a guard's input policy to training records, keeping each record's shape.

Each record is one conversation: its values get consistent placeholders, the
same ones the gateway will put in prompts at serving time, so the model learns
to work with placeholders rather than with people's data.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from lorastack.guardrails.entities import Direction
from lorastack.guardrails.guard import Guard
from lorastack.guardrails.vault import Vault
from lorastack.texts import map_record, record_texts


@dataclass
class ScrubReport:
    records: int = 0
    records_changed: int = 0
    records_dropped: int = 0
    """Records holding data the policy blocks: left out of the training set."""
    entities: Counter[str] = field(default_factory=Counter)
    blocked: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "records_changed": self.records_changed,
            "records_dropped": self.records_dropped,
            "entities": dict(sorted(self.entities.items())),
            "blocked": dict(sorted(self.blocked.items())),
        }


class _Blocked(Exception):
    pass


def scrub_record(
    record: dict[str, Any], guard: Guard, report: ScrubReport
) -> dict[str, Any] | None:
    """A copy of `record` with personal data masked or redacted; None if the policy blocks it.

    Every text of the record is scrubbed (`lorastack.texts`: plain fields,
    chat messages in OpenAI or ShareGPT form, content parts) with one vault,
    so a value keeps its placeholder through the conversation.
    """
    vault = Vault()
    # Records already masked once (captured feedback) hold placeholders: a value found
    # now must not get one of theirs, or two people would become one.
    for text in record_texts(record):
        vault.reserve_literals(text)
    report.records += 1

    def scrub(text: str) -> str:
        result = guard.scan(text, Direction.INPUT, vault)
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
