"""Undo the disguises personal data wears before it is detected, keeping offsets.

Detection runs on a normalised copy of the text: Unicode NFKC (a fullwidth
at sign becomes `@`), invisible characters dropped, spelled-out emails
(`jane dot doe at example dot com`) rewritten as addresses, and digits spaced
out one by one joined up. Every character of the copy remembers the span of
the original it came from, so each finding maps back to exact original
offsets and the original text is what gets masked.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Zero-width and other invisible format characters (Unicode category Cf),
# plus the soft hyphen, which renders as nothing mid-word.
_INVISIBLE_EXTRA = frozenset({"\u00ad", "\u034f", "\u115f", "\u1160", "\u3164"})

_TLDS = (
    "com|org|net|edu|gov|io|co|uk|de|fr|es|it|nl|be|ch|at|se|no|dk|fi|ie|pl|pt|ca|au|nz|in|jp"
    "|cn|br|mx|us|info|biz|me|app|dev|ai|shop|store|online|email|example|test"
)
_AT = r"(?P<at>\s*[\[({<]\s*at\s*[\])}>]\s*|\s+at\s+|\s+@\s*|\s*@\s+)"
_DOT = r"(?:\s*[\[({<]\s*dot\s*[\])}>]\s*|\s+dot\s+|\s*\.\s*)"
_WORD = r"[\w+-]+"
# `jane dot doe at example dot com`, `j.doe [at] example [dot] com`, `jdoe AT example DOT net`.
_SPELLED_EMAIL = re.compile(
    rf"(?<![\w@.])(?P<local>{_WORD}(?:{_DOT}{_WORD})*){_AT}"
    rf"(?P<domain>{_WORD}(?:{_DOT}{_WORD})*{_DOT}(?:{_TLDS}))(?![\w@])",
    re.IGNORECASE,
)
_DOT_TOKEN = re.compile(_DOT, re.IGNORECASE)
_SPELLED_DOT = re.compile(r"[\[({<]\s*dot\s*[\])}>]|\sdot\s", re.IGNORECASE)
# Digits written one or two at a time with separators: `4 1 1 1 - 1 1 ...`.
_SPACED_DIGITS = re.compile(r"(?<![\w])\d{1,2}(?:[ \-.]{1,3}\d{1,2}){5,}(?![\w])")


@dataclass(frozen=True)
class NormalizedText:
    """A normalised copy of a text and, per character, the original span it came from."""

    text: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    original: str

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Map the span [start, end) of the normalised text to the original text."""
        if start >= end:
            position = self.starts[start] if start < len(self.starts) else len(self.original)
            return position, position
        return self.starts[start], self.ends[end - 1]


def _invisible(char: str) -> bool:
    return char in _INVISIBLE_EXTRA or unicodedata.category(char) == "Cf"


def _nfkc(original: str) -> tuple[list[str], list[int], list[int]]:
    if original.isascii():  # NFKC leaves ASCII alone, and ASCII has no invisible characters
        return list(original), list(range(len(original))), list(range(1, len(original) + 1))
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for index, char in enumerate(original):
        if _invisible(char):
            continue
        for out in unicodedata.normalize("NFKC", char):
            if _invisible(out):
                continue
            chars.append(out)
            starts.append(index)
            ends.append(index + 1)
    return chars, starts, ends


def _rewrite(
    chars: list[str], starts: list[int], ends: list[int], pattern: re.Pattern[str], replace: object
) -> tuple[list[str], list[int], list[int]]:
    """Replace every match of `pattern`; each new character spans its whole match."""
    text = "".join(chars)
    out_chars: list[str] = []
    out_starts: list[int] = []
    out_ends: list[int] = []
    position = 0
    for match in pattern.finditer(text):
        replacement = replace(match)  # type: ignore[operator]
        if replacement is None:
            continue
        out_chars += chars[position : match.start()]
        out_starts += starts[position : match.start()]
        out_ends += ends[position : match.start()]
        span_start, span_end = starts[match.start()], ends[match.end() - 1]
        out_chars += list(replacement)
        out_starts += [span_start] * len(replacement)
        out_ends += [span_end] * len(replacement)
        position = match.end()
    out_chars += chars[position:]
    out_starts += starts[position:]
    out_ends += ends[position:]
    return out_chars, out_starts, out_ends


def _email(match: re.Match[str]) -> str | None:
    text = match.group(0)
    if "@" in text and not re.search(r"\s@|@\s", text):
        return None
    # "bought it at shop.com" is not an address: a bare lower-case "at" counts
    # only when a spelled-out "dot" shows the same intent.
    if match.group("at").strip() == "at" and not _SPELLED_DOT.search(text):
        return None
    local = _DOT_TOKEN.sub(".", match.group("local"))
    domain = _DOT_TOKEN.sub(".", match.group("domain"))
    return f"{local}@{domain}".lower()


def _digits(match: re.Match[str]) -> str:
    return re.sub(r"\D", "", match.group(0))


def normalize(original: str) -> NormalizedText:
    chars, starts, ends = _nfkc(original)
    chars, starts, ends = _rewrite(chars, starts, ends, _SPELLED_EMAIL, _email)
    chars, starts, ends = _rewrite(chars, starts, ends, _SPACED_DIGITS, _digits)
    return NormalizedText("".join(chars), tuple(starts), tuple(ends), original)
