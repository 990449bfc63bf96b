"""Names from many countries, beyond the English patterns spaCy's small model knows.

A gazetteer of first and last names (`data/names.tsv.gz`, built by
`scripts/make_name_gazetteer.py` from names-dataset's per-country frequencies)
and a few rules that keep product names, drinks and places out:

- two or more adjacent name words, one a known first name and another a known
  last name ("Siobhán Ní Bhriain", "wojciech szczęsny", "PRIYA RAGHUNATHAN"),
  surname particles allowed between them (Ní, Mac, Ó, bin, al-, van, de);
- written alike: all capitalised, all lower case or all capitals, so "Rose
  latte" is not a name;
- at least one of the words is not an English word (common or proper): "Apple
  Pay", "Jordan Grant" and "Paris Hilton" are left to spaCy, which judges them
  in context;
- a surname after a patronymic particle ("Ní Bhriain", "bin Rashid");
- one first name on its own only after a greeting or a hand-over cue ("thanks
  aoife", "spoke to Wojciech").

The gazetteer is read once per process (see `gazetteer`); a scan is one regex
pass and a dictionary look-up per word.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING

from lorastack.guardrails.entities import PERSON

if TYPE_CHECKING:
    from presidio_analyzer import EntityRecognizer

GAZETTEER_FILE = "names.tsv.gz"
# The score spaCy's PERSON findings get: where both find a name, the longer span wins.
FULL_NAME_SCORE = 0.85
FIRST_NAME_SCORE = 0.6

_FIRST, _LAST, _COMMON, _PROPER, _TOP = 1, 2, 4, 8, 16
_LETTERS = {"f": _FIRST, "l": _LAST, "c": _COMMON, "p": _PROPER, "t": _TOP}
_ENGLISH = _COMMON | _PROPER
# A surname found only after an Irish particle ("Ní Chonaill"): too rare for the gazetteer.
_UNLISTED_SURNAME = _LAST | 32

# Between a first and a last name ("Ana de Souza", "Ludwig van der Berg").
_PARTICLE_WORDS = (
    "ní nic mac mc mhic ó ua uí bin ibn bint binti abu al el van von der den de da di "
    "del della do dos das du la le ter ten zu"
)
_PARTICLES = frozenset(_PARTICLE_WORDS.split())
# Patronymic particles that make a surname of the next word on their own.
_PATRONYMIC = frozenset(
    ("ní", "nic", "mac", "mhic", "ó", "ua", "uí", "bin", "ibn", "bint", "binti")
)
# Irish particles that are no English word: the next word is a surname, listed or not.
_IRISH = frozenset(("ní", "nic", "mhic", "ó", "ua", "uí"))
# These too, once a first name came before them ("Pádraig Mac Suibhne", not "Mac mini").
_AFTER_FIRST_NAME = frozenset(("mac", "bin", "ibn", "bint"))
# A word touching one of these is part of an address or a handle: "james.carter@", "@aoife".
_JOINERS = frozenset("@._/\\")
# Inside one hyphenated or apostrophised word: al-Sayed, O'Brien, D'Souza.
_PREFIXES = frozenset(("al", "el", "o", "d"))

# After these a name is a street's: "Patrick Street", "Rashid Road".
_STREET = re.compile(
    r"[ ,]{1,2}(?:street|st|road|rd|avenue|ave|lane|ln|drive|dr|way|close|crescent|place|"
    r"square|boulevard|blvd|terrace|court|gardens|row|hill)\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*")
_PARTS = re.compile(r"['\u2019-]")
_CUE_BEFORE = re.compile(
    r"(?:\b(?:this is|it's|its|i'm|i am|thanks|thank you|cheers|hi|hello|hey|dear|"
    r"just me,|speak to|spoke to|spoke with|talk to|talked to|ask|tell)[ ,]{1,2})$",
    re.IGNORECASE,
)
_CUE_WINDOW = 16


@dataclass(frozen=True)
class Gazetteer:
    """Lower-cased NFC names, each with its `_FIRST`, `_LAST`, `_COMMON`, ... bits."""

    flags: dict[str, int]

    @classmethod
    def parse(cls, text: str) -> Gazetteer:
        """One line per combination of flags: `letters<TAB>name name ...`."""
        flags: dict[str, int] = {}
        for line in text.splitlines():
            letters, _, names = line.partition("\t")
            bits = sum(_LETTERS[letter] for letter in letters)
            flags.update(dict.fromkeys(names.split(" "), bits))
        return cls(flags)

    def word(self, word: str) -> int:
        """The bits of one word of text (0: not a name), hyphenated words part by part."""
        key = word.lower()
        bits = self.flags.get(key)
        if bits is not None:
            return bits
        if not _PARTS.search(key):
            return 0
        bits = _ENGLISH
        named = False
        for part in _PARTS.split(key):
            part_bits = self.flags.get(part, 0)
            if part_bits & (_FIRST | _LAST):
                named = True
                # A compound is English only if every named part is.
                bits = (bits & part_bits & _ENGLISH) | (bits & ~_ENGLISH) | (part_bits & ~_ENGLISH)
            elif part not in _PREFIXES and part not in _PARTICLES:
                return 0
        return bits if named else 0


@lru_cache(maxsize=1)
def gazetteer() -> Gazetteer:
    """The shipped gazetteer, read once per process."""
    data = resources.files("lorastack.guardrails").joinpath("data", GAZETTEER_FILE).read_bytes()
    return Gazetteer.parse(gzip.decompress(data).decode("utf-8"))


def _strong(bits: int, word: tuple[int, int, int]) -> bool:
    """A name word that is no English word (or a top-ranked name), three letters or more."""
    if word[1] - word[0] < 3:
        return False
    return not bits & _ENGLISH or bool(bits & _TOP and not bits & _COMMON)


def _case(word: str) -> str:
    if word[0].islower() and (head := _PARTS.split(word, maxsplit=1)[0].lower()) in _PREFIXES:
        word = word[len(head) + 1 :] or word  # al-Sayed, o'Brien: the name part
    if word.islower():
        return "lower"
    if word.isupper() and len(word) > 1:
        return "upper"
    return "title" if word[0].isupper() else "mixed"


@dataclass
class _Run:
    """Adjacent name words and particles, written alike."""

    case: str
    words: list[tuple[int, int, int]]  # start, end, bits (-1: a particle)


def _full_name(run: _Run, text: str) -> tuple[int, int] | None:
    words = run.words
    while words and words[-1][2] < 0:
        words = words[:-1]
    named = [w for w in words if w[2] >= 0]
    if not any(_strong(w[2], w) for w in named):
        return None
    if len(named) == 1:
        start, end, bits = named[0]
        before = [w for w in words if w[0] < start]
        if before and bits & _LAST and text[before[-1][0] : before[-1][1]].lower() in _PATRONYMIC:
            return before[-1][0], end
        return None
    # Some word a first name and another a last name, in either order ("Park Sung-min").
    firsts = [i for i, w in enumerate(named) if w[2] & _FIRST]
    lasts = [i for i, w in enumerate(named) if w[2] & _LAST]
    if not any(i != j for i in firsts for j in lasts):
        return None
    return words[0][0], words[-1][1]


def _unlisted_surname(run: _Run, text: str) -> int:
    """`_UNLISTED_SURNAME` for a word after an Irish particle, or after Mac or bin after a
    first name; else 0."""
    start, end, bits = run.words[-1]
    if bits >= 0:
        return 0
    particle = text[start:end].lower()
    if particle in _IRISH:
        return _UNLISTED_SURNAME
    if particle in _AFTER_FIRST_NAME and any(b > 0 and b & _FIRST for _, _, b in run.words):
        return _UNLISTED_SURNAME
    return 0


def _joined(text: str, start: int, end: int) -> bool:
    """Whether the word is glued to an e-mail address, a handle or a path."""
    if start and text[start - 1] in _JOINERS:
        return True
    return end < len(text) - 1 and text[end] in _JOINERS and text[end + 1].isalnum()


def find_names(text: str, table: Gazetteer | None = None) -> list[tuple[int, int, float]]:
    """(start, end, score) of each name the rules find in `text`."""
    table = table or gazetteer()
    flags = table.flags
    runs: list[_Run] = []
    run: _Run | None = None
    last_end = -2
    for match in _WORD.finditer(text):
        word = match.group()
        key = word.lower()
        start, end = match.span()
        if key in _PARTICLES:
            bits = -1
        else:
            listed = flags.get(key)
            bits = table.word(word) if listed is None else listed
            if not bits & (_FIRST | _LAST) and run is not None and start == last_end + 1:
                bits = _unlisted_surname(run, text)
            if not bits & (_FIRST | _LAST) or _joined(text, start, end):
                run = None
                continue
        case = "" if bits < 0 else _case(word)
        if case == "upper" and end - start < 3:  # "IBAN ES", "VAT GB": codes, not names
            run = None
            continue
        adjacent = run is not None and start == last_end + 1 and text[last_end] == " "
        if run is not None and adjacent and (not case or not run.case or case == run.case):
            run.words.append((start, end, bits))
            run.case = run.case or case
        else:
            run = _Run(case, [(start, end, bits)])
            runs.append(run)
        last_end = end
    found: list[tuple[int, int, float]] = []
    for run in runs:
        span = _full_name(run, text)
        if span is not None and _STREET.match(text, span[1]):
            continue
        if span is not None:
            found.append((*span, FULL_NAME_SCORE))
            continue
        for start, end, bits in run.words:
            if bits > 0 and bits & _FIRST and _strong(bits, run.words[0]) and len(run.words) == 1:
                window = text[max(0, start - _CUE_WINDOW) : start]
                if _CUE_BEFORE.search(window):
                    found.append((start, end, FIRST_NAME_SCORE))
    return found


def recognizers() -> list[EntityRecognizer]:
    from presidio_analyzer import EntityRecognizer, RecognizerResult
    from presidio_analyzer.nlp_engine import NlpArtifacts

    class GazetteerNameRecognizer(EntityRecognizer):
        """`find_names` as a Presidio recognizer."""

        def load(self) -> None:
            gazetteer()

        def analyze(
            self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
        ) -> list[RecognizerResult]:
            return [
                RecognizerResult(PERSON, start, end, score)
                for start, end, score in find_names(text)
            ]

    recognizer: EntityRecognizer = GazetteerNameRecognizer(
        supported_entities=[PERSON], name="GazetteerNameRecognizer"
    )
    return [recognizer]
