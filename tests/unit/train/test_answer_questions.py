"""Questions made of each answer's own phrases: distinctive phrases only, no facts given
away, deterministic, and never the rewording `lorastack eval` measures fact recall with."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from lorastack.train.answer_questions import (
    PAIR_TEMPLATES,
    SINGLE_TEMPLATES,
    Phrase,
    answer_question_chats,
    distinctive_phrases,
    noun_phrases,
    questions_for,
)
from lorastack.train.facts import extract_facts
from lorastack.train.paraphrase import TRAIN_QUESTION_TEMPLATES, TRAIN_STATEMENT_TEMPLATES
from lorastack.train.rewording import QUESTION_TEMPLATES, STATEMENT_TEMPLATES

SYSTEM = {"role": "system", "content": "You are Harbor Line's booking desk."}
CAR = "Ahoy! A standard car costs $42.00 each way, driver included."
WIFI = "Ahoy! Free Wi-Fi is available in the Chart Room Lounge."
CABIN = "Ahoy! The Porthole Cabin has fresh linen and a washbasin."


def _phrase(text: str, name: bool = False) -> Phrase:
    return Phrase(text, frozenset(text.lower().split()), name)


# What the spaCy pipeline would find, without loading it: "ahoy" in every answer.
PHRASES = {
    CAR: [_phrase("Ahoy"), _phrase("Standard car"), _phrase("driver")],
    WIFI: [_phrase("Ahoy"), _phrase("Free Wi-Fi", name=True), _phrase("Chart Room Lounge", True)],
    CABIN: [_phrase("Ahoy"), _phrase("Porthole Cabin", True), _phrase("washbasin")],
}


def fake_phrases(texts: Sequence[str]) -> list[list[Phrase]]:
    return [PHRASES[text] for text in texts]


def _chat(question: str, answer: str) -> list[Any]:
    return [SYSTEM, {"role": "user", "content": question}, {"role": "assistant", "content": answer}]


CHATS = [
    _chat("How much is it to take a car?", CAR),
    _chat("Car fares and check-in", CAR),
    _chat("Can I get online on board?", WIFI),
    _chat("Do you have cabins?", CABIN),
]


def test_a_phrase_most_answers_share_is_left_out() -> None:
    kept = distinctive_phrases(fake_phrases([CAR, WIFI, CABIN]), max_shared=2)
    assert [[p.text for p in group] for group in kept] == [
        ["Standard car", "driver"],
        ["Free Wi-Fi", "Chart Room Lounge"],
        ["Porthole Cabin", "washbasin"],
    ]
    # With every answer allowed to share it, the greeting counts as distinctive again.
    assert "Ahoy" in [p.text for p in distinctive_phrases(fake_phrases([CAR, WIFI]), 2)[0]]


def test_each_distinct_answer_is_asked_for_by_its_own_phrases() -> None:
    made = answer_question_chats(CHATS, 2, random.Random(0), fake_phrases)
    by_answer: dict[str, list[str]] = {}
    for chat in made:
        assert chat[0] == SYSTEM
        assert [m["role"] for m in chat] == ["system", "user", "assistant"]
        by_answer.setdefault(chat[-1]["content"], []).append(chat[1]["content"])
    assert set(by_answer) == {CAR, WIFI, CABIN}  # the car answer once, though asked twice
    for answer, questions in by_answer.items():
        assert len(questions) == len(set(questions)) == 2
        own = [p.text.lower() for p in PHRASES[answer][1:]]
        for question in questions:
            assert any(phrase in question.lower() for phrase in own), question
            assert "ahoy" not in question.lower()


def test_the_same_seed_gives_the_same_questions() -> None:
    first = answer_question_chats(CHATS, 2, random.Random(7), fake_phrases)
    assert first == answer_question_chats(CHATS, 2, random.Random(7), fake_phrases)
    assert first != answer_question_chats(CHATS, 2, random.Random(8), fake_phrases)


def test_names_keep_their_capitals_and_other_phrases_read_as_inside_a_question() -> None:
    phrases = [_phrase("Extra bags"), _phrase("Porthole Cabin", name=True)]
    questions = questions_for(phrases, 4, random.Random(0))
    assert questions
    for question in questions:
        assert "Porthole Cabin" in question or "xtra bags" in question
        assert "Info on Extra" not in question and "and Extra" not in question
        assert "porthole" not in question


def test_two_phrases_of_one_question_share_no_word() -> None:
    phrases = [_phrase("ski wax"), _phrase("wax"), _phrase("snow")]
    for seed in range(20):
        for question in questions_for(phrases, 2, random.Random(seed)):
            assert question.lower().count("wax") <= 1, question


def test_nothing_without_a_count_phrases_or_an_answer() -> None:
    rng = random.Random(0)
    state = rng.getstate()
    assert answer_question_chats(CHATS, 0, rng, fake_phrases) == []
    assert rng.getstate() == state  # off: the rest of the augmentation draws as before
    assert questions_for([], 3, rng) == []
    no_answer = [[SYSTEM, {"role": "user", "content": "Hello?"}]]
    assert answer_question_chats(no_answer, 2, rng, fake_phrases) == []


def test_the_bundled_pipeline_finds_phrases_without_numbers() -> None:
    texts = [
        "Ahoy! A standard car up to 5 metres long costs $42.00 each way, driver included. "
        "Vehicle check-in closes 30 minutes before departure.",
        "Ahoy! Free Wi-Fi is available in the Chart Room Lounge on every crossing.",
    ]
    car, wifi = noun_phrases(texts)
    texts_found = [p.text for p in car]
    assert "driver" in texts_found
    assert "standard car" in texts_found  # the article left out
    assert any(text.startswith("Vehicle check-in") for text in texts_found)
    for phrase in car + wifi:
        assert not any(ch.isdigit() for ch in phrase.text), phrase
        assert not extract_facts(phrase.text) or phrase.name, phrase  # no number, price, time
    names = {p.text: p.name for p in wifi}
    assert names.get("Chart Room Lounge") is True
    assert names.get("crossing") is False


def test_training_never_sees_the_evaluation_rewording() -> None:
    ours = set(PAIR_TEMPLATES) | set(SINGLE_TEMPLATES)
    assert not ours & (set(QUESTION_TEMPLATES) | set(STATEMENT_TEMPLATES))
    assert not ours & (set(TRAIN_QUESTION_TEMPLATES) | set(TRAIN_STATEMENT_TEMPLATES))
