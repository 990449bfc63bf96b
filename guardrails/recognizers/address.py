"""Postal addresses in running text (`ADDRESS`): US, UK, Irish and common EU formats.

Hand-written patterns, not a library: measured on addresses in support messages
and look-alike product names (issue 19), `pyap2` (the maintained fork of `pyap`)
found 19 of 41 addresses (US, Canadian and British formats only) at 11 ms per
message, seventy times this recognizer's share of the scan budget; `usaddress`
labels the tokens of a string that is already an address, and run over a
message it marked 10 of 32 look-alikes; libpostal's `postal` bindings need the
C library and about 2 GB of model data fetched at build time, which is not
offline. See docs/guardrails.md, "Addresses".

An address is found as a whole, from a leading flat or unit through the
postcode and town, so that it is masked as one value:

- number first, as in the US, UK and Ireland (`Flat 3, 27 Baker Street, London
  NW1 6XE`, `1428 Elm Street, Springfield, IL 62704`, `14 Main Street, Dingle,
  Co. Kerry, V92 X2Y3`) or France (`12 rue de la Paix, 75002 Paris`);
- street first, as in Germany, Austria, Switzerland, the Netherlands, Belgium,
  Spain, Italy and Portugal (`Hauptstraße 5, 10115 Berlin`, `Keizersgracht
  123, 1015 CJ Amsterdam`, `Calle Mayor 10, 3º B, 28013 Madrid`).

A street with a postcode (or a US state and ZIP code) is an address. A street
line alone (`77 Sunset Boulevard`) looks like a product ("the 3 Main Street
Blend", "Route 66 mug") too often: it counts only right after a word that
introduces an address ("to", "at", "is", "address:") and, for English street
names, when no capitalised word follows it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from lorastack.guardrails.entities import ADDRESS

if TYPE_CHECKING:
    from presidio_analyzer import EntityRecognizer, RecognizerResult
    from presidio_analyzer.nlp_engine import NlpArtifacts

# A street with its postcode outranks the spaCy names and places inside it
# (0.85: `guard._resolve_overlaps` keeps the highest score), so the whole
# address is masked as one value; a street line alone just outranks them too.
FULL_SCORE = 0.95
STREET_SCORE = 0.86

_LETTERS = r"[^\W\d_]"
# A word of a name; an apostrophe (' or \u2019) or a hyphen inside it (O'Connell, Champs-Élysées).
_WORD = rf"{_LETTERS}+(?:['\u2019-]{_LETTERS}+)*"
# Words that run an English sentence on, never part of a street name.
_NOT_NAME = (
    r"(?!(?:at|the|from|of|for|and|or|in|to|on|my|your|our|a|an|is|are|was|with|by|"
    r"this|that|it|i|we|you|they)\b)"
)
_ORDINAL = r"\d{1,3}(?:st|nd|rd|th)"
_NAME_WORD = rf"{_NOT_NAME}(?:{_WORD}|{_ORDINAL})"
# A house number: 27, 221B, 12a, 12-14, 7-II, 3 bis; never the start of a code (1Z99...).
_NUMBER = r"\d{1,5}[a-z]?(?:[-/]\d{1,4}[a-z]?|-[ivx]{1,4})?\b(?:\s(?:bis|ter)\b)?"
_DIRECTION = r"(?:n|s|e|w|ne|nw|se|sw|north|south|east|west)\.?"
# English street types, written after the name (Baker Street, Elm St.).
_STREET_TYPE = (
    r"(?:street|st|road|rd|avenue|ave|av|boulevard|blvd|drive|dr|lane|ln|court|ct|place|pl|"
    r"terrace|ter|way|parkway|pkwy|highway|hwy|circle|cir|square|sq|trail|trl|close|crescent|"
    r"cres|grove|gardens|gdns|mews|row|hill|walk|wharf|parade|rise|plaza|alley|loop|pike)"
    r"\b\.?"
)
_UNIT = (
    r"(?:(?:apartment|apt|suite|ste|unit|flat|floor|fl|room|rm|building|bldg)\.?\s*#?\s*"
    r"[a-z0-9]{1,5}(?:-[a-z0-9]{1,4})?\b|#\s?[a-z0-9]{1,5}\b)"
)
# Street types written before the name: French, Spanish, Catalan, Italian, Portuguese.
_PREFIX_WORDS = [
    "rue", "avenue", "av.", "boulevard", "bd", "place", "chemin", "allée", "impasse", "quai",
    "cours", "calle", "c/", "carrer", "avenida", "avda", "avda.", "paseo", "plaza", "plaça",
    "camino", "via", "viale", "piazza", "piazzale", "corso", "largo", "vicolo", "rua",
    "travessa", "praça",
]  # fmt: skip
_PREFIX_TYPE = "(?:" + "|".join(re.escape(word) for word in _PREFIX_WORDS) + ")"
# German and Dutch street names end in their type (Hauptstraße, Keizersgracht).
_COMPOUND = (
    rf"{_LETTERS}{{2,}}(?:straße|strasse|str\.|gasse|weg|allee|platz|damm|ufer|gracht|straat|"
    r"laan|steeg|plein|kade|singel|dijk)"
)
_SEPARATE_TYPE = r"(?:straße|strasse|str\.|gasse|weg|allee|platz|damm|ring)"
_ARTICLE_STREET = r"(?:am|an\sder|auf\sder|im|zum|zur)"
# Floor and door after a European house number: `3º B`, `2° izq`, `bus 4` (the guard's
# NFKC normalisation turns `º` into `o`, `ª` into `a`).
_EU_UNIT = (
    r"(?:\d{1,2}\s?[º°ªoa]\s?(?:[a-z]\b|izq(?:da)?\b|dcha\b)?|"
    r"(?:piso|planta|puerta|esc|bus|boîte|bte|app|étage|stiege|top|whg)\.?\s*[a-z0-9]{1,4}\b)"
)
_US_STATE = (
    r"(?:al|ak|az|ar|ca|co|ct|de|dc|fl|ga|hi|id|il|in|ia|ks|ky|la|me|md|ma|mi|mn|ms|mo|mt|ne|"
    r"nv|nh|nj|nm|ny|nc|nd|oh|ok|or|pa|ri|sc|sd|tn|tx|ut|vt|va|wa|wv|wi|wy|alabama|alaska|"
    r"arizona|arkansas|california|colorado|connecticut|delaware|florida|georgia|hawaii|idaho|"
    r"illinois|indiana|iowa|kansas|kentucky|louisiana|maine|maryland|massachusetts|michigan|"
    r"minnesota|mississippi|missouri|montana|nebraska|nevada|new\shampshire|new\sjersey|"
    r"new\smexico|new\syork|north\scarolina|north\sdakota|ohio|oklahoma|oregon|pennsylvania|"
    r"rhode\sisland|south\scarolina|south\sdakota|tennessee|texas|utah|vermont|virginia|"
    r"washington|west\svirginia|wisconsin|wyoming)"
)
_US_ZIP = r"\d{5}(?:-\d{4})?\b"
_UK_POSTCODE = r"[a-z]{1,2}\d[a-z\d]?\s?\d[a-z]{2}\b"
_EIRCODE = r"(?:[ac-fhknprtv-y]\d{2}|d6w)\s?[0-9ac-fhknprtv-y]{4}\b"
# Towns before a British, Irish or US postcode: `London`, `Dingle, Co. Kerry`, `Dublin 2`.
_LOCALITY = rf"(?:co\.\s)?{_WORD}(?:[\s-]{_WORD}){{0,2}}(?:\s\d{{1,2}}\b)?"
_ENGLISH_TAIL = (
    rf"(?:,?\s{{1,2}}{_LOCALITY}){{0,3}},?\s{{1,2}}"
    rf"(?:{_UK_POSTCODE}|{_EIRCODE}|(?:{_US_STATE}\.?\s)?{_US_ZIP})"
)
# A continental postcode and its town: 10115 Berlin, 1015 CJ Amsterdam, 1100-053 Lisboa, D-80336.
_EU_POSTCODE = r"(?:[a-z]{1,2}-)?(?:\d{4}\s?[a-z]{2}\b|\d{4}-\d{3}\b|\d{4,5}\b)"
_TOWN = rf"{_WORD}(?:\s(?:(?:am|an\sder|sur|de|del|di|im|bei)\s)?{_WORD}){{0,2}}"


def _eu_tail(town: str) -> str:
    return rf",?\s{{1,2}}{_EU_POSTCODE}\s(?P<{town}>{_TOWN})"


# Every address holds a house number: the patterns are tried only at numbers,
# anchored there, which keeps a scan to a few microseconds per number (a
# pattern searched through the whole text cost 0.28 ms on 50 words).
_CANDIDATE = re.compile(r"[0-9]+")
_NUMBER_FIRST = re.compile(
    # France, Belgium: the type before the name (12 rue de la Paix, 75002 Paris)
    rf"{_NUMBER},?\s{_PREFIX_TYPE}(?:\s{_WORD}){{1,5}}(?P<french>{_eu_tail('town1')})"
    # US, UK, Ireland: the type after the name (27 Baker Street, London NW1 6XE)
    rf"|(?P<english_street>){_NUMBER}\s(?:{_DIRECTION}\s)?(?:{_NAME_WORD}\s){{1,4}}"
    rf"{_STREET_TYPE}(?:\s{_DIRECTION}(?![\w']))?(?:,?\s{_UNIT})?"
    rf"(?P<english>{_eu_tail('town2')}|{_ENGLISH_TAIL})?",
)
# A flat or unit written before the number: `Flat 3, 27 Baker Street`.
_UNIT_BEFORE = re.compile(r"\b(?:flat|apartment|apt|unit|suite)\s?\d{1,4}[a-z]?,?\s$")
# Germany, Austria, Switzerland, the Netherlands, Spain, Italy, Portugal: the
# street's name, then its number. Looked for only where the words just before a
# number hold a street type (a set and a suffix test: a pattern searched there
# for the same cost 18 us a number).
_SUFFIXES = (
    "straße", "strasse", "str.", "gasse", "weg", "allee", "platz", "damm", "ufer", "ring",
    "gracht", "straat", "laan", "steeg", "plein", "kade", "singel", "dijk",
)  # fmt: skip
_PREFIXES = frozenset(_PREFIX_WORDS)
_ARTICLES = frozenset(["am", "an", "auf", "im", "zum", "zur"])
_STREET_BEFORE = re.compile(
    rf"\b(?:{_COMPOUND}|{_NOT_NAME}{_WORD}\s{_SEPARATE_TYPE}|{_PREFIX_TYPE}(?:\s{_WORD}){{1,5}}"
    rf"|(?P<article>{_ARTICLE_STREET})\s{_WORD})\s?$",
)
_STREET_FIRST_REST = re.compile(rf"{_NUMBER}(?:,?\s{_EU_UNIT})?(?P<eu>{_eu_tail('town3')})?")
# Enough text before a number to hold a street's name (Avenida de la Constitución).
_LOOK_BACK = 60
# The word before a street line on its own that says an address follows.
_CUES = frozenset((
    "to", "at", "on", "in", "from", "is", "address", "addr",
    "adresse", "adres", "dirección", "indirizzo", "live", "lives",
))  # fmt: skip
_WORD_BEFORE = re.compile(rf"({_WORD})\W{{0,3}}$")
_NEXT_WORD = re.compile(r"\s+(\w)")
_TOWNS = ("town1", "town2", "town3")
# Lower-case words that may stay inside a town's name (Frankfurt am Main).
_TOWN_LINKS = frozenset(["am", "an", "der", "sur", "de", "del", "di", "im", "bei"])


def find_addresses(text: str) -> list[tuple[int, int, float]]:
    """(start, end, score) of each address in `text`."""
    found: list[tuple[int, int, float]] = []
    lowered: str | None = None
    covered = 0
    for number in _CANDIDATE.finditer(text):
        start = number.start()
        if start < covered or len(number.group()) > 5 or (start and text[start - 1].isalnum()):
            continue
        # Matched in lower case: Python's `re` skips through a text far slower
        # when it ignores case (ten times, measured), and chats are not always
        # written in the case an address is printed in.
        lowered = lowered if lowered is not None else _lower(text)
        address = _address_at(text, lowered, start)
        if address is not None:
            found.append(address)
            covered = address[1]
    return found


def _lower(text: str) -> str:
    """`text` in lower case, with the same offsets (a few letters lengthen: İ)."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


