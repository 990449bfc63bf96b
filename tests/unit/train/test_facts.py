"""Facts of a reference answer: what counts as one, how spellings meet, and recall."""

from __future__ import annotations

import pytest

from lorastack.train.facts import extract_facts, fact_recall, recalled


def _keys(text: str) -> list[tuple[str, str]]:
    return [(fact.kind, fact.key) for fact in extract_facts(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("We open from 7am to 6:30 p.m.", [("time", "7am"), ("time", "6:30pm")]),
        ("Last orders at 19:30, or at noon.", [("time", "7:30pm"), ("time", "12pm")]),
        ("A latte is £3.50, a bag 12 dollars.", [("money", "£3.5"), ("money", "$12")]),
        ("It costs $1.2k a year.", [("money", "$1200")]),
        ("Save 20 per cent, or 15% off", [("percent", "20%"), ("percent", "15%")]),
        ("Up to 12,000 users and 2MB files.", [("quantity", "12000 user"), ("quantity", "2 mb")]),
        ("A 30-day trial, then two weeks", [("quantity", "30 day"), ("quantity", "2 week")]),
        ("Refunds take 5 working days.", [("quantity", "5 working day")]),
        ("Error LL-204 means a duplicate.", [("code", "ll-204")]),
        ("Table 14 is free.", [("number", "14")]),
    ],
)
def test_numbers_with_their_units_are_facts(text: str, expected: list[tuple[str, str]]) -> None:
    assert _keys(text) == expected


def test_names_are_capitalised_runs_or_capitalised_words_inside_a_sentence() -> None:
    keys = _keys(
        "Absolutely! We're at 14 Elm Road, near the Old Mill. Go to Settings > Invoice "
        "Templates and select Save.\n\nKind regards,\nThe LedgerLine Support Desk"
    )
    assert ("name", "elm road") in keys
    assert ("name", "old mill") in keys  # "the" is dropped
    assert ("name", "settings") in keys and ("name", "save") in keys
    assert ("name", "invoice templates") in keys
    assert ("name", "ledgerline support desk") in keys
    names = {key for kind, key in keys if kind == "name"}
    # Lone words opening a sentence are not names; greetings and pronouns never are.
    assert not names & {"absolutely", "go", "kind", "we're", "the"}


def test_placeholders_and_list_numbers_are_not_facts() -> None:
    assert _keys("Hello <PERSON_1>,\n1. Open it.\n2. Close it.") == []


@pytest.mark.parametrize(
    ("reference", "answer"),
    [
        ("For up to 12,000 users.", "for 12000 users"),
        ("A 30-day free trial.", "free for 30 days"),
        ("Open at 7am.", "we open at 07:00"),
        ("Open at 7am.", "from 7 a.m. sharp"),
        ("Only £4.00.", "£4 only"),
        ("Save 20%.", "save 20 percent"),
        ("We're on Elm Road.", "ELM ROAD, near the bakery"),
        ("Closed on Christmas Day.", "closed on christmas day"),
        ("Open on Sundays.", "open every Sunday"),
        ("Closed on New Year's Day.", "not on new year's day"),
        ("Table 14 is free.", "14 seats are left"),  # a bare number: any unit will do
    ],
)
def test_spellings_of_one_fact_meet(reference: str, answer: str) -> None:
    facts = extract_facts(reference)
    assert facts
    assert recalled(facts, answer) == [True] * len(facts)


@pytest.mark.parametrize(
    ("reference", "answer"),
    [
        ("For up to 12,000 users.", "for 1200 users"),
        ("A 30-day free trial.", "a 30-week trial"),
        ("Open at 7am.", "open at 7pm"),
        ("Only £4.00.", "only $4"),
        ("We're on Elm Road.", "on Elm Street"),
        ("Use Settings to change it.", "use Settingsmenu to change it"),
    ],
)
def test_a_different_fact_is_not_recalled(reference: str, answer: str) -> None:
    assert recalled(extract_facts(reference), answer) == [False]


def test_recall_is_the_share_of_all_facts_stated() -> None:
    references = ["Open 7am to 6pm, Monday to Friday.", "We're at 14 Elm Road.", "Hi there!"]
    answers = ["We open at 7 am until 6pm.", "At 14 Elm Road!", "Hello"]
    # 4 + 2 facts, 2 + 2 of them stated; the factless reference counts for nothing.
    assert fact_recall(references, answers) == pytest.approx(4 / 6)
    assert fact_recall(["Hi there!"], ["Hello"]) is None
    with pytest.raises(ValueError):
        fact_recall(references, answers[:2])
