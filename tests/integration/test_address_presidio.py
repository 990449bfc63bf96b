"""Addresses with real Presidio and spaCy: one ADDRESS over the places and names inside it."""

import pytest

from lorastack.guardrails.detector import PresidioDetector
from lorastack.guardrails.entities import ADDRESS, LOCATION, Direction
from lorastack.guardrails.guard import Guard
from lorastack.guardrails.policy import default_policy
from lorastack.guardrails.runtime import limit_numpy_blas_threads

pytestmark = pytest.mark.integration

CASES = [
    ("Ship it to {} please.", "1428 Elm Street, Springfield, IL 62704"),
    ("{} is where I live now.", "Flat 3, 27 Baker Street, London NW1 6XE"),
    ("The invoice should show {}.", "88 Colin P Kelly Jr St, San Francisco, CA 94107"),
    ("Please send it to {} today.", "Hauptstraße 5, 10115 Berlin"),
    ("Livraison au {} svp", "12 rue de la Paix, 75002 Paris"),
]


@pytest.mark.parametrize(("template", "value"), CASES)
def test_an_address_is_masked_whole_over_spacys_places(template: str, value: str) -> None:
    limit_numpy_blas_threads()
    detector = PresidioDetector()
    text = template.format(value)
    raw = detector.detect(text, [ADDRESS, LOCATION, "PERSON"])
    assert any(text[f.start : f.end] == value and f.type == ADDRESS for f in raw)
    result = Guard(default_policy(), detector).scan(text, Direction.INPUT)
    assert result.redacted == template.format("<ADDRESS_1>")
    assert [f.type for f in result.findings] == [ADDRESS]
