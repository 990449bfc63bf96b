"""Cheap, deterministic augmentation of chat examples for the train split.

Small businesses bring a few dozen conversations; a few variants per example
make the adapter robust to how real customers type (no capitals, no final
punctuation, a typo or two) and to the brand-voice system prompt being absent
or worded slightly differently. Every variant comes from a seeded
`random.Random`, so the same data and seed always give the same variants.

Placeholders left by PII scrubbing (`<PERSON_1>`, `<EMAIL_ADDRESS>`) are never
changed: the model must see them exactly as the gateway will send them.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Types only: the data pipeline imports this module, so a runtime import would be circular.
    from lorastack.train.data.records import Message

# Placeholders (masked `<PERSON_1>` and redacted `<PERSON>`) must survive every edit.
_PROTECTED = re.compile(r"<[A-Z][A-Z0-9_]*>")
_WORD = re.compile(r"[^\W\d_]{4,}")  # letters only: typos in numbers would change facts
_FINAL_PUNCTUATION = re.compile(r"[.!?…]+$")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+")

NOISE_KINDS = ("lowercase", "no_final_punctuation", "typo")
"""User-turn edits, in the order variants are enumerated."""


@dataclass
class Variant:
    """One augmented conversation and the edits that made it (for the report)."""

    messages: list[Message]
    kinds: list[str] = field(default_factory=list)


def _outside_placeholders(text: str, edit: Callable[[str], str]) -> str:
    """Apply `edit` to the text between placeholders, leaving the placeholders intact."""
    pieces: list[str] = []
    position = 0
    for match in _PROTECTED.finditer(text):
        pieces.append(edit(text[position : match.start()]))
        pieces.append(match.group())
        position = match.end()
    pieces.append(edit(text[position:]))
    return "".join(pieces)


def lowercase(text: str) -> str:
    return _outside_placeholders(text, str.lower)


def drop_final_punctuation(text: str) -> str:
    # Placeholders end in ">", never in the punctuation removed here.
    return _FINAL_PUNCTUATION.sub("", text).rstrip()


def add_typos(text: str, rng: random.Random, count: int = 1) -> str:
    """Swap two adjacent letters or drop one, inside `count` words of four letters or more.

    The first and last letters of a word stay, as in most real typos, and the
    text keeps being readable.
    """
    protected = [m.span() for m in _PROTECTED.finditer(text)]
    words = [
        m
        for m in _WORD.finditer(text)
        if not any(m.start() < end and start < m.end() for start, end in protected)
    ]
    if not words:
        return text
    chosen = rng.sample(words, min(count, len(words)))
    for match in sorted(chosen, key=lambda m: m.start(), reverse=True):
        word = match.group()
        index = rng.randrange(1, len(word) - 2)  # an interior pair: word[index], word[index+1]
        if rng.random() < 0.5 and word[index] != word[index + 1]:
            typo = word[:index] + word[index + 1] + word[index] + word[index + 2 :]
        else:
            typo = word[:index] + word[index + 1 :]
        text = text[: match.start()] + typo + text[match.end() :]
    return text


def system_prompt_variants(prompt: str) -> list[str | None]:
    """Deterministic alternatives to a system prompt; None means "no system message".

    No model is involved, so these are rephrasings only in form: the sentences
    in another order, and a one-line form without the final full stop. Training
    on them (and on no system prompt at all) keeps the voice from hanging on
    one exact string.
    """
    variants: list[str | None] = [None]
    sentences = _SENTENCE_BREAK.split(prompt.strip())
    if len(sentences) > 1:
        variants.append(" ".join([*sentences[1:], sentences[0]]))
    variants.append(_FINAL_PUNCTUATION.sub("", " ".join(prompt.split())))
    unique: list[str | None] = []
    for variant in variants:
        if variant != prompt and variant != "" and variant not in unique:
            unique.append(variant)
    return unique


def _noisy_user_turns(messages: Sequence[Message], kind: str, rng: random.Random) -> list[Message]:
    edited: list[Message] = []
    for message in messages:
        content = message["content"]
        if message["role"] == "user":
            if kind == "lowercase":
                content = lowercase(content)
            elif kind == "no_final_punctuation":
                content = drop_final_punctuation(content)
            else:
                content = add_typos(content, rng, count=rng.choice((1, 2)))
        edited.append({"role": message["role"], "content": content})
    return edited


def augment_messages(
    messages: Sequence[Message],
    count: int,
    rng: random.Random,
    system_prompt: str | None = None,
) -> list[Variant]:
    """Up to `count` distinct variants of one conversation, none equal to the original.

    A variant combines a system-prompt choice (kept, removed or reworded; only
    when the conversation's system message is `system_prompt`, the brand
    voice) with at most one kind of user-turn noise.
    """
    if count <= 0:
        return []
    system_choices: list[str | None] = []
    has_voice = (
        system_prompt is not None
        and bool(messages)
        and messages[0]["role"] == "system"
        and messages[0]["content"] == system_prompt
    )
    if has_voice and system_prompt is not None:
        system_choices = system_prompt_variants(system_prompt)
    # (system choice index or -1 to keep it, noise kind or None)
    combinations: list[tuple[int, str | None]] = [
        (choice, noise)
        for choice in range(-1, len(system_choices))
        for noise in (None, *NOISE_KINDS)
        if (choice, noise) != (-1, None)
    ]
    rng.shuffle(combinations)
    seen = {_key(messages)}
    variants: list[Variant] = []
    for choice, noise in combinations:
        if len(variants) >= count:
            break
        kinds: list[str] = []
        edited: list[Message] = list(messages)
        if choice >= 0:
            replacement = system_choices[choice]
            if replacement is None:
                edited = edited[1:]
                kinds.append("system_prompt_removed")
            else:
                edited = [{"role": "system", "content": replacement}, *edited[1:]]
                kinds.append("system_prompt_reworded")
        if noise is not None:
            edited = _noisy_user_turns(edited, noise, rng)
            kinds.append(noise)
        key = _key(edited)
        if key in seen:  # the edit changed nothing (e.g. already lower case)
            continue
        seen.add(key)
        variants.append(Variant(edited, kinds))
    return variants


def _key(messages: Sequence[Message]) -> tuple[tuple[str, str], ...]:
    return tuple((m["role"], m["content"]) for m in messages)
