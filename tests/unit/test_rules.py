"""Brand rules: each kind passing and failing, refusals of malformed rules, pass rates."""

from __future__ import annotations

from typing import Any

import pytest

from lorastack.rules import (
    BrandRule,
    RuleError,
    check_answer,
    count_sentences,
    parse_rules,
    pass_rates,
)

CUP = "\N{HOT BEVERAGE}"


def _rule(**fields: Any) -> BrandRule:
    (rule,) = parse_rules([fields])
    return rule


@pytest.mark.parametrize(
    ("fields", "passing", "failing"),
    [
        ({"ends_with": CUP}, f"See you soon! {CUP}  ", f"See you {CUP} soon!"),
        ({"ends_with": r"Kind regards,\s+The Desk"}, "Done.\n\nKind regards,\nThe Desk", "Bye."),
        ({"starts_with": "Thank you|Good day"}, "  Good day, and welcome.", "Hi. Thank you."),
        ({"must_match": r"\bLL-\d+\b"}, "Error LL-204 means...", "Error LL means..."),
        ({"must_not_match": r"(?i)as an ai"}, "I brew coffee.", "As an AI, I cannot brew."),
        ({"must_mention": ["Bean There", "barista"]}, "Your BARISTA says hi", "Hi from us"),
        ({"must_not_mention": ["Starbucks"]}, "We brew our own.", "Better than starbucks!"),
        ({"max_words": 3}, "one two three", "one two three four"),
        ({"max_sentences": 2}, "One. Two!", "One. Two? Three"),
        ({"max_exclamations": 1}, "Yes! Great.", "Yes! Great!"),
        ({"no_emoji": True}, "Thank you. Kind regards", f"Thank you {CUP}"),
    ],
)
def test_each_kind_passes_and_fails(fields: dict[str, Any], passing: str, failing: str) -> None:
    rule = _rule(**fields)
    assert rule.label == rule.kind == next(iter(fields))
    assert rule.passes(passing)
    assert not rule.passes(failing)


def test_ignore_case_applies_to_regexes() -> None:
    assert not _rule(starts_with="thank you").passes("Thank you for asking.")
    assert _rule(starts_with="thank you", ignore_case=True).passes("Thank you for asking.")


def test_mentions_match_whole_words_in_any_case() -> None:
    competitors = _rule(must_not_mention=["Pret", "Caffe Nero"])
    assert competitors.passes("That tonic feels pretty festive.")  # "pretty" is not "Pret"
    assert competitors.passes("Nero fiddled; the caffeine stayed.")
    assert not competitors.passes("Cheaper than PRET.")
    assert not competitors.passes("caffe nero is further up the road")
    assert _rule(must_mention=["latte"]).passes("A latte, please.")
    assert not _rule(must_mention=["latte"]).passes("Lattes are great.")


def test_list_numbers_are_not_sentence_ends() -> None:
    steps = "Thank you.\n1. Go to Settings.\n2. Select Save.\n\nKind regards,\nThe Desk"
    assert count_sentences(steps) == 4
    assert count_sentences("We open at 7. Come by") == 2
    assert count_sentences("Version 3.5 is out") == 1
    assert count_sentences("   ") == 0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([{"max_wrods": 3}], "rule 1: max_wrods: Extra inputs are not permitted"),
        ([{"ends_with": "("}], "rule 1: ends_with: not a valid regular expression"),
        ([{"max_words": 3, "no_emoji": True}], r"exactly one of .*\(found: max_words, no_emoji\)"),
        ([{"name": "short"}], r"\(found: none\)"),
        ([{"max_words": 3}, {"max_words": 5}], "more than one rule is named max_words"),
        ([{"max_words": 3, "name": "a"}, {"no_emoji": True, "name": "a"}], "named a;"),
        ([{"must_mention": []}], "must_mention: give a list of non-empty words"),
        ([{"no_emoji": False}], "write `no_emoji: true`"),
        ([{"max_words": 0}], "max_words"),
        ([{"max_words": 3, "name": "has space"}], "rule 1: name"),
        ({"max_words": 3}, "must be a list of rules"),
        (["max_words"], "rule 1 must be a mapping"),
    ],
)
def test_malformed_rules_are_refused_naming_the_rule(raw: Any, message: str) -> None:
    with pytest.raises(RuleError, match=message) as raised:
        parse_rules(raw, "train.yaml")
    assert str(raised.value).startswith("train.yaml: ")
    assert "Value error" not in str(raised.value)
    assert "\n" not in str(raised.value)


def test_two_rules_of_one_kind_with_their_own_names() -> None:
    rules = parse_rules(
        [{"must_match": "a", "name": "has-a"}, {"must_match": "b", "name": "has-b"}]
    )
    assert [rule.label for rule in rules] == ["has-a", "has-b"]
    assert check_answer(rules, "a only") == {"has-a": True, "has-b": False}
    assert parse_rules(None) == []


def test_pass_rates_count_each_rule_over_the_answers() -> None:
    rules = parse_rules([{"max_words": 2}, {"no_emoji": True}])
    rates = pass_rates(rules, ["one two", "one two three", f"hi {CUP}", "fine"])
    assert rates == {"max_words": 0.75, "no_emoji": 0.75}
    assert pass_rates(rules, []) == {}


def test_a_rule_round_trips_through_json() -> None:
    rule = _rule(must_not_mention=["Starbucks"], name="no-competitors")
    dumped = rule.model_dump(mode="json", exclude_defaults=True)
    assert dumped == {"name": "no-competitors", "must_not_mention": ["Starbucks"]}
    assert parse_rules([dumped]) == [rule]
    assert rule.describe() == "must_not_mention: Starbucks"