def _address_at(text: str, lowered: str, start: int) -> tuple[int, int, float] | None:
    """The address whose house number starts at `start`, if there is one."""
    match = _NUMBER_FIRST.match(lowered, start)
    if match is not None:
        unit = _UNIT_BEFORE.search(lowered, max(0, start - 20), start)
        first = unit.start() if unit is not None else start
        english = match.group("english_street") is not None
        return _scored(text, first, match, english)
    low = max(0, start - _LOOK_BACK)
    if not _street_type_before(lowered[low:start].split()[-6:]):
        return None
    street = _STREET_BEFORE.search(lowered, low, start)
    match = _STREET_FIRST_REST.match(lowered, start)
    if street is None or match is None:
        return None
    if street.group("article") and not text[street.start()].isupper():
        return None  # "am", "im" are German streets only as `Am Markt`, `Im Winkel`
    return _scored(text, street.start(), match, False)


def _street_type_before(words: list[str]) -> bool:
    if not words:
        return False
    return (
        words[-1].endswith(_SUFFIXES)
        or not _PREFIXES.isdisjoint(words)
        or (len(words) > 1 and words[-2] in _ARTICLES)
        or (len(words) > 2 and words[-3] in _ARTICLES)
    )


def _scored(
    text: str, start: int, match: re.Match[str], english: bool
) -> tuple[int, int, float] | None:
    tails = ("french", "english", "eu")
    if any(match.group(name) for name in tails if name in match.re.groupindex):
        return start, _trim_town(text, match), FULL_SCORE
    if _street_line_alone(text, start, match.end(), english):
        return start, match.end(), STREET_SCORE
    return None


