"""Identity documents and dates of birth.

`DATE_OF_BIRTH`, `PASSPORT_NUMBER`, `DRIVER_LICENSE` and `UK_NINO`. A date is a
date of birth, and a short code a passport or licence number, only with its
context words nearby ("born on", "DOB", "passport", "driving licence"): alone
they are order dates and reference numbers. A UK National Insurance number has a
strict format and is found alone too, with a lower score.

The formats are Presidio's where it has them (`UkNinoRecognizer`,
`UsPassportRecognizer`, `UkPassportRecognizer`, `UsLicenseRecognizer`'s
letter-and-digits shapes), but the recognizers themselves are not used, and the
context check is done here rather than by the analyzer's context step
(`context_words`), because:

- here a context word is a gate, not a boost: Presidio's passport patterns score
  0.05 and 0.1, so the context step's +0.35 would still leave them under the
  policy's threshold, while a date without its words must not be found at all;
- the context step reads the NER pipeline's tokens; this is a function of the
  text alone, so the integration test comparing the analyzer with Presidio's
  stock parts still holds, and no one else's scores move;
- cost: one search for any context word or NINO-shaped code decides whether
  anything else runs; most messages have none.

Context words count among the six words before a value, or the three after it,
within one sentence.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from lorastack.guardrails.entities import DATE_OF_BIRTH, DRIVER_LICENSE, PASSPORT_NUMBER, UK_NINO

if TYPE_CHECKING:
    from presidio_analyzer import EntityRecognizer

WITH_CONTEXT_SCORE = 0.85
# A NINO-shaped code with no context words: still above the default threshold (0.5).
NINO_ALONE_SCORE = 0.55
WORDS_BEFORE = 6
WORDS_AFTER = 3

_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DAY = r"(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?"
_DATE = re.compile(
    r"\b(?:"
    r"(?:[12]\d|3[01]|0?[1-9])[/.\-](?:[12]\d|3[01]|0?[1-9])[/.\-](?:19|20)?\d{2}"  # 12/03/1985
    r"|(?:19|20)\d{2}[/.\-](?:1[0-2]|0?[1-9])[/.\-](?:[12]\d|3[01]|0?[1-9])"  # 1985-03-12
    rf"|{_DAY}(?:\s+of)?\s+{_MONTH},?(?:\s+(?:19|20)\d{{2}})?"  # 3rd of March 1985
    rf"|{_MONTH}\s+{_DAY}(?:,?\s+(?:19|20)\d{{2}})?"  # March 3rd, 1985
    r")(?![\w/\-])",
    re.IGNORECASE,
)
_BIRTH = re.compile(
    r"\b(?:born|date\s+of\s+birth|birth\s*date|d\.?o\.?b\b\.?|"
    r"birthday(?=\s*(?:is|was|on|[:=\-])(?:\W|$)))",
    re.IGNORECASE,
)
_PASSPORT = re.compile(r"\b(?:passport|travel\s+document)", re.IGNORECASE)
_PASSPORT_NUMBER = re.compile(
    r"\b(?:"
    r"\d{9}|[A-Z]\d{8}|[A-Z]{2}\d{7}"  # Presidio's US and UK passport formats
    r"|(?=[A-Z0-9]{6,9}\b)(?:[A-Z]*\d){4}[A-Z0-9]*"  # other countries: 6-9, 4+ digits
    r")\b"
)
# "licence" alone, but not a software licence ("license key", "licence fee").
_LICENCE = re.compile(
    r"\b(?:driv(?:er|ing|ers)(?:['\u2019]s)?\s+licen[cs]e|licen[cs]e(?!\s*(?:key|code|plan|"
    r"seats?|server|file|tier|fee|agreement|type))|(?-i:DL)(?:\s*(?:no\.?|number|#))?)",
    re.IGNORECASE,
)
_LICENCE_NUMBER = re.compile(
    r"\b(?:"
    r"[A-Z9]{5}\d{6}[A-Z9]{2}\d[A-Z]{2}"  # UK: MORGA753116SM9IJ
    r"|[A-Z]{1,2}\d{5,14}|\d{7,12}|\d{8}[A-Z]{2}|\d{9}[A-Z]"  # US states (Presidio's shapes)
    r"|[A-Z]\d{3}[- ]\d{3}[- ]\d{2}[- ]\d{3}[- ]\d|[A-Z]\d{3}-\d{4}-\d{4}|\d{3} \d{3} \d{3}"
    r")\b"
)
_NINO_CONTEXT = re.compile(
    r"\b(?:national\s+insurance|ni\s*(?:no\.?|number|#)|nino)(?:\W|$)", re.IGNORECASE
)
_NINO = re.compile(
    # Presidio's UkNinoRecognizer pattern: prefixes D, F, I, Q, U, V (and O second) never
    # issued, nor BG, GB, NK, KN, NT, TN, ZZ; six digits; suffix A-D.
    r"\b(?!bg|gb|nk|kn|nt|tn|zz)[a-ceghj-pr-tw-z][a-ceghj-npr-tw-z] ?\d{2} ?\d{2} ?\d{2} ?[a-d]\b",
    re.IGNORECASE,
)
# Substring tests decide whether any regex runs: most messages have no context word,
# and no six digits (in pairs or not) before an A-D letter as a NINO has.
_CUE_WORDS = ("born", "birth", "dob", "d.o.b", "passport", "travel doc", "licen", "dl")
_NINO_DIGITS = re.compile(r"\d\d ?\d\d ?\d\d ?[A-Da-d]\b")
_WORD = re.compile(r"[^\W_]+")
# A full stop ends a sentence before a capital ("Leeds. Order"), not in "passport no. 925".
_SENTENCE_END = re.compile(r"[!?;]\s|\n|\.\s+(?=[A-Z])")
# A code right after one of these is a reference of some other kind ("order 123456789").
_REFERENCE = re.compile(
    r"(?:order|ticket|ref|reference|case|invoice|sku|tracking|parcel|model|part|serial|code)"
    r"\W{0,3}$",
    re.IGNORECASE,
)


def _near(text: str, start: int, end: int, cues: list[tuple[int, int]]) -> bool:
    """Whether a cue lies within a few words before or after `text[start:end]`, in its sentence."""
    for cue_start, cue_end in cues:
        if cue_end <= start:
            gap, most = text[cue_end:start], WORDS_BEFORE
        elif cue_start >= end:
            gap, most = text[end:cue_start], WORDS_AFTER
        else:
            continue
        if len(_WORD.findall(gap)) <= most and not _SENTENCE_END.search(gap):
            return True
    return False


def _cues(regex: re.Pattern[str], text: str) -> list[tuple[int, int]]:
    return [match.span() for match in regex.finditer(text)]


def _findings(text: str, wanted: set[str]) -> Iterator[tuple[str, int, int, float]]:
    checks = (
        (DATE_OF_BIRTH, _BIRTH, _DATE),
        (PASSPORT_NUMBER, _PASSPORT, _PASSPORT_NUMBER),
        (DRIVER_LICENSE, _LICENCE, _LICENCE_NUMBER),
    )
    for entity, context, values in checks:
        if entity not in wanted:
            continue
        cues = _cues(context, text)
        if not cues:
            continue
        for match in values.finditer(text):
            if _near(text, *match.span(), cues) and not _REFERENCE.search(text, 0, match.start()):
                yield entity, *match.span(), WITH_CONTEXT_SCORE
    if UK_NINO in wanted:
        cues = _cues(_NINO_CONTEXT, text)
        for match in _NINO.finditer(text):
            if _near(text, *match.span(), cues):
                yield UK_NINO, *match.span(), WITH_CONTEXT_SCORE
            elif match.group().isupper() and not _REFERENCE.search(text, 0, match.start()):
                # Not "ab123456c" (lower case) or "ticket TR123456A": alone, only the exact shape.
                yield UK_NINO, *match.span(), NINO_ALONE_SCORE


def recognizers() -> list[EntityRecognizer]:
    from presidio_analyzer import EntityRecognizer, RecognizerResult
    from presidio_analyzer.nlp_engine import NlpArtifacts

    supported = [DATE_OF_BIRTH, PASSPORT_NUMBER, DRIVER_LICENSE, UK_NINO]

    class IdentityDocumentRecognizer(EntityRecognizer):
        """Dates of birth, passport and licence numbers, NINOs: see the module's docstring."""

        def load(self) -> None:
            pass

        def analyze(
            self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
        ) -> list[RecognizerResult]:
            wanted = set(entities).intersection(supported)
            if not wanted:
                return []
            lowered = text.lower()
            cued = any(word in lowered for word in _CUE_WORDS)
            if not cued and not _NINO_DIGITS.search(text):
                return []
            results = [
                RecognizerResult(entity, start, end, score)
                for entity, start, end, score in _findings(text, wanted)
            ]
            return EntityRecognizer.remove_duplicates(results)

    recognizer: EntityRecognizer = IdentityDocumentRecognizer(
        supported_entities=supported, name="IdentityDocumentRecognizer", supported_language="en"
    )
    return [recognizer]
