"""Places after a cue about where the customer is (issue 19): what spaCy's small model
misses in running text ("moved from Ghent to Düsseldorf")."""

import pytest
from presidio_analyzer import PatternRecognizer

from lorastack.guardrails.entities import LOCATION
from lorastack.guardrails.recognizers import places


@pytest.fixture(scope="module")
def recognizer() -> PatternRecognizer:
    (found,) = places.recognizers()
    assert isinstance(found, PatternRecognizer)
    return found


def _places(recognizer: PatternRecognizer, text: str) -> list[str]:
    results = recognizer.analyze(text, [LOCATION])
    assert all(r.score == places.CUE_SCORE for r in results)
    return [text[r.start : r.end] for r in results]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "We just moved from Ghent to Düsseldorf, do I need to update anything?",
            ["Ghent", "Düsseldorf"],
        ),
        ("I live in Cluj-Napoca and the courier says it's out of range.", ["Cluj-Napoca"]),
        ("We're based in Milton Keynes, can the invoice show that?", ["Milton Keynes"]),
        ("i'm staying in Ōita until Friday", ["Ōita"]),
        ("Relocating to São Paulo next month.", ["São Paulo"]),
    ],
)
def test_a_place_after_a_cue_is_found_whole(
    recognizer: PatternRecognizer, text: str, expected: list[str]
) -> None:
    assert _places(recognizer, text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Delivery was promised for 12/03/2025 and then moved to March 3rd.",
        "We moved to the new plan last week.",
        "I'm based in the UK office, not at home.",
        "we moved to a bigger table at the back",
        "I live in hope that the parcel turns up.",
    ],
)
def test_no_place_without_a_capitalised_place_after_the_cue(
    recognizer: PatternRecognizer, text: str
) -> None:
    assert _places(recognizer, text) == []
