"""Scrubbing training records: every text of every record shape, one vault per record."""

from __future__ import annotations

from typing import Any

from lorastack.guardrails.guard import Guard
from lorastack.guardrails.policy import GuardPolicy
from lorastack.guardrails.scrub import ScrubReport, scrub_record
from tests.fakes import RegexDetector

CARD = "4111 1111 1111 1111"


def _guard(**policy: object) -> Guard:
    return Guard(GuardPolicy.model_validate(policy), RegexDetector())


def _record(name: str, email: str) -> dict[str, Any]:
    """A record with texts in every place a training record holds them."""
    return {
        "instruction": f"Reply to {name}",
        "input": f"from {email}",
        "output": f"Dear {name},",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": f"I'm {name}"},
                    {"type": "image_url", "image_url": {"url": "x"}},
                ],
            },
            {"from": "gpt", "value": f"Hi {name}"},
        ],
        "id": "Jane Porter",  # not a text field: left as it is
    }


def test_instruction_fields_and_content_parts_are_scrubbed_with_one_vault() -> None:
    report = ScrubReport()
    scrubbed = scrub_record(_record("Jane Porter", "jane@example.com"), _guard(), report)
    assert scrubbed == _record("<PERSON_1>", "<EMAIL_ADDRESS_1>")
    assert report.to_dict() == {
        "records": 1,
        "records_changed": 1,
        "records_dropped": 0,
        "entities": {"EMAIL_ADDRESS": 1, "PERSON": 4},
        "blocked": {},
    }


def test_a_record_holding_blocked_data_is_dropped_and_counted() -> None:
    guard = _guard(entities={"CREDIT_CARD": {"input": "block"}})
    report = ScrubReport()
    blocked = {"messages": [{"role": "user", "content": [{"type": "text", "text": CARD}]}]}
    assert scrub_record(blocked, guard, report) is None
    assert scrub_record({"text": "nothing here"}, guard, report) == {"text": "nothing here"}
    assert (report.records, report.records_changed, report.records_dropped) == (2, 0, 1)
    assert dict(report.blocked) == {"CREDIT_CARD": 1}
