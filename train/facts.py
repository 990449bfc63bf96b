"""The key facts of a reference answer, and how many of them another answer recalls.

A fact is what a customer would act on: a time (`7am`, `19:30`, `noon`), a price
(`£3.50`, `12 dollars`), a percentage (`20%`, `20 per cent`), a number with its
unit (`30-day`, `2 MB`, `12,000 users`, `two weeks`), a bare number (`14`), a code
(`LL-204`) and a name: a run of capitalised words (`Elm Road`, `Christmas Day`), or
one capitalised word inside a sentence (`LedgerLine`, `Settings`). A lone word
opening a sentence is not taken for a name; it is capitalised anyway.

Each fact has a normalised key, so that different spellings of it meet:
`12,000` and `12000`, `£3.50` and `£3.5`, `30-day` and `30 days`, `7 a.m.` and
`07:00`, `20 percent` and `20%`, `ELM ROAD` and `Elm Road`. An answer recalls a
number-like fact when its own facts hold the same key (a bare number in the
reference only needs the same number anywhere), and a name when it holds the same
words, in any case, as whole words (a plural `s` aside).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "fifteen": 15,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "ninety": 90,
    "hundred": 100,
}
# Units by their canonical name; every spelling (plural, short form) leads to it.
_UNITS: dict[str, tuple[str, ...]] = {
    "second": ("seconds", "second", "secs", "sec"),
    "minute": ("minutes", "minute", "mins", "min"),
    "hour": ("hours", "hour", "hrs", "hr", "h"),
    "day": ("days", "day"),
    "week": ("weeks", "week", "wks", "wk"),
    "month": ("months", "month"),
    "year": ("years", "year", "yrs", "yr"),
    "byte": ("bytes", "byte"),
    "kb": ("kb",),
    "mb": ("mb",),
    "gb": ("gb",),
    "tb": ("tb",),
    "mm": ("mm",),
    "cm": ("cm",),
    "km": ("km",),
    "metre": ("metres", "metre", "meters", "meter"),
    "mile": ("miles", "mile"),
    "inch": ("inches", "inch"),
    "foot": ("feet", "foot", "ft"),
    "mg": ("mg",),
    "kg": ("kg",),
    "gram": ("grams", "gram"),
    "lb": ("lbs", "lb"),
    "oz": ("ounces", "ounce", "oz"),
    "ml": ("ml",),
    "litre": ("litres", "litre", "liters", "liter"),
    "cup": ("cups", "cup"),
    "shot": ("shots", "shot"),
    "user": ("users", "user"),
    "seat": ("seats", "seat"),
    "person": ("people", "persons", "person"),
    "item": ("items", "item"),
    "step": ("steps", "step"),
    "character": ("characters", "character"),
    "digit": ("digits", "digit"),
    "stamp": ("stamps", "stamp"),
    "drink": ("drinks", "drink"),
    "point": ("points", "point"),
    "page": ("pages", "page"),
    "file": ("files", "file"),
    "invoice": ("invoices", "invoice"),
    "account": ("accounts", "account"),
    "transaction": ("transactions", "transaction"),
    "time": ("times",),
}
_UNIT_OF = {spelling: unit for unit, spellings in _UNITS.items() for spelling in spellings}
# Qualifiers that make a different unit: 5 working days are not 5 days.
_QUALIFIERS = ("working", "business", "calendar")
_CURRENCY_SYMBOLS = "$£€¥₹"
_CURRENCY_WORDS = {
    "usd": "$",
    "dollar": "$",
    "dollars": "$",
    "gbp": "£",
    "pound": "£",
    "pounds": "£",
    "eur": "€",
    "euro": "€",
    "euros": "€",
    "cent": "¢",
    "cents": "¢",
    "pence": "p",
}
_MULTIPLIERS = {"k": 1_000, "thousand": 1_000, "m": 1_000_000, "million": 1_000_000}
# Capitalised words that open sentences and greetings rather than name anything.
_COMMON_WORDS = """
a about absolutely after all also an and any are as at be because before but by can
could dear do does don't each every for from go good great happy he hello hey hi how
i i'd i'll i'm i've if in is it it's its just kind let may most my next no not now
of oh ok okay on once only or our please regards select she sorry sure thank thanks
that that's the then there these they this those to unfortunately we we'd we'll
we're what when where which while who why will with yes you you'll you're your
"""
_COMMON = frozenset(_COMMON_WORDS.split())

_PLACEHOLDER = re.compile(r"<[A-Z]+(?:_[A-Z]+)*_\d+>")
_LIST_NUMBER = re.compile(r"(?m)^[ \t]*\d{1,3}[.)](?=\s)")
_UNIT_WORDS = "|".join(sorted(_UNIT_OF, key=len, reverse=True))
_COUNT = rf"(?P<number>{_NUMBER})|(?P<word>{'|'.join(_NUMBER_WORDS)})"
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "time",
        re.compile(
            r"(?<![\w.:])(?P<h>\d{1,2})(?:[:.](?P<m>[0-5]\d))?\s?(?P<half>[ap])\.?m\b\.?"
            r"|(?<![\w.:])(?P<h24>[01]?\d|2[0-3]):(?P<m24>[0-5]\d)(?![\w:])"
            r"|\b(?P<word>noon|midday|midnight)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "money",
        re.compile(
            rf"(?P<symbol>[{_CURRENCY_SYMBOLS}])\s?(?P<number>{_NUMBER})"
            rf"(?:\s?(?P<mult>k|m|thousand|million)\b)?"
            rf"|(?<![\w.,])(?P<number2>{_NUMBER})\s?"
            rf"(?P<currency>{'|'.join(_CURRENCY_WORDS)})\b",
            re.IGNORECASE,
        ),
    ),
    (
        "percent",
        re.compile(rf"(?<![\w.,])(?P<number>{_NUMBER})\s?(?:%|per\s?cent\b)", re.IGNORECASE),
    ),
    (
        "quantity",
        re.compile(
            rf"(?<![\w.,])(?:{_COUNT})(?:\s|-)?(?P<qualifier>(?:{'|'.join(_QUALIFIERS)})\s)?"
            rf"(?P<unit>{_UNIT_WORDS})\b",
            re.IGNORECASE,
        ),
    ),
    ("code", re.compile(r"\b[A-Z]{1,6}-?\d+[A-Z\d]*\b")),
    ("number", re.compile(rf"(?<![\w.,])(?P<number>{_NUMBER})(?![\w])")),
)
_CAPITALISED = re.compile(r"[A-Z][\w'&-]*")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]|\n)[\s\"'\u201c(\[]*$")


@dataclass(frozen=True)
class Fact:
    """One fact: its kind, its normalised key, and how the text wrote it."""

    kind: str
    key: str
    text: str


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("\u2018", "'")
    text = _PLACEHOLDER.sub(" ", text)
    return _LIST_NUMBER.sub("", text)


def _number(text: str) -> str:
    """`12,000` -> `12000`, `3.50` -> `3.5`, `4.00` -> `4`."""
    plain = text.replace(",", "")
    if "." in plain:
        plain = plain.rstrip("0").rstrip(".")
    return plain or "0"


def _scaled(number: str, multiplier: str | None) -> str:
    if not multiplier:
        return _number(number)
    value = float(number.replace(",", "")) * _MULTIPLIERS[multiplier.lower()]
    return _number(f"{value:.6f}")


def _time_key(match: re.Match[str]) -> str:
    word = (match.group("word") or "").lower()
    if word:
        return "12am" if word == "midnight" else "12pm"
    if match.group("h24") is not None:
        hour, minute = int(match.group("h24")), match.group("m24")
        half = "am" if hour < 12 else "pm"
        hour = hour % 12 or 12
    else:
        hour, minute = int(match.group("h")), match.group("m")
        half = match.group("half").lower() + "m"
    return f"{hour}{'' if minute in (None, '00') else ':' + minute}{half}"


def _key(kind: str, match: re.Match[str]) -> str:
    if kind == "time":
        return _time_key(match)
    if kind == "money":
        if match.group("symbol"):
            return match.group("symbol") + _scaled(match.group("number"), match.group("mult"))
        currency = _CURRENCY_WORDS[match.group("currency").lower()]
        amount = _number(match.group("number2"))
        return amount + currency if currency in "¢p" else currency + amount
    if kind == "percent":
        return _number(match.group("number")) + "%"
    if kind == "quantity":
        count = match.group("number")
        amount = _number(count) if count else str(_NUMBER_WORDS[match.group("word").lower()])
        qualifier = (match.group("qualifier") or "").strip().lower()
        unit = _UNIT_OF[match.group("unit").lower()]
        return " ".join(part for part in (amount, qualifier, unit) if part)
    if kind == "code":
        return match.group(0).casefold()
    return _number(match.group("number"))


def _numeric_facts(text: str) -> tuple[list[Fact], list[tuple[int, int]]]:
    """Times, prices, percentages, quantities, codes and numbers, each span taken once
    (in that order), and the spans they took."""
    facts: list[Fact] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern in _PATTERNS:
        for match in pattern.finditer(text):
            start, end = match.span()
            if any(start < b and a < end for a, b in taken):
                continue
            taken.append((start, end))
            facts.append(Fact(kind, _key(kind, match), match.group(0).strip()))
    return facts, taken


def _name_key(words: list[str]) -> str:
    key = " ".join(words).casefold()
    return re.sub(r"'s\b", "", key).strip("-'& ")


def _names(text: str, taken: list[tuple[int, int]]) -> list[Fact]:
    """Runs of capitalised words (joined by single spaces), leading common words dropped;
    a single word only inside a sentence."""
    facts = []
    tokens = [m for m in _CAPITALISED.finditer(text) if not _overlaps(m.span(), taken)]
    runs: list[list[re.Match[str]]] = []
    for token in tokens:
        if runs and text[runs[-1][-1].end() : token.start()] == " ":
            runs[-1].append(token)
        else:
            runs.append([token])
    for run in runs:
        opens_sentence = _SENTENCE_START.search(text[: run[0].start()]) is not None
        words = [m.group(0) for m in run]
        dropped = 0
        while words and words[0].lower() in _COMMON:
            words.pop(0)
            dropped += 1
        if not words or (
            len(words) == 1 and (len(words[0]) < 2 or (opens_sentence and not dropped))
        ):
            continue
        facts.append(Fact("name", _name_key(words), " ".join(words)))
    return facts


def _overlaps(span: tuple[int, int], taken: list[tuple[int, int]]) -> bool:
    return any(span[0] < b and a < span[1] for a, b in taken)


def extract_facts(text: str) -> list[Fact]:
    """The facts of `text`, each key once, in the order the text gives them."""
    cleaned = _clean(text)
    numeric, taken = _numeric_facts(cleaned)
    found = sorted(numeric, key=lambda fact: cleaned.find(fact.text)) + _names(cleaned, taken)
    unique: dict[str, Fact] = {}
    for fact in found:
        unique.setdefault(f"{fact.kind}:{fact.key}", fact)
    return list(unique.values())


def _numbers_in(facts: list[Fact]) -> set[str]:
    """Every number an answer states, whatever its unit."""
    numbers = set()
    for fact in facts:
        if fact.kind == "number":
            numbers.add(fact.key)
        elif fact.kind in ("quantity", "percent", "money"):
            found = re.search(r"\d+(?:\.\d+)?", fact.key)
            if found:
                numbers.add(found.group(0))
    return numbers


def _name_pattern(key: str) -> re.Pattern[str]:
    words = key.split()
    if len(words[-1]) > 3 and words[-1].endswith("s") and not words[-1].endswith("ss"):
        words[-1] = words[-1][:-1]
    body = r"(?:'s)?\s+".join(re.escape(word) for word in words)
    return re.compile(rf"(?<!\w){body}(?:'s|s|es)?(?!\w)", re.IGNORECASE)


def recalled(facts: Sequence[Fact], answer: str) -> list[bool]:
    """For each of `facts`, whether `answer` states it."""
    said = extract_facts(answer)
    keys = {(fact.kind, fact.key) for fact in said}
    numbers = _numbers_in(said)
    cleaned = _clean(answer)
    found = []
    for fact in facts:
        if fact.kind == "name":
            found.append(_name_pattern(fact.key).search(cleaned) is not None)
        elif fact.kind == "number":
            found.append(fact.key in numbers)
        else:
            found.append((fact.kind, fact.key) in keys)
    return found


def fact_recall(references: Sequence[str], answers: Sequence[str]) -> float | None:
    """The share of all the references' facts that the answers (pairwise) state; None when
    the references hold no facts at all."""
    total = hits = 0
    for reference, answer in zip(references, answers, strict=True):
        facts = extract_facts(reference)
        total += len(facts)
        hits += sum(recalled(facts, answer))
    return hits / total if total else None
