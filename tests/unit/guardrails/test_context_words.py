"""Context words raise a custom entity's score, with Presidio's pattern recognizers.

The analyzer runs over a blank spaCy pipeline (a tokenizer, no NER model):
context words need the words, not the model.
"""

from __future__ import annotations

from typing import Any

import pytest

from lorastack.guardrails.context_words import supporting_word, words_before
from lorastack.guardrails.detector import PresidioDetector, build_analyzer
from lorastack.guardrails.entities import PHONE_NUMBER
from lorastack.guardrails.guard import Guard
from lorastack.guardrails.policy import GuardPolicy

ORDER = {
    "type": "ORDER_NUMBER",
    "patterns": [r"\b\d{6}\b"],
    "context": ["order", "ref"],
    "score": 0.3,  # below the default threshold (0.5): found only with a context word
}


@pytest.fixture(scope="module")
def blank() -> Any:
    import spacy

    return spacy.blank("en")


@pytest.fixture(scope="module")
def detector(blank: Any) -> PresidioDetector:
    return PresidioDetector(build_analyzer(blank))


def _guard(detector: PresidioDetector, **entity: Any) -> Guard:
    return Guard(GuardPolicy.model_validate({"custom": [{**ORDER, **entity}]}), detector)


@pytest.mark.parametrize(
    "text",
    [
        "Where is my order 448812?",
        "ORDER: 448812",
        "orders placed last week: 448812",  # a substring: the plural matches too
        "Ref. 448812 please",
        "order lost in the depot, 448812",  # the fifth word before
    ],
)
def test_a_custom_entity_is_found_with_a_context_word_near(
    detector: PresidioDetector, text: str
) -> None:
    findings = _guard(detector).find(text)
    assert [(text[f.start : f.end], f.type) for f in findings] == [("448812", "ORDER_NUMBER")]
    assert findings[0].score == pytest.approx(0.65)  # 0.3 + 0.35


@pytest.mark.parametrize(
    "text",
    [
        "The parcel weighs 448812 grams",
        "448812 is my order",  # context words count before the value only
        "order lost in the big depot, 448812",  # the sixth word before
    ],
)
def test_a_custom_entity_is_not_found_without_a_context_word_near(
    detector: PresidioDetector, text: str
) -> None:
    assert _guard(detector).find(text) == []


def test_a_context_word_lifts_a_low_score_to_the_minimum(detector: PresidioDetector) -> None:
    (finding,) = detector.detect(
        "order 448812",
        [],
        _guard(detector, score=0.01).policy.custom_entities(),
    )
    assert finding.score == pytest.approx(0.4)


def test_the_analyzers_own_recognizers_keep_their_scores(detector: PresidioDetector) -> None:
    # Presidio's phone recognizer declares "phone" and "call" as context words.
    found = detector.detect("call my phone: +44 20 7946 0958", [PHONE_NUMBER])
    assert [(f.type, f.score) for f in found] == [(PHONE_NUMBER, 0.4)]


def test_words_before_skip_punctuation_and_include_the_value_itself(blank: Any) -> None:
    doc = blank("one, two. three four five six seven ref#448812 end")
    start = doc.text.index("ref#")
    assert words_before(doc, start, 5) == ["ref#448812", "seven", "six", "five", "four", "three"]
    assert words_before(doc, len(doc.text), 5) == []


def test_supporting_word_matches_within_words_ignoring_case() -> None:
    assert supporting_word(["Order", "ref"], ["reorders"]) == "Order"
    assert supporting_word(["order"], ["ordinal", "card"]) is None
