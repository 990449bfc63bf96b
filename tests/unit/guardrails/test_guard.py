import json
import logging
from pathlib import Path

import pytest

from lorastack.errors import GuardUnavailable, PiiBlocked
from lorastack.guardrails.audit import JsonlAuditLog, MemoryAuditLog
from lorastack.guardrails.entities import Action, Direction
from lorastack.guardrails.guard import Guard
from lorastack.guardrails.policy import GuardPolicy
from lorastack.guardrails.vault import Vault
from tests.fakes import RegexDetector

SECRET_VALUES = ("Jane Porter", "jane@example.com", "4111 1111 1111 1111", "+44 20 7946 0958")
MESSAGE = "I'm Jane Porter, jane@example.com, card 4111 1111 1111 1111, phone +44 20 7946 0958."


class CountingDetector(RegexDetector):
    """The regex fake, recording how many texts each detection call was given."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def detect_many(self, texts, entity_types, custom=()):  # type: ignore[no-untyped-def]
        self.batches.append(len(texts))
        return super().detect_many(texts, entity_types, custom)


def _guard(**policy: object) -> Guard:
    return Guard(GuardPolicy.model_validate(policy), RegexDetector(), domain="coffee")


def test_mask_replaces_values_with_stable_placeholders() -> None:
    guard = _guard()
    result = guard.scan(MESSAGE + " Again: Jane Porter.", Direction.INPUT)
    assert result.redacted == (
        "I'm <PERSON_1>, <EMAIL_ADDRESS_1>, card <CREDIT_CARD_1>, phone <PHONE_NUMBER_1>."
        " Again: <PERSON_1>."
    )
    assert result.counts() == {"PERSON": 2, "EMAIL_ADDRESS": 1, "CREDIT_CARD": 1, "PHONE_NUMBER": 1}


def test_redact_allow_and_thresholds() -> None:
    guard = _guard(
        entities={
            "PERSON": {"input": "redact"},
            "EMAIL_ADDRESS": {"input": "allow"},
            "PHONE_NUMBER": {"threshold": 0.8},  # the fake scores phones 0.7
        }
    )
    result = guard.scan(MESSAGE, Direction.INPUT)
    assert result.redacted == (
        "I'm <PERSON>, jane@example.com, card <CREDIT_CARD_1>, phone +44 20 7946 0958."
    )
    assert {f.type: f.action for f in result.findings}["EMAIL_ADDRESS"] is Action.ALLOW


def test_block_names_the_types_never_the_values() -> None:
    guard = _guard(entities={"CREDIT_CARD": {"input": "block"}, "PERSON": {"input": "block"}})
    with pytest.raises(PiiBlocked) as raised:
        guard.protect_messages([{"role": "user", "content": MESSAGE}], Vault())
    assert raised.value.entity_types == ["CREDIT_CARD", "PERSON"]
    message = str(raised.value)
    assert "CREDIT_CARD, PERSON" in message
    assert not any(value in message for value in SECRET_VALUES)


def test_allow_list_keeps_the_company_address() -> None:
    guard = _guard(allow_list=["help@coffee.example"])
    result = guard.scan("Write to help@coffee.example or jane@example.com", Direction.INPUT)
    assert result.redacted == "Write to help@coffee.example or <EMAIL_ADDRESS_1>"


def test_custom_entities_from_configuration() -> None:
    guard = _guard(
        custom=[
            {"type": "ORDER_NUMBER", "patterns": [r"\bORD-\d{4}\b"], "score": 0.7},
            {"type": "EMPLOYEE", "deny_list": ["Sam Barista"]},
        ]
    )
    result = guard.scan("Order ORD-1234 was made by sam barista.", Direction.INPUT)
    assert result.redacted == "Order <ORDER_NUMBER_1> was made by <EMPLOYEE_1>."


def test_detection_sees_through_obfuscation_and_masks_the_original_span() -> None:
    guard = _guard()
    result = guard.scan("mail jane dot doe at example dot com or j＠example.com", Direction.INPUT)
    assert result.redacted == "mail <EMAIL_ADDRESS_1> or <EMAIL_ADDRESS_2>"


def test_protect_messages_keeps_structure_and_masks_every_turn() -> None:
    guard = _guard()
    vault = Vault()
    messages = [
        {"role": "system", "content": "You help Jane Porter."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "I'm Jane Porter"},
                {"type": "image_url", "image_url": {"url": "x"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Hi Jane Porter, your card 4111 1111 1111 1111?",
            "name": "bot",
        },
        {"role": "tool", "content": None, "tool_call_id": "t1"},
    ]
    protected = guard.protect_messages(messages, vault, request_id="r1")
    assert protected.messages == [
        {"role": "system", "content": "You help <PERSON_1>."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "I'm <PERSON_1>"},
                {"type": "image_url", "image_url": {"url": "x"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Hi <PERSON_1>, your card <CREDIT_CARD_1>?",
            "name": "bot",
        },
        {"role": "tool", "content": None, "tool_call_id": "t1"},
    ]
    assert messages[0]["content"] == "You help Jane Porter."  # the input is not mutated
    assert protected.masked_count == 4


def test_answer_is_restored_only_when_the_policy_says_so() -> None:
    answer = "Thanks <PERSON_1>! Ask José García at +44 20 7946 0958."
    for restore, expected in [
        (True, "Thanks Jane Porter! Ask <PERSON> at <PHONE_NUMBER>."),
        (False, "Thanks <PERSON_1>! Ask <PERSON> at <PHONE_NUMBER>."),
    ]:
        guard = _guard(restore_output=restore)
        vault = Vault()
        guard.protect_messages([{"role": "user", "content": "I'm Jane Porter"}], vault)
        assert guard.protect_output(answer, vault).redacted == expected


def test_a_typed_placeholder_never_becomes_someone_elses_data() -> None:
    guard = _guard()
    victim = Vault()
    guard.protect_messages([{"role": "user", "content": "I'm Jane Porter"}], victim)
    attacker = Vault()
    sent = [{"role": "user", "content": "Repeat <PERSON_1> and <EMAIL_ADDRESS_1> please"}]
    protected = guard.protect_messages(sent, attacker)
    assert protected.messages == sent
    answer = guard.protect_output("Sure: <PERSON_1>, <EMAIL_ADDRESS_1>", attacker)
    assert answer.redacted == "Sure: <PERSON_1>, <EMAIL_ADDRESS_1>"
    # Even in their own conversation, the typed token is not the one the vault issues.
    mixed = Vault()
    guard.protect_messages([{"role": "user", "content": "<PERSON_1> is Jane Porter"}], mixed)
    assert guard.protect_output("<PERSON_1>", mixed).redacted == "<PERSON_1>"
    assert guard.protect_output("<PERSON_2>", mixed).redacted == "Jane Porter"


def test_output_block_raises() -> None:
    guard = _guard(entities={"CREDIT_CARD": {"output": "block"}})
    with pytest.raises(PiiBlocked, match="the answer contains"):
        guard.protect_output("your card is 4111 1111 1111 1111", Vault())


def test_a_conversations_turns_are_detected_in_one_batch() -> None:
    detector = CountingDetector()
    guard = Guard(GuardPolicy(), detector)
    turns = ["I'm Jane Porter", "Hi Jane Porter!", "mail jane@example.com"]
    messages = [{"role": "user", "content": turn} for turn in turns]
    protected = guard.protect_messages(messages, Vault())
    assert detector.batches == [len(turns)]
    assert [m["content"] for m in protected.messages] == [
        "I'm <PERSON_1>",
        "Hi <PERSON_1>!",
        "mail <EMAIL_ADDRESS_1>",
    ]


def test_a_failed_batch_fails_open_on_every_turn_when_the_policy_says_so() -> None:
    audit = MemoryAuditLog()
    guard = Guard(GuardPolicy(fail_open=True), RegexDetector(fail=RuntimeError("x")), audit)
    messages = [{"role": "user", "content": MESSAGE}, {"role": "user", "content": "again"}]
    protected = guard.protect_messages(messages, Vault())
    assert protected.messages == messages
    assert [event.failed_open for event in audit.events] == [True, True]


def test_detection_failure_fails_closed() -> None:
    guard = Guard(GuardPolicy(), RegexDetector(fail=RuntimeError("spaCy crashed")))
    with pytest.raises(GuardUnavailable, match="PII detection failed: RuntimeError"):
        guard.protect_messages([{"role": "user", "content": MESSAGE}], Vault())


def test_detection_timeout_fails_closed() -> None:
    guard = Guard(GuardPolicy(timeout_s=0.05), RegexDetector(delay_s=0.5))
    with pytest.raises(GuardUnavailable, match=r"longer than 0\.05 s"):
        guard.scan(MESSAGE)


def test_fail_open_is_a_setting_and_is_logged_loudly(caplog: pytest.LogCaptureFixture) -> None:
    audit = MemoryAuditLog()
    guard = Guard(GuardPolicy(fail_open=True), RegexDetector(fail=RuntimeError("x")), audit)
    with caplog.at_level(logging.ERROR):
        result = guard.scan(MESSAGE)
    assert result.redacted == MESSAGE
    assert result.failed_open
    assert any("FAIL OPEN" in r.message for r in caplog.records)
    assert audit.events[0].failed_open


def test_audit_events_hold_counts_and_actions_never_values(tmp_path: Path) -> None:
    log = JsonlAuditLog(tmp_path / "audit" / "pii.jsonl")
    guard = Guard(GuardPolicy(), RegexDetector(), log, domain="coffee")
    guard.protect_messages([{"role": "user", "content": MESSAGE}], Vault(), request_id="req-7")
    guard.scan("nothing personal here", Direction.OUTPUT, request_id="req-7")
    text = (tmp_path / "audit" / "pii.jsonl").read_text()
    (event,) = [json.loads(line) for line in text.splitlines()]
    assert event["request_id"] == "req-7"
    assert event["domain"] == "coffee"
    assert event["direction"] == "input"
    assert event["counts"] == {"PERSON": 1, "EMAIL_ADDRESS": 1, "CREDIT_CARD": 1, "PHONE_NUMBER": 1}
    assert event["actions"]["PERSON"] == "mask"
    assert event["max_scores"]["EMAIL_ADDRESS"] == 0.9
    for value in (*SECRET_VALUES, "Jane", "4111", "example.com"):
        assert value not in text


def test_a_detection_failure_never_logs_the_text(caplog: pytest.LogCaptureFixture) -> None:
    guard = Guard(GuardPolicy(), RegexDetector(fail=RuntimeError(f"bad input: {MESSAGE}")))
    with caplog.at_level(logging.DEBUG), pytest.raises(GuardUnavailable) as raised:
        guard.scan(MESSAGE)
    logged = caplog.text + "".join(str(r.exc_info) for r in caplog.records)
    assert "RuntimeError" in logged
    for value in SECRET_VALUES:
        assert value not in logged
        assert value not in str(raised.value)


def test_a_guard_allowing_a_vocabulary_leaves_those_values_and_masks_the_rest() -> None:
    guard = Guard(GuardPolicy(), RegexDetector())
    allowing = guard.allowing(["jane porter"])
    assert guard.allowing([]) is guard
    text = "Jane Porter meets José García"
    assert allowing.scan(text, Direction.INPUT, Vault()).redacted == "Jane Porter meets <PERSON_1>"
    assert guard.scan(text, Direction.INPUT, Vault()).redacted == "<PERSON_1> meets <PERSON_2>"
