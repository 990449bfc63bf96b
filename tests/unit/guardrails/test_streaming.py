"""The streaming redactor at every split point: nothing raw, no placeholder fragments."""

import random
import re
from collections.abc import Iterator
from typing import Any

import pytest

from lorastack.errors import PiiBlocked
from lorastack.guardrails.guard import Guard
from lorastack.guardrails.policy import GuardPolicy
from lorastack.guardrails.vault import Vault
from tests.fakes import RegexDetector

USER = "Hi, I'm Jane Porter, jane@example.com."
RAW_VALUES = (
    "Jane Porter",
    "jane@example.com",
    "José García",
    "4111 1111 1111 1111",
    "+44 20 7946 0958",
    "olu@example.org",
    "Olusegun Adeyemi",
    "Leeds",
)
ANSWERS = [
    "Thanks <PERSON_1>! We will write to <EMAIL_ADDRESS_1> today.",
    "Your card 4111 1111 1111 1111 was charged; José García will call +44 20 7946 0958.",
    "Olusegun Adeyemi (olu@example.org) from Leeds says hi to <PERSON_1>.",
    "<PERSON_1><EMAIL_ADDRESS_1>4111 1111 1111 1111<PERSON_1>",
    "No personal data here at all, just a long and friendly answer about coffee beans.",
]
TAG = re.compile(r"<[A-Z][A-Z0-9_]*>")


def _setup(restore: bool) -> tuple[Guard, Vault]:
    guard = Guard(GuardPolicy(restore_output=restore), RegexDetector())
    vault = Vault()
    guard.protect_messages([{"role": "user", "content": USER}], vault)
    return guard, vault


def _stream(guard: Guard, vault: Vault, chunks: list[str]) -> list[str]:
    redactor = guard.stream(vault)
    emitted = [redactor.feed(chunk) for chunk in chunks]
    emitted.append(redactor.finish())
    return emitted


