"""Answers that reproduce the domain's system prompt (OWASP LLM07, system prompt leakage).

A `LeakIndex` holds the word n-grams of one system prompt. A span of an answer leaks
the prompt where it shares a run of at least `MIN_WORDS` consecutive words with it.
Words are compared after NFKC and case folding, and only word characters count, so
whitespace, line breaks, punctuation and case do not hide a copy ("YOU ARE the
cheerful barista ..." or the prompt re-wrapped as a bulleted list still matches).

Why eight words: a run must be long enough that an answer in the domain's own voice
does not match by chance. Support answers share four-, five- and six-word phrases with
any support prompt ("thank you for your enquiry", "please do not hesitate to contact
us", "if you have any other questions"); eight shared words in a row are rare outside
a copy, and a leak worth stopping is a sentence or more of the prompt, which is caught.
Measured on `guardrails/data/leak_eval.jsonl` (docs/guardrails.md).

Streaming (`hold_start`): a tail of the text whose words are, so far, a run of the
prompt's words (fewer than `MIN_WORDS`) may still become a leak, so it is held back;
once a word cannot be part of any matching window, its fate is final. So no run of
`MIN_WORDS` prompt words is ever released before it is known to be one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from lorastack.errors import PiiBlocked, SystemPromptLeaked
from lorastack.guardrails.entities import Finding

SYSTEM_PROMPT = "SYSTEM_PROMPT"
"""The finding type of a leaked span; redacted as `<SYSTEM_PROMPT>`."""
MIN_WORDS = 8
"""Shared words in a row that count as a leak (see the module docstring for why 8)."""
LEAK_SCORE = 1.0

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class _Word:
    start: int
    end: int
    key: str


def _words(text: str) -> list[_Word]:
    return [
        _Word(m.start(), m.end(), unicodedata.normalize("NFKC", m.group()).casefold())
        for m in _WORD.finditer(text)
    ]


class LeakIndex:
    """The word runs of one system prompt, to find them again in answers."""

    def __init__(self, prompt: str, min_words: int = MIN_WORDS) -> None:
        if min_words < 2:
            raise ValueError("min_words must be at least 2")
        self.min_words = min_words
        keys = [w.key for w in _words(prompt)]
        # Every run of 1..n words: a tail that is one may still grow into a leak.
        self._runs: set[tuple[str, ...]] = {
            tuple(keys[i : i + k])
            for k in range(1, min_words + 1)
            for i in range(len(keys) - k + 1)
        }
        self._longest_word = max((len(k) for k in keys), default=0)

    @property
    def empty(self) -> bool:
        return not self._runs

    def _is_run(self, keys: Sequence[str]) -> bool:
        return tuple(keys) in self._runs

    def find(self, text: str, from_char: int = 0) -> list[Finding]:
        """Spans of `text` that copy the prompt: each window of `min_words` words found in
        the prompt, overlapping windows joined. Only windows whose first word starts at or
        after `from_char` count (the streaming redactor's already-released text)."""
        words = _words(text)
        n = self.min_words
        spans: list[list[int]] = []
        for i in range(len(words) - n + 1):
            if words[i].start < from_char:
                continue
            if self._is_run([w.key for w in words[i : i + n]]):
                start, end = words[i].start, words[i + n - 1].end
                if spans and start < spans[-1][1]:
                    spans[-1][1] = end
                else:
                    spans.append([start, end])
        return [Finding(start, end, SYSTEM_PROMPT, LEAK_SCORE) for start, end in spans]

    def hold_start(self, text: str) -> int | None:
        """Where the tail of `text` that may still grow into a leak starts; None if none."""
        words = _words(text)
        complete = words
        if words and words[-1].end == len(text):
            # The word being written: it may still become any prompt word it is a prefix
            # of; a word longer than the prompt's longest can become none.
            complete = words[:-1]
            if len(words[-1].key) > self._longest_word:
                return None
        first = max(len(complete) - (self.min_words - 1), 0)
        for i in range(first, len(complete)):
            if self._is_run([w.key for w in complete[i:]]):
                return complete[i].start
        if len(complete) < len(words):
            return words[-1].start
        return None


@lru_cache(maxsize=64)
def leak_index(prompt: str, min_words: int = MIN_WORDS) -> LeakIndex:
    """The index of one prompt, built once per process (a domain's prompt is reused)."""
    return LeakIndex(prompt, min_words)


def with_leaks(findings: Iterable[Finding], leaks: Sequence[Finding]) -> list[Finding]:
    """Personal-data findings and leaked spans together: a finding overlapping a leaked span
    widens it (the span is redacted whole, so none of the value is left beside it)."""
    spans = [[leak.start, leak.end] for leak in leaks]
    others: list[Finding] = []
    for finding in sorted(findings):
        touching = [s for s in spans if finding.start < s[1] and s[0] < finding.end]
        if not touching:
            others.append(finding)
        for span in touching:
            span[0], span[1] = min(span[0], finding.start), max(span[1], finding.end)
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    joined = [Finding(start, end, SYSTEM_PROMPT, LEAK_SCORE) for start, end in merged]
    kept = [f for f in others if not any(f.overlaps(span) for span in joined)]
    return sorted([*kept, *joined])


def blocked_error(types: Sequence[str], direction: str) -> Exception:
    """What a block of these finding types raises: a leak of the system prompt is named as
    one (and wins: the answer's personal data is beside the point), else `PiiBlocked`."""
    if SYSTEM_PROMPT in types:
        return SystemPromptLeaked()
    return PiiBlocked(list(types), direction)
