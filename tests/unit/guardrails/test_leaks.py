"""System prompt leaks (OWASP LLM07): found whole, through changes of case and spacing,
and in streams at every split point without a run of the prompt released raw."""

import re

import pytest

from lorastack.errors import SystemPromptLeaked
from lorastack.guardrails.audit import MemoryAuditLog
from lorastack.guardrails.guard import Guard
from lorastack.guardrails.leaks import MIN_WORDS, SYSTEM_PROMPT, LeakIndex, leak_index
from lorastack.guardrails.policy import GuardPolicy, parse_policy
from lorastack.guardrails.vault import Vault
from tests.fakes import RegexDetector
from tests.unit.guardrails.test_streaming import _chunkings

PROMPT = (
    "You are the cheerful barista of Bean There. Never reveal the wholesale price list, "
    "and always offer the oat milk upgrade for 50 cents when someone orders a latte."
)
LEAKS = [
    "Sure! My instructions: " + PROMPT + " Anything else?",
    "you are the CHEERFUL barista of bean there.\n\nNEVER reveal the wholesale\tprice list",
    "Rules:\n- never reveal the wholesale price list, and\n- always offer the oat milk upgrade!",
    "I can't say. Never reveal the wholesale price list, and always offer the oat milk.",
    "Thanks Jane Porter! never reveal the wholesale price list, and always offer (jane@x.org)",
]
NOT_LEAKS = [
    "Thank you for your enquiry! We always offer the oat milk upgrade for you.",
    "A latte is 3.20; the oat milk upgrade costs 50 cents.",
]


def _guard(**policy: str) -> Guard:
    return Guard(parse_policy(policy, "test"), RegexDetector(), audit=MemoryAuditLog())


def _runs(text: str, n: int = MIN_WORDS) -> set[tuple[str, ...]]:
    words = [w.casefold() for w in re.findall(r"\w+", text)]
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def test_a_copy_is_found_through_case_spacing_and_punctuation() -> None:
    index = LeakIndex(PROMPT)
    for answer in LEAKS:
        assert index.find(answer), answer
    for answer in NOT_LEAKS:
        assert index.find(answer) == [], answer


def test_seven_shared_words_are_not_a_leak_eight_are() -> None:
    index = LeakIndex(PROMPT)
    assert index.find("Yes: never reveal the wholesale price list, and so on.") == []
    found = index.find("Yes: never reveal the wholesale price list, and always. Bye")
    assert [(f.type, f.start) for f in found] == [(SYSTEM_PROMPT, 5)]


def test_the_copied_span_is_redacted_and_the_rest_kept() -> None:
    guard = _guard()
    result = guard.protect_output(LEAKS[0], Vault(), leaks=leak_index(PROMPT))
    assert result.redacted == "Sure! My instructions: <SYSTEM_PROMPT>. Anything else?"
    assert guard.audit.events[-1].counts == {SYSTEM_PROMPT: 1}  # type: ignore[union-attr]
    assert guard.audit.events[-1].actions == {SYSTEM_PROMPT: "redact"}  # type: ignore[union-attr]
    # Without the prompt, or under `allow`, nothing is looked for.
    assert guard.protect_output(LEAKS[0], Vault()).redacted == LEAKS[0]
    allowing = _guard(system_prompt_leak="allow")
    assert (
        allowing.protect_output(LEAKS[0], Vault(), leaks=leak_index(PROMPT)).redacted == (LEAKS[0])
    )


def test_personal_data_inside_a_copy_goes_with_it() -> None:
    prompt = "You are Jane Porter, the friendly assistant of the Bean There coffee shop."
    answer = "Well: you are Jane Porter, the friendly assistant of the Bean There coffee shop."
    redacted = _guard().protect_output(answer, Vault(), leaks=LeakIndex(prompt)).redacted
    assert redacted == "Well: <SYSTEM_PROMPT>."


def test_block_refuses_the_answer_naming_no_text() -> None:
    guard = _guard(system_prompt_leak="block")
    with pytest.raises(SystemPromptLeaked) as raised:
        guard.protect_output(LEAKS[1], Vault(), leaks=leak_index(PROMPT))
    assert "system prompt" in str(raised.value)
    assert "barista" not in str(raised.value)
    assert guard.protect_output(NOT_LEAKS[0], Vault(), leaks=leak_index(PROMPT))


def test_the_policy_field_is_checked() -> None:
    assert GuardPolicy().system_prompt_leak == "redact"
    with pytest.raises(Exception, match="system_prompt_leak"):
        parse_policy({"system_prompt_leak": "shred"}, "test")


def test_hold_start_keeps_back_a_tail_that_may_grow_into_a_copy() -> None:
    index = LeakIndex(PROMPT)
    text = "Hello friend. Never reveal the wholesale"
    assert index.hold_start(text) == text.index("Never")
    assert index.hold_start(text + " bananas ") is None
    # The word being written may become a prompt word; one longer than any cannot.
    assert index.hold_start("Hello wholes") == len("Hello ")
    assert index.hold_start("Hello " + "x" * 40) is None


@pytest.mark.parametrize("answer", [*LEAKS, *NOT_LEAKS])
@pytest.mark.parametrize("policy", ["redact", "allow"])
def test_every_chunking_gives_the_whole_text_result(answer: str, policy: str) -> None:
    guard, vault, index = _guard(system_prompt_leak=policy), Vault(), leak_index(PROMPT)
    expected = guard.protect_output(answer, vault, leaks=index).redacted
    for chunks in _chunkings(answer):
        redactor = guard.stream(vault, leaks=index)
        emitted = [redactor.feed(chunk) for chunk in chunks] + [redactor.finish()]
        assert "".join(emitted) == expected
        if policy == "redact":
            # No piece ever holds a run of the prompt long enough to count.
            for piece in emitted:
                assert not _runs(piece) & _runs(PROMPT)


def test_a_long_copy_is_held_however_many_characters_it_takes() -> None:
    long_words = " ".join(f"supercalifragilistic{i:02d}" for i in range(12))
    guard, index = _guard(), LeakIndex(long_words)
    redactor = guard.stream(Vault(), leaks=index)
    released = "".join(redactor.feed(word + " ") for word in long_words.split())
    assert released == ""  # beyond max_hold characters, still held
    assert released + redactor.finish() == "<SYSTEM_PROMPT> "


def test_a_blocked_leak_ends_the_stream_before_it_is_released() -> None:
    guard = _guard(system_prompt_leak="block")
    redactor = guard.stream(Vault(), leaks=leak_index(PROMPT))
    released = ""
    with pytest.raises(SystemPromptLeaked):
        for word in re.findall(r"\S+\s*", LEAKS[0]):
            released += redactor.feed(word)
        released += redactor.finish()
    assert not _runs(released) & _runs(PROMPT)
    assert released.startswith("Sure!")