def _chunkings(text: str) -> Iterator[list[str]]:
    for split in range(1, len(text)):
        yield [text[:split], text[split:]]
    yield list(text)
    rng = random.Random(7)
    for _ in range(30):
        cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(2, 12))))
        yield [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


def _assert_safe(emitted: list[str], expected: str, restore: bool) -> None:
    output = "".join(emitted)
    assert output == expected
    for chunk in emitted:
        # whole placeholders and redaction tags only: every "<" opens a complete tag
        assert chunk.count("<") == len(TAG.findall(chunk)) == chunk.count(">")
    allowed = ("Jane Porter", "jane@example.com") if restore else ()
    for value in RAW_VALUES:
        if value not in allowed:
            assert value not in output
            # and no part of it long enough to mean anything, in any chunk
            for chunk in emitted:
                assert value[:6] not in chunk or value[:6] in expected


@pytest.mark.parametrize("restore", [True, False])
@pytest.mark.parametrize("answer", ANSWERS)
def test_every_chunking_gives_the_batch_result(answer: str, restore: bool) -> None:
    guard, vault = _setup(restore)
    expected = guard.protect_output(answer, vault).redacted
    for chunks in _chunkings(answer):
        _assert_safe(_stream(guard, vault, chunks), expected, restore)


@pytest.mark.parametrize("answer", ANSWERS)
def test_without_restoring_each_piece_restores_to_what_the_user_is_shown(answer: str) -> None:
    # What capture stores (the user's values masked) and what the user sees come from one
    # scan: each masked piece holds whole placeholders, so restoring it piece by piece
    # gives the restoring stream's text.
    guard, vault = _setup(restore=True)
    masked_whole = guard.protect_output(answer, vault, restore=False).redacted
    assert guard.restore(masked_whole, vault) == guard.protect_output(answer, vault).redacted
    for chunks in _chunkings(answer):
        redactor = guard.stream(vault, restore=False)
        masked = [redactor.feed(chunk) for chunk in chunks] + [redactor.finish()]
        assert "".join(masked) == masked_whole
        assert "Jane Porter" not in masked_whole and "jane@example.com" not in masked_whole
        shown = [guard.restore(piece, vault) for piece in masked]
        assert "".join(shown) == "".join(_stream(guard, vault, chunks))


def test_restored_values_are_the_users_own() -> None:
    guard, vault = _setup(restore=True)
    output = "".join(_stream(guard, vault, list(ANSWERS[2])))
    assert output == "<PERSON> (<EMAIL_ADDRESS>) from <LOCATION> says hi to Jane Porter."


def test_text_flows_a_few_words_behind() -> None:
    guard, vault = _setup(restore=True)
    redactor = guard.stream(vault)
    words = [f"word{i} " for i in range(40)]
    released = ""
    for count, word in enumerate(words, start=1):
        released += redactor.feed(word)
        held = "".join(words[:count])[len(released) :]
        # A piece of at least min_release characters is due after the 3 words held back.
        assert len(held) < redactor.min_release + 4 * len(word)
    released += redactor.finish()
    assert released == "".join(words)


def test_the_first_words_go_out_as_soon_as_they_are_safe() -> None:
    """The first piece does not wait for min_release characters: time to first text."""
    guard, vault = _setup(restore=True)
    redactor = guard.stream(vault)
    words = ["Hi ", "there, ", "thanks ", "for ", "asking. "]
    emitted = ["" if redactor.hold(word) else redactor.feed(word) for word in words]
    # Three words are held back; the fourth makes the first one safe, the fifth the second.
    assert emitted == ["", "", "", "Hi ", ""]
    assert len("Hi there, ") < redactor.min_release


@pytest.mark.parametrize("answer", ANSWERS)
def test_chunks_held_without_a_scan_give_the_batch_result(answer: str) -> None:
    """The gateway hands a chunk to `hold` first and feeds (scans) it only when a piece is due."""
    guard, vault = _setup(restore=True)
    expected = guard.protect_output(answer, vault).redacted
    for chunks in _chunkings(answer):
        redactor = guard.stream(vault)
        emitted = ["" if redactor.hold(chunk) else redactor.feed(chunk) for chunk in chunks]
        emitted.append(redactor.finish())
        _assert_safe(emitted, expected, restore=True)


class _CountingDetector(RegexDetector):
    def __init__(self) -> None:
        super().__init__()
        self.scanned = 0

    def detect(self, text: str, entity_types: Any, custom: Any = ()) -> list[Any]:
        self.scanned += len(text)
        return super().detect(text, entity_types, custom)


def test_each_character_is_scanned_a_few_times_not_once_per_word() -> None:
    detector = _CountingDetector()
    guard = Guard(GuardPolicy(), detector)
    redactor = guard.stream(Vault())
    words = [f"word{i} " for i in range(200)]
    for word in words:
        if not redactor.hold(word):
            redactor.feed(word)
    redactor.finish()
    answer = len("".join(words))
    # Word by word, each release rescanned its 80 characters of context: about 14 times
    # the answer here. In pieces of min_release characters, a few times.
    assert detector.scanned < 5 * answer


def test_hold_back_is_bounded_even_without_spaces() -> None:
    guard, vault = _setup(restore=True)
    redactor = guard.stream(vault)
    released = ""
    for _ in range(300):
        released += redactor.feed("x")
        assert 300 - len(released) >= 0
    assert len(released) >= 300 - redactor.max_hold - redactor.min_release
    assert released + redactor.finish() == "x" * 300


def test_a_long_run_never_splits_a_placeholder() -> None:
    guard, vault = _setup(restore=False)
    text = "x" * 90 + "<PERSON_1>" + "y" * 90
    for chunks in ([text], list(text)):
        emitted = _stream(guard, vault, chunks)
        _assert_safe(emitted, text, restore=False)


def test_blocked_entity_in_output_stops_the_stream_before_it_is_shown() -> None:
    guard = Guard(GuardPolicy(entities={"CREDIT_CARD": {"output": "block"}}), RegexDetector())
    redactor = guard.stream(Vault())
    shown = ""
    with pytest.raises(PiiBlocked):
        for char in "Your card is 4111 1111 1111 1111 and more text":
            shown += redactor.feed(char)
        redactor.finish()  # the answer may end before another piece is due
    assert "4111" not in shown
    assert redactor.blocked_types == ["CREDIT_CARD"]


def test_feed_after_finish_is_an_error() -> None:
    guard, vault = _setup(restore=True)
    redactor = guard.stream(vault)
    redactor.finish()
    with pytest.raises(RuntimeError):
        redactor.feed("more")


def test_a_finished_stream_sends_one_audit_event_without_values() -> None:
    from lorastack.guardrails.audit import MemoryAuditLog

    audit = MemoryAuditLog()
    guard = Guard(GuardPolicy(), RegexDetector(), audit, domain="coffee")
    redactor = guard.stream(Vault(), request_id="r9")
    for char in ANSWERS[1]:
        redactor.feed(char)
    redactor.finish()
    (event,) = audit.events
    assert event.direction == "output"
    assert event.request_id == "r9"
    assert event.counts == {"CREDIT_CARD": 1, "PERSON": 1, "PHONE_NUMBER": 1}
    assert "4111" not in repr(event)


def test_stream_fails_closed_when_detection_fails() -> None:
    from lorastack.errors import GuardUnavailable

    guard = Guard(GuardPolicy(), RegexDetector(fail=RuntimeError("boom")))
    redactor = guard.stream(Vault())
    with pytest.raises(GuardUnavailable):
        for char in "Call José García on +44 20 7946 0958 please, thanks a lot":
            redactor.feed(char)


def test_stream_fails_open_only_when_the_policy_says_so() -> None:
    guard = Guard(GuardPolicy(fail_open=True), RegexDetector(fail=RuntimeError("boom")))
    emitted = _stream(guard, Vault(), list("Call José García now"))
    assert "".join(emitted) == "Call José García now"
