"""Brand rules: what a domain's answers must look like, decided without a model.

A domain declares its rules once, in its training config; they travel in the
adapter's manifest, so `lorastack eval` measures them on the test split and the
gateway checks every served answer against the same rules. In YAML, each rule
is a mapping with one kind and, optionally, a name and `ignore_case`::

    rules:
      - ends_with: 'Trail tip: [^\\n]+'   # a regex the answer's end must match
        name: trail-tip
      - starts_with: 'Hi|Hello'           # a regex the answer's start must match
      - must_match: '\\bTrailhead\\b'      # a regex found somewhere in the answer
      - must_not_match: '(?i)as an ai'    # a regex found nowhere in it
      - must_mention: [Trailhead]         # at least one of these words or phrases
      - must_not_mention: [REI, Patagonia]  # none of them (whole words, any case)
      - max_words: 120
      - max_sentences: 5
      - max_exclamations: 1
      - no_emoji: true

A rule's name (default: its kind) labels its pass rate in reports and metrics;
two rules of one kind need names of their own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lorastack.errors import LorastackError

RULE_KINDS: tuple[str, ...] = (
    "ends_with",
    "starts_with",
    "must_match",
    "must_not_match",
    "must_mention",
    "must_not_mention",
    "max_words",
    "max_sentences",
    "max_exclamations",
    "no_emoji",
)
_REGEX_KINDS = ("ends_with", "starts_with", "must_match", "must_not_match")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_WORD = re.compile(r"\b\w[\w'-]*\b")
# A sentence ends at ., ! or ? followed by a space or the end (not "3.5" or "e.g.x").
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
# "1." or "2)" opening a line numbers a list item; it ends no sentence.
_LIST_NUMBER = re.compile(r"(?m)^[ \t]*\d{1,3}[.)](?=\s)")
# Emoji and pictographs: the Unicode blocks a style guide means by "no emoji".
_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\U00002600-\U000027bf\U0001f1e6-\U0001f1ff\U0000fe0f\U0000200d]"
)


class RuleError(LorastackError):
    """A brand rule is malformed (unknown kind, bad regex, duplicate name)."""


class BrandRule(BaseModel):
    """One rule an answer must follow; exactly one kind is set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, pattern=_NAME.pattern)
    """Labels the rule in reports and metrics (default: its kind)."""
    ignore_case: bool = False
    """Regexes and mentions match regardless of case (mentions always do)."""
    ends_with: str | None = None
    starts_with: str | None = None
    must_match: str | None = None
    must_not_match: str | None = None
    must_mention: list[str] | None = None
    must_not_mention: list[str] | None = None
    max_words: int | None = Field(default=None, ge=1)
    max_sentences: int | None = Field(default=None, ge=1)
    max_exclamations: int | None = Field(default=None, ge=0)
    no_emoji: bool | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> BrandRule:
        kinds = [kind for kind in RULE_KINDS if getattr(self, kind) is not None]
        if len(kinds) != 1:
            found = ", ".join(kinds) or "none"
            raise ValueError(f"a rule has exactly one of {', '.join(RULE_KINDS)} (found: {found})")
        kind = kinds[0]
        if kind in _REGEX_KINDS:
            try:
                re.compile(str(getattr(self, kind)))
            except re.error as error:
                raise ValueError(f"{kind}: not a valid regular expression ({error})") from None
        if kind in ("must_mention", "must_not_mention"):
            words = getattr(self, kind)
            if not words or not all(isinstance(w, str) and w.strip() for w in words):
                raise ValueError(f"{kind}: give a list of non-empty words or phrases")
        if kind == "no_emoji" and self.no_emoji is not True:
            raise ValueError("no_emoji: write `no_emoji: true` (leave the rule out otherwise)")
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in RULE_KINDS if getattr(self, kind) is not None)

    @property
    def label(self) -> str:
        return self.name or self.kind

    @property
    def value(self) -> Any:
        return getattr(self, self.kind)

    def describe(self) -> str:
        """The rule in a few words, for reports."""
        value = self.value
        if isinstance(value, list):
            value = ", ".join(value)
        return f"{self.kind}: {value}" if self.kind != "no_emoji" else "no emoji"

    @property
    def pattern(self) -> re.Pattern[str] | None:
        """The regex the rule searches answers with (None for the counting kinds): for
        `starts_with` and `ends_with` it matches the very text the rule asks for."""
        return self._pattern

    @cached_property
    def _pattern(self) -> re.Pattern[str] | None:
        flags = re.IGNORECASE if self.ignore_case else 0
        kind = self.kind
        if kind == "ends_with":
            return re.compile(rf"(?:{self.ends_with})\s*\Z", flags)
        if kind == "starts_with":
            return re.compile(rf"\A\s*(?:{self.starts_with})", flags)
        if kind in ("must_match", "must_not_match"):
            return re.compile(str(self.value), flags)
        if kind in ("must_mention", "must_not_mention"):
            words = "|".join(re.escape(w.strip()) for w in self.value)
            return re.compile(rf"(?<!\w)(?:{words})(?!\w)", re.IGNORECASE)
        return None

    def passes(self, answer: str) -> bool:
        """Whether `answer` follows this rule."""
        kind, pattern = self.kind, self._pattern
        if pattern is not None:
            found = pattern.search(answer) is not None
            return not found if kind in ("must_not_match", "must_not_mention") else found
        if kind == "max_words":
            return len(_WORD.findall(answer)) <= int(self.value)
        if kind == "max_sentences":
            return count_sentences(answer) <= int(self.value)
        if kind == "max_exclamations":
            return answer.count("!") <= int(self.value)
        return _EMOJI.search(answer) is None  # no_emoji


