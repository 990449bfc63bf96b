"""The postal address recognizer (issue 19): whole addresses found, look-alikes left alone."""

from typing import Any

import pytest

from lorastack.guardrails.entities import ADDRESS, Direction, Finding
from lorastack.guardrails.guard import Guard
from lorastack.guardrails.policy import default_policy
from lorastack.guardrails.recognizers import address
from tests.fakes import RegexDetector

ADDRESSES = [
    # US: commas or not, units, full state names, ZIP+4, lower case
    ("Ship it to {} please.", "1428 Elm Street, Springfield, IL 62704"),
    ("Please send it to {}.", "350 Fifth Avenue, Apt 4B, New York, NY 10118"),
    ("Deliver to {} before Friday", "221 W 34th St Suite 300 Chicago IL 60616"),
    ("We moved to {} last month.", "1600 Pennsylvania Ave NW, Washington, DC 20500-0003"),
    ("I'm at {} now.", "2020 Market St, Philadelphia, Pennsylvania 19103"),
    ("my address is {}", "742 evergreen terrace, springfield, or 97477"),
    ("Change it to {}?", "4500 Lakeview Drive #210, Denver, CO 80202"),
    # UK and Ireland: a flat before the number, postcodes with and without a comma
    ("{} is where I live now.", "Flat 3, 27 Baker Street, London NW1 6XE"),
    ("It was posted to {} but I moved.", "221B Baker Street, London, NW1 6XE"),
    ("my address: {}", "14 kings road, manchester m1 4be"),
    ("My address is {}.", "14 Main Street, Dingle, Co. Kerry, V92 X2Y3"),
    ("{} please", "Apartment 5, 22 Grafton Street, Dublin 2, D02 XY45"),
    # continental Europe: street first, or the type before the name
    ("Meine Adresse: {}", "Hauptstraße 5, 10115 Berlin"),
    ("Please ship to {}.", "Goethestr. 12a, 80336 München"),
    ("send to {} please", "Am Markt 3, 50667 Köln"),
    ("I live at {}.", "Mariahilfer Straße 88, 1070 Wien"),
    ("Livraison au {} svp", "12 rue de la Paix, 75002 Paris"),
    ("my address is {}", "3 bis boulevard Voltaire, 69003 Lyon"),
    ("{} is the shop address", "Rue Neuve 45, 1000 Bruxelles"),
    ("Stuur het naar {}", "Keizersgracht 123, 1015 CJ Amsterdam"),
    ("Deliver to {} please.", "Damstraat 7-II, 1012 JL Amsterdam"),
    ("Mi dirección: {}", "Calle Mayor 10, 3º B, 28013 Madrid"),
    ("Ship to {}, thanks.", "Piazza San Marco 1, 30124 Venezia"),
    ("Send it to {}.", "Berliner Straße 12, 60311 Frankfurt am Main"),
    ("{}", "Rua Augusta 100, 1100-053 Lisboa"),
    # a street line alone, after a word that introduces it
    ("the parcel went to {} instead of my house", "77 Sunset Boulevard"),
]

LOOK_ALIKES = [
    "Where is my order ORD-2025-44812? It was supposed to arrive yesterday.",
    "Tracking number 1Z999AA10123456784 hasn't updated.",
    "Since updating to v2.14.3 the bank reconciliation screen is blank.",
    "My 500 Series espresso machine leaks from the steam wand.",
    "I'd love another Route 66 mug, the last one broke.",
    "Is the 3 Main Street Blend available in whole beans?",
    "Please switch my subscription to 3 Main Street Blend next month.",
    "Please add 3 Baker Street Roast to my standing order.",
    "One Park Avenue latte and two croissants, please.",
    "We need 12 boxes of Oxford notebooks for the office.",
    "I bought 2 Broadway Tote bags and 1 Madison Avenue scarf.",
    "A large oat latte is $4.50 now? Can the courier come after 10:30 am?",
    "Model CA 94107 is out of stock.",
    "I live on the 4th floor and the lift is broken since 2 weeks.",
    "I am 5 minutes away from the shop.",
    "Is the Via Roma 15 ml espresso cup dishwasher safe?",
    "Call me on 020 7946 0958 or +44 20 7946 0000.",
]


def _spans(text: str) -> list[str]:
    return [text[start:end] for start, end, _ in address.find_addresses(text)]


@pytest.mark.parametrize(("template", "value"), ADDRESSES)
def test_an_address_is_found_whole(template: str, value: str) -> None:
    text = template.format(value)
    assert _spans(text) == [value]


@pytest.mark.parametrize("text", LOOK_ALIKES)
def test_look_alikes_are_left_alone(text: str) -> None:
    assert _spans(text) == []


def test_several_addresses_in_one_message() -> None:
    text = (
        "Send both boxes to 9 Harbor Blvd, Seattle, WA 98101 and "
        "310 Pine Street, Portland, OR 97204, and the invoice to Via Roma 15, 00184 Roma."
    )
    assert _spans(text) == [
        "9 Harbor Blvd, Seattle, WA 98101",
        "310 Pine Street, Portland, OR 97204",
        "Via Roma 15, 00184 Roma",
    ]


def test_a_street_with_its_postcode_scores_above_a_street_alone() -> None:
    (full,) = address.find_addresses("to 1428 Elm Street, Springfield, IL 62704")
    (alone,) = address.find_addresses("to 1428 Elm Street")
    assert full[2] == address.FULL_SCORE > alone[2] == address.STREET_SCORE
    # above spaCy's 0.85 for the names and places inside an address
    assert alone[2] > 0.85


def test_offsets_hold_when_lower_casing_lengthens_a_letter() -> None:
    text = "İstanbul: ship to 27 Baker Street, London NW1 6XE"
    assert _spans(text) == ["27 Baker Street, London NW1 6XE"]


def test_the_presidio_recognizer_reports_addresses() -> None:
    (recognizer,) = address.recognizers()
    text = "Ship it to 1428 Elm Street, Springfield, IL 62704 please."
    (result,) = recognizer.analyze(text, [ADDRESS])
    assert result.entity_type == ADDRESS
    assert text[result.start : result.end] == "1428 Elm Street, Springfield, IL 62704"


class _WithAddresses(RegexDetector):
    """The regex stand-in for Presidio (a place: "Leeds") plus the real address recognizer."""

    def detect(self, text: str, entity_types: Any, custom: Any = ()) -> list[Any]:
        found = super().detect(text, entity_types, custom)
        found += [Finding(s, e, ADDRESS, score) for s, e, score in address.find_addresses(text)]
        return found


def test_an_address_wins_over_a_place_inside_it_and_is_masked_as_one() -> None:
    guard = Guard(default_policy(), _WithAddresses())
    text = "I'm Jane Porter, 5 Victoria Avenue, Leeds, LS6 2AB. Is it on its way?"
    result = guard.scan(text, Direction.INPUT)
    assert result.redacted == "I'm <PERSON_1>, <ADDRESS_1>. Is it on its way?"
    assert [f.type for f in result.findings] == ["PERSON", ADDRESS]
    # the place alone, outside an address, is still a place
    alone = guard.scan("We moved from Leeds last year.", Direction.INPUT)
    assert alone.redacted == "We moved from <LOCATION_1> last year."


def test_a_spanish_floor_is_kept_after_the_guards_normalisation() -> None:
    # NFKC turns `3º` into `3o` before detection: the address must still be whole.
    guard = Guard(default_policy(), _WithAddresses())
    result = guard.scan("Mi dirección: Calle Mayor 10, 3º B, 28013 Madrid.", Direction.INPUT)
    assert result.redacted == "Mi dirección: <ADDRESS_1>."
