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

# The text fields of the record formats lorastack trains on.
_TEXT_FIELDS = ("text", "prompt", "completion", "instruction", "input", "output")


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


def _scrub_value(value: Any, guard: Guard, vault: Vault, report: ScrubReport) -> Any:
    """Scrub strings, chat messages and prompt/completion message lists recursively."""
    if isinstance(value, str):
        result = guard.scan(value, Direction.INPUT, vault)
        report.entities.update(applied.type for applied in result.findings)
        if result.blocked_types:
            report.blocked.update(result.blocked_types)
            raise _Blocked
        return result.redacted
    if isinstance(value, list):
        return [_scrub_value(item, guard, vault, report) for item in value]
    if isinstance(value, dict):
        if "role" in value or "from" in value:  # a chat message (OpenAI or ShareGPT style)
            return {
                key: _scrub_value(item, guard, vault, report)
                if key in ("content", "value", "text")
                else item
                for key, item in value.items()
            }
        if value.get("type") == "text":  # a content part
            return {**value, "text": _scrub_value(value.get("text"), guard, vault, report)}
        return value
    return value


def scrub_record(
    record: dict[str, Any], guard: Guard, report: ScrubReport
) -> dict[str, Any] | None:
    """A copy of `record` with personal data masked or redacted; None if the policy blocks it."""
    vault = Vault()
    scrubbed = dict(record)
    report.records += 1
    try:
        for key in ("messages", "conversations", *_TEXT_FIELDS):
            if key in record:
                scrubbed[key] = _scrub_value(record[key], guard, vault, report)
    except _Blocked:
        report.records_dropped += 1
        return None
    if scrubbed != record:
        report.records_changed += 1
    return scrubbed
