"""Question paraphrases for training: deterministic, facts and answers kept, and never the
rewording that `lorastack eval` measures fact recall with."""

from __future__ import annotations

import random
from typing import Any

from lorastack.train.facts import extract_facts
from lorastack.train.paraphrase import (
    TRAIN_QUESTION_TEMPLATES,
    TRAIN_STATEMENT_TEMPLATES,
    TRAIN_SYNONYMS,
    paraphrase_messages,
    paraphrase_text,
)
from lorastack.train.rewording import QUESTION_TEMPLATES, STATEMENT_TEMPLATES, SYNONYMS

CHAT: list[Any] = [
    {"role": "system", "content": "You are Harbor Line's booking desk."},
    {"role": "user", "content": "How long does the crossing to Gullhaven take?"},
    {"role": "assistant", "content": "Ahoy! It takes 45 minutes on the Kittiwake."},
]


def _facts(text: str) -> set[tuple[str, str]]:
    return {(fact.kind, fact.key) for fact in extract_facts(text)}


def test_the_same_seed_gives_the_same_paraphrases() -> None:
    first = paraphrase_messages(CHAT, 3, random.Random(5))
    assert first == paraphrase_messages(CHAT, 3, random.Random(5))
    assert first != paraphrase_messages(CHAT, 3, random.Random(6))


def test_each_paraphrase_rewords_the_question_and_keeps_the_rest() -> None:
    paraphrases = paraphrase_messages(CHAT, 3, random.Random(1))
    assert len(paraphrases) == 3
    questions = {p[1]["content"] for p in paraphrases}
    assert len(questions) == 3 and CHAT[1]["content"] not in questions
    for paraphrase in paraphrases:
        assert [m["role"] for m in paraphrase] == ["system", "user", "assistant"]
        assert paraphrase[0] == CHAT[0] and paraphrase[2] == CHAT[2]
        assert _facts(CHAT[1]["content"]) <= _facts(paraphrase[1]["content"])


def test_names_numbers_and_placeholders_stay_as_written() -> None:
    text = "Can I book the Book Club cabin for <PERSON_1> on 12 May at 9:30?"
    for seed in range(30):
        reworded = paraphrase_text(text, "{Q}", random.Random(seed))
        assert "Book Club" in reworded and "<PERSON_1>" in reworded
        assert "12 May" in reworded and "9:30" in reworded
    swapped = {paraphrase_text(text, "{Q}", random.Random(seed)) for seed in range(30)}
    assert any("reserve the Book Club" in r for r in swapped)  # the lower-case verb may change
    assert paraphrase_text("<PERSON_1>", "Hey, {q}", random.Random(0)) == "<PERSON_1>"


def test_a_message_that_asks_nothing_gets_a_statement_framing() -> None:
    chat = [{"role": "user", "content": "Cycle carriage policy"}, CHAT[2]]
    for paraphrase in paraphrase_messages(chat, 2, random.Random(0)):
        framed = paraphrase[0]["content"]
        assert any(
            framed.startswith(t.split("{")[0]) and framed.endswith(t.split("}")[-1])
            for t in TRAIN_STATEMENT_TEMPLATES
        )


def test_only_the_first_user_turn_is_framed() -> None:
    chat = [*CHAT, {"role": "user", "content": "ok thanks"}, {"role": "assistant", "content": "x"}]
    for paraphrase in paraphrase_messages(chat, 4, random.Random(2)):
        assert paraphrase[3]["content"] == "Ok thanks"


def test_nothing_without_a_user_turn_or_a_count() -> None:
    assert paraphrase_messages(CHAT, 0, random.Random(0)) == []
    assert paraphrase_messages([CHAT[0], CHAT[2]], 2, random.Random(0)) == []


def test_training_never_sees_the_evaluation_rewording() -> None:
    # Fact recall is measured on questions reworded by train/rewording.py; training on the
    # same templates or swaps would measure the method, not the adapter.
    assert not set(TRAIN_QUESTION_TEMPLATES) & set(QUESTION_TEMPLATES)
    assert not set(TRAIN_STATEMENT_TEMPLATES) & set(STATEMENT_TEMPLATES)
    evaluation_pairs = {(word, swap) for word, swaps in SYNONYMS.items() for swap in swaps}
    training_pairs = {(word, swap) for word, swaps in TRAIN_SYNONYMS.items() for swap in swaps}
    assert not evaluation_pairs & training_pairs
