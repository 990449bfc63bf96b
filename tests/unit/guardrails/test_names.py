"""The gazetteer name recognizer, on the shipped gazetteer (no spaCy model needed)."""

import pytest

from lorastack.guardrails.entities import PERSON
from lorastack.guardrails.recognizers import names
from lorastack.guardrails.recognizers.names import (
    FIRST_NAME_SCORE,
    FULL_NAME_SCORE,
    Gazetteer,
    find_names,
    gazetteer,
)


def _found(text: str) -> list[str]:
    return [text[start:end] for start, end, _ in find_names(text)]


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Please add Siobhán Ní Bhriain as a second user.", "Siobhán Ní Bhriain"),
        ("the refund went to siobhán ní bhriain instead", "siobhán ní bhriain"),
        ("INVOICE FOR WOJCIECH PRZYBYLSKI, PLEASE", "WOJCIECH PRZYBYLSKI"),
        ("Our bookkeeper Khalid bin Hamdan needs access.", "Khalid bin Hamdan"),
        ("Send it to Omar El-Sayed today.", "Omar El-Sayed"),
        ("Can you move it to Venkatesh Subramanian?", "Venkatesh Subramanian"),
        ("The parcel went to Choi Ji-woo next door.", "Choi Ji-woo"),
        ("booking for nguyen thi phuong, table of four", "nguyen thi phuong"),
        ("Pádraig Mac Suibhne will pick it up.", "Pádraig Mac Suibhne"),
        ("It was signed by ana de souza.", "ana de souza"),
    ],
)
def test_full_names_are_found_with_exact_spans(text: str, name: str) -> None:
    start = text.index(name)
    assert find_names(text) == [(start, start + len(name), FULL_NAME_SCORE)]


def test_a_surname_after_an_irish_particle_needs_no_gazetteer_entry() -> None:
    # "Chonaill" is too rare to be listed; after "Ní" it is a surname all the same.
    assert "chonaill" not in gazetteer().flags
    assert _found("I was helped by Aoife Ní Chonaill last week.") == ["Aoife Ní Chonaill"]


def test_one_first_name_counts_only_after_a_cue() -> None:
    assert find_names("thanks aoife") == [(7, 12, FIRST_NAME_SCORE)]
    assert _found("I spoke to Wojciech yesterday.") == ["Wojciech"]
    assert _found("Wojciech yesterday.") == []


@pytest.mark.parametrize(
    "text",
    [
        "One Rose latte and a Java Mocha to take away, please.",
        "Do you have the Jordan sneakers in a size 10?",
        "We are flying to Paris on Friday.",
        "Can I pay with Apple Pay?",
        "will rose gold cases be back in stock?",
        "grant access to the shared folder for the whole team",
        "Is the Earl Grey loose leaf?",
        "Please send the refund to IBAN ES91 2100 0418 4502 0005 1332.",
        "Thanks Will, and Grant too.",
    ],
)
def test_product_drink_and_place_names_are_not_names(text: str) -> None:
    assert find_names(text) == []


@pytest.mark.parametrize(
    "text", ["12 Patrick Street, Cork", "Calle Mayor 5, Madrid", "Khalid bin Hamdan Road"]
)
def test_street_names_are_left_to_the_address_recognizer(text: str) -> None:
    assert find_names(text) == []


def test_names_must_be_written_alike() -> None:
    # A capitalised word and a lower-case one ("Rose latte") are not one name.
    assert _found("Siobhán przybylski") == []
    assert _found("Siobhán Przybylski") == ["Siobhán Przybylski"]


def test_words_glued_to_an_address_are_left_to_the_email_recognizer() -> None:
    assert _found("please cc venkatesh.subramanian@example.com") == []


def test_the_gazetteer_is_parsed_by_groups_of_flags() -> None:
    table = Gazetteer.parse("f\taoife niamh\nl\tbhriain\nfl\tkim")
    assert table.flags == {"aoife": 1, "niamh": 1, "bhriain": 2, "kim": 3}
    assert find_names("Niamh Bhriain", table) == [(0, 13, FULL_NAME_SCORE)]


def test_the_shipped_gazetteer_is_small_and_lower_case() -> None:
    flags = gazetteer().flags
    assert 50_000 < len(flags) < 300_000
    assert all(name == name.lower() for name in list(flags)[:1000])
    # Stop words and support-chat words are never names, whatever someone called a child.
    assert not {"the", "hello", "thanks", "order", "please"} & flags.keys()


def test_the_presidio_recognizer_reports_person() -> None:
    [recognizer] = names.recognizers()
    results = recognizer.analyze("Please add Siobhán Ní Bhriain now.", [PERSON], None)
    assert [(r.entity_type, r.start, r.end, r.score) for r in results] == [
        (PERSON, 11, 29, FULL_NAME_SCORE)
    ]
