"""Scrubbing training records: every text of every record shape, one vault per record;
many records detected in batches, each distinct text once."""

from __future__ import annotations

from typing import Any

import pytest

from lorastack.errors import GuardUnavailable
from lorastack.guardrails.guard import Guard
from lorastack.guardrails.policy import GuardPolicy
from lorastack.guardrails.scrub import SCRUB_BATCH, ScrubReport, scrub_record, scrub_records
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
        "vocabulary": [],
    }


def test_a_record_holding_blocked_data_is_dropped_and_counted() -> None:
    guard = _guard(entities={"CREDIT_CARD": {"input": "block"}})
    report = ScrubReport()
    blocked = {"messages": [{"role": "user", "content": [{"type": "text", "text": CARD}]}]}
    assert scrub_record(blocked, guard, report) is None
    assert scrub_record({"text": "nothing here"}, guard, report) == {"text": "nothing here"}
    assert (report.records, report.records_changed, report.records_dropped) == (2, 0, 1)
    assert dict(report.blocked) == {"CREDIT_CARD": 1}


class _BatchRecordingDetector(RegexDetector):
    """Records the texts of each `detect_many` call."""

    def __init__(self, fail: BaseException | None = None) -> None:
        super().__init__(fail)
        self.batches: list[list[str]] = []

    def detect_many(self, texts: Any, entity_types: Any, custom: Any = ()) -> list[Any]:
        self.batches.append(list(texts))
        return super().detect_many(texts, entity_types, custom)


def _chats(count: int) -> list[dict[str, Any]]:
    system = {"role": "system", "content": "You answer for Bean There."}
    return [
        {
            "messages": [
                system,
                {
                    "role": "user",
                    "content": f"I'm Jane Porter, order {n}" + f", card {CARD}" * (n % 2),
                },
                {"role": "assistant", "content": f"Thanks Jane Porter, order {n} is on its way."},
            ]
        }
        for n in range(count)
    ]


def test_records_in_batches_come_out_as_each_record_alone() -> None:
    records = [*_chats(SCRUB_BATCH + 6), {"text": CARD}, {"messages": []}]
    detector = _BatchRecordingDetector()
    policy = GuardPolicy.model_validate({"entities": {"CREDIT_CARD": {"input": "block"}}})
    batched_report, alone_report = ScrubReport(), ScrubReport()
    batched = list(scrub_records(records, Guard(policy, detector), batched_report))
    alone = [scrub_record(r, Guard(policy, RegexDetector()), alone_report) for r in records]

    assert batched == alone and batched_report == alone_report
    masked = [
        {"role": "system", "content": "You answer for Bean There."},
        {"role": "user", "content": "I'm <PERSON_1>, order 0"},
        {"role": "assistant", "content": "Thanks <PERSON_1>, order 0 is on its way."},
    ]
    assert batched[0] == {"messages": masked}
    assert batched[1] is None and batched[-2] is None  # a card: blocked
    assert batched_report.records_dropped == (SCRUB_BATCH + 6) // 2 + 1
    # Two batches; the system prompt every chat repeats is detected once in each.
    assert [len(batch) for batch in detector.batches] == [1 + 2 * SCRUB_BATCH, 1 + 2 * 6 + 1]
    assert all(len(set(batch)) == len(batch) for batch in detector.batches)


def test_a_failed_batch_fails_closed_or_passes_unscanned_as_the_policy_says() -> None:
    records = [{"text": "Jane Porter"}, {"text": "call Jane Porter"}]
    failing = _BatchRecordingDetector(fail=RuntimeError("model gone"))
    with pytest.raises(GuardUnavailable):
        list(scrub_records(records, Guard(GuardPolicy(), failing), ScrubReport()))

    open_policy = GuardPolicy.model_validate({"fail_open": True})
    report = ScrubReport()
    passed = list(scrub_records(records, Guard(open_policy, failing), report))
    assert passed == records and report.records_changed == 0


def _ferry_chats(count: int, customer_every: int, signed: str = "") -> list[dict[str, Any]]:
    """Chats of a ferry operator that names its port Leeds in every answer; every
    `customer_every`-th chat comes from a customer called Jane Porter; the answers end
    with `signed`."""
    chats = []
    for n in range(count):
        name = "Jane Porter" if n % customer_every == 0 else "a customer"
        chats.append(
            {
                "messages": [
                    {"role": "user", "content": f"I'm {name}. When is boat {n}?"},
                    {"role": "assistant", "content": f"Boat {n} leaves Leeds at 9am.{signed}"},
                ]
            }
        )
    return chats


def test_learning_the_vocabulary_keeps_the_business_s_own_names_and_masks_its_customers() -> None:
    records = _ferry_chats(SCRUB_BATCH + 36, customer_every=25)  # Jane Porter in 4 of 100
    report = ScrubReport()
    scrubbed = list(scrub_records(records, _guard(), report, learn_vocabulary=True))

    assert report.vocabulary == ["Leeds"]
    assert scrubbed[1] == records[1]  # its port, in every chat, is kept as written
    assert scrubbed[0] == {
        "messages": [
            {"role": "user", "content": "I'm <PERSON_1>. When is boat 0?"},
            {"role": "assistant", "content": "Boat 0 leaves Leeds at 9am."},
        ]
    }
    assert report.entities == {"PERSON": 4} and report.to_dict()["vocabulary"] == ["Leeds"]
    # Without it, the port is masked like a customer's place.
    plain = ScrubReport()
    assert list(scrub_records(records, _guard(), plain))[1]["messages"][1]["content"] == (
        "Boat 1 leaves <LOCATION_1> at 9am."
    )
    assert plain.vocabulary == []


def test_a_name_only_customers_write_is_never_vocabulary_however_many_chats_hold_it() -> None:
    chats = _ferry_chats(10, customer_every=1)  # Jane Porter introduces herself in each
    pairs = [
        {"prompt": f"I'm Jane Porter. When is boat {n}?", "completion": f"At 9am from Leeds, {n}."}
        for n in range(10)
    ]
    for records in (chats, pairs):
        report = ScrubReport()
        scrubbed = list(scrub_records(records, _guard(), report, learn_vocabulary=True))
        assert report.vocabulary == ["Leeds"]
        assert report.entities == {"PERSON": 10}
        assert all("Jane Porter" not in str(record) for record in scrubbed)


def test_a_deny_listed_name_is_never_vocabulary_and_a_failed_open_batch_still_passes() -> None:
    records = _ferry_chats(10, customer_every=3, signed=" Jane Porter, bookings")
    staff = {"custom": [{"type": "EMPLOYEE", "deny_list": ["jane porter"]}]}
    report = ScrubReport()
    scrubbed = list(scrub_records(records, _guard(**staff), report, learn_vocabulary=True))
    assert report.vocabulary == ["Leeds"]
    assert scrubbed[3]["messages"] == [
        {"role": "user", "content": "I'm <PERSON_1>. When is boat 3?"},
        {"role": "assistant", "content": "Boat 3 leaves Leeds at 9am. <PERSON_1>, bookings"},
    ]
    # Without the deny-list, the name every answer is signed with is the business's own.
    signed = ScrubReport()
    list(scrub_records(records, _guard(), signed, learn_vocabulary=True))
    assert signed.vocabulary == ["Jane Porter", "Leeds"]

    failing = _BatchRecordingDetector(fail=RuntimeError("model gone"))
    open_guard = Guard(GuardPolicy.model_validate({"fail_open": True}), failing)
    passed = ScrubReport()
    assert list(scrub_records(records, open_guard, passed, learn_vocabulary=True)) == records
    assert passed.vocabulary == []