def _trim_town(text: str, match: re.Match[str]) -> int:
    """Leave out lower-case words after a town's first word (`75002 Paris svp`)."""
    end = match.end()
    groups = match.re.groupindex
    town = next((name for name in _TOWNS if name in groups and match.group(name)), None)
    if town is None:
        return end
    town_start = match.start(town)
    words = list(re.finditer(r"\S+", text[town_start:end]))
    kept = words[0].end()
    linked = False
    for word in words[1:]:
        value = word.group()
        # In a text all in lower case only a linked name runs on (frankfurt am main).
        if linked or (value[0].isupper() and not text.isupper()):
            kept, linked = word.end(), False
        elif value.lower() in _TOWN_LINKS:
            linked = True
        else:
            break
    return town_start + kept


def _street_line_alone(text: str, start: int, end: int, english: bool) -> bool:
    before = _WORD_BEFORE.search(text, max(0, start - 30), start)
    if before is None or before.group(1).lower() not in _CUES:
        return False
    if not english or text.isupper():
        return True
    # "to 3 Main Street Blend": an English street name running on into a product name.
    following = _NEXT_WORD.match(text, end)
    return following is None or not following.group(1).isupper()


def recognizers() -> list[EntityRecognizer]:
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    class AddressRecognizer(EntityRecognizer):
        """`find_addresses` as a Presidio recognizer."""

        def __init__(self) -> None:
            super().__init__(supported_entities=[ADDRESS], name="AddressRecognizer")

        def load(self) -> None:
            """The patterns are compiled at import."""

        def analyze(
            self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
        ) -> list[RecognizerResult]:
            return [
                RecognizerResult(ADDRESS, start, end, score)
                for start, end, score in find_addresses(text)
            ]

    return [AddressRecognizer()]
