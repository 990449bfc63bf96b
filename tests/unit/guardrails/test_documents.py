"""Dates of birth, passport and driving licence numbers, UK NINOs: found with their context.

The analyzer runs over a blank spaCy pipeline (a tokenizer, no NER model): these
recognizers read the text alone.
"""

from __future__ import annotations

import pytest

from lorastack.guardrails.detector import PresidioDetector, build_analyzer
from lorastack.guardrails.entities import DATE_OF_BIRTH, DRIVER_LICENSE, PASSPORT_NUMBER, UK_NINO

TYPES = [DATE_OF_BIRTH, PASSPORT_NUMBER, DRIVER_LICENSE, UK_NINO]


@pytest.fixture(scope="module")
def detector() -> PresidioDetector:
    import spacy

    return PresidioDetector(build_analyzer(spacy.blank("en")))


def _found(detector: PresidioDetector, text: str) -> list[tuple[str, str, float]]:
    return [(text[f.start : f.end], f.type, f.score) for f in detector.detect(text, TYPES)]


@pytest.mark.parametrize(
    ("before", "value", "after", "kind"),
    [
        ("My date of birth is ", "12/03/1985", ".", DATE_OF_BIRTH),
        ("DOB: ", "1985-03-12", ", is that enough?", DATE_OF_BIRTH),
        ("I was born on the ", "3rd of March 1985", " in Leeds.", DATE_OF_BIRTH),
        ("born ", "March 3rd, 1985", "", DATE_OF_BIRTH),
        ("My birthday is ", "14 June 1990", "", DATE_OF_BIRTH),
        ("", "12 March 1985", " is my date of birth", DATE_OF_BIRTH),  # context after
        ("Passport number ", "123456789", ", expires 2030", PASSPORT_NUMBER),
        ("UK passport no. ", "925076473", "", PASSPORT_NUMBER),
        ("my passport is ", "GB1234567", "", PASSPORT_NUMBER),
        ("Passport: ", "C01X00T47", "", PASSPORT_NUMBER),
        ("My driving licence number is ", "MORGA753116SM9IJ", ".", DRIVER_LICENSE),
        ("driver's license ", "A1234567", " from California", DRIVER_LICENSE),
        ("DL# ", "S123-456-78-901-0", "", DRIVER_LICENSE),
        ("My NI number is ", "AB 12 34 56 C", ".", UK_NINO),
    ],
)
def test_a_value_near_its_context_words_is_found(
    detector: PresidioDetector, before: str, value: str, after: str, kind: str
) -> None:
    assert _found(detector, before + value + after) == [(value, kind, 0.85)]


def test_a_nino_alone_is_found_with_a_lower_score(detector: PresidioDetector) -> None:
    assert _found(detector, "Please update my record, JG103759A is the right one.") == [
        ("JG103759A", UK_NINO, 0.55)
    ]


@pytest.mark.parametrize(
    "text",
    [
        "My subscription renewed on 12/03/1985 but I cancelled.",  # a date, no birth words
        "Can I order a birthday cake for 14 June?",
        "I was born here. The order from 12/03/2025 is still late.",  # another sentence
        "Order 123456789 and parcel GB1234567 are missing.",  # passport shapes, no context
        "Ticket A1234567 was closed.",  # a licence shape, no context
        "The license key 1234567890 doesn't activate.",  # a software licence
        "national insurance QQ123456C",  # QQ is never issued (examples use it)
        "ticket TR123456A was reopened",  # NINO-shaped after a reference word
        "ref ab123456c",  # lower case alone
        "my passport photo was rejected; order 123456789 is pending since last week",
    ],
)
def test_look_alikes_without_context_are_not_found(detector: PresidioDetector, text: str) -> None:
    assert _found(detector, text) == []