def count_sentences(text: str) -> int:
    """Sentences in `text`: each run of . ! ? before a space or the end closes one, and
    text after the last of them counts as one more. A list item's number ("1.") is not
    a sentence end."""
    stripped = _LIST_NUMBER.sub("", text).strip()
    if not stripped:
        return 0
    ends = list(_SENTENCE_END.finditer(stripped))
    tail = stripped[ends[-1].end() :].strip() if ends else stripped
    return len(ends) + (1 if tail else 0)


def parse_rules(raw: Any, source: str = "rules") -> list[BrandRule]:
    """Rules from a YAML or JSON list; `RuleError` names the rule and what is wrong."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise RuleError(f"{source}: `rules` must be a list of rules")
    rules = []
    for position, item in enumerate(raw, 1):
        if isinstance(item, BrandRule):
            rules.append(item)
            continue
        if not isinstance(item, dict):
            raise RuleError(f"{source}: rule {position} must be a mapping such as `max_words: 80`")
        try:
            rules.append(BrandRule.model_validate(item))
        except ValidationError as error:
            problems = "; ".join(_problem(e["loc"], str(e["msg"])) for e in error.errors())
            raise RuleError(f"{source}: rule {position}: {problems}") from None
    labels = [rule.label for rule in rules]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise RuleError(
            f"{source}: more than one rule is named {', '.join(repeated)}; give each its own `name`"
        )
    return rules


def _problem(location: tuple[Any, ...], message: str) -> str:
    """One pydantic error as `field: message` (a whole-rule error without the field)."""
    message = message.removeprefix("Value error, ")
    field = ".".join(str(part) for part in location)
    return f"{field}: {message}" if field else message


def check_answer(rules: Iterable[BrandRule], answer: str) -> dict[str, bool]:
    """Each rule's label and whether `answer` follows it."""
    return {rule.label: rule.passes(answer) for rule in rules}


def pass_rates(rules: Sequence[BrandRule], answers: Sequence[str]) -> dict[str, float]:
    """Each rule's share of `answers` that follow it (empty when there are no answers)."""
    if not answers:
        return {}
    return {
        rule.label: sum(rule.passes(answer) for answer in answers) / len(answers) for rule in rules
    }
