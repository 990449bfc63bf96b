"""Questions made of the answers' own words: each distinct answer asked for by its phrases.

Customers often ask with the words of the answer they need ("Does the vehicle fare
include the driver?" for "A standard car ... costs $42.00 each way, driver included.
Vehicle check-in closes ..."), while the business's own questions for that answer may
share none of them ("How much is it to take a car?"). An adapter trained only on those
questions then gives another answer, word for word: it learnt which questions an answer
follows, not what the answer is about. For each distinct answer of the train split this
adds up to `count` terse questions made of the answer's distinctive noun phrases
("Driver and vehicle check-in?"), the answer unchanged, so the answer's own words lead
to it as well. Measured with `lorastack eval-defaults` (docs/training.md).

Noun phrases come from the bundled spaCy pipeline (tagger, parser, lemmatizer).
Numbers, times, prices and quantities are left out of them, so a question never gives
a fact away, and so are words most answers share (the brand's greeting, "ferry"): a
phrase is distinctive when every word of it, by lemma, appears in at most
`MAX_SHARED_ANSWERS` distinct answers. The templates differ from the paraphrases'
(`train/paraphrase.py`) and from the rewording `lorastack eval` measures fact recall
with (`train/rewording.py`); a unit test keeps them disjoint. Everything comes from a
seeded `random.Random`: the same data and seed give the same questions.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spacy.language import Language

    # Types only: the data pipeline imports this module, so a runtime import would be circular.
    from lorastack.train.data.records import Message, Role

DEFAULT_ANSWER_QUESTIONS = 0
"""Questions per distinct answer by default."""
MAX_SHARED_ANSWERS = 2
"""A phrase's words may each appear in at most this many distinct answers."""

PAIR_TEMPLATES: tuple[str, ...] = ("{A} and {b}?", "Info on {a} and {b}, please.")
SINGLE_TEMPLATES: tuple[str, ...] = ("{A}?", "What about {a}?")

# Words a phrase never opens or ends with: articles, pronouns, prepositions, punctuation.
_EDGE_POS = frozenset({"DET", "PRON", "ADP", "CCONJ", "PART", "PUNCT", "SYM"})
_HEADS = frozenset({"NOUN", "PROPN"})
_DIGIT = re.compile(r"\d")
_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*>")


@dataclass(frozen=True)
class Phrase:
    """A noun phrase of an answer, as written, and the lemmas of its words."""

    text: str
    lemmas: frozenset[str]
    name: bool = False
    """It opens with a proper noun, whose capital stays in a question."""


PhraseFinder = Callable[[Sequence[str]], list[list["Phrase"]]]
"""Texts in, each text's noun phrases out (`noun_phrases`; tests pass a fake)."""


@lru_cache(maxsize=1)
def _parser() -> Language:
    import spacy

    from lorastack.guardrails.detector import spacy_model_path

    # Noun chunks need the tagger and parser (and lemmas); numbers are told by `like_num`
    # and digits, so the NER is left out.
    return spacy.load(spacy_model_path(), exclude=["ner"])


def noun_phrases(texts: Sequence[str]) -> list[list[Phrase]]:
    """Each text's noun phrases, without articles or pronouns at their edges; a phrase
    holding a number ("90 minutes", "$42.00", "45-liter pack") is a fact and left out."""
    found: list[list[Phrase]] = []
    for doc in _parser().pipe(texts):
        phrases: list[Phrase] = []
        for chunk in doc.noun_chunks:
            words = list(chunk)
            if any(
                t.like_num or _DIGIT.search(t.text) or _PLACEHOLDER.search(t.text) for t in words
            ):
                continue
            while words and words[0].pos_ in _EDGE_POS:
                words = words[1:]
            while words and words[-1].pos_ in _EDGE_POS:
                words = words[:-1]
            if not any(t.pos_ in _HEADS and sum(c.isalpha() for c in t.text) >= 3 for t in words):
                continue  # "E-" of "E-bikes", "F" of "20°F": no word to ask about
            start, last = words[0], words[-1]
            text = doc.text[start.idx : last.idx + len(last.text)]
            lemmas = frozenset(t.lemma_.lower() for t in words if t.pos_ not in _EDGE_POS)
            phrases.append(Phrase(text, lemmas, name=start.pos_ == "PROPN"))
        found.append(phrases)
    return found


def distinctive_phrases(
    phrases: Sequence[Sequence[Phrase]], max_shared: int = MAX_SHARED_ANSWERS
) -> list[list[Phrase]]:
    """Each answer's phrases whose every lemma appears in at most `max_shared` answers,
    once each, in the answer's order."""
    answers_with: Counter[str] = Counter()
    for group in phrases:
        answers_with.update({lemma for phrase in group for lemma in phrase.lemmas})
    kept: list[list[Phrase]] = []
    for group in phrases:
        distinct = {
            phrase.text: phrase
            for phrase in group
            if all(answers_with[lemma] <= max_shared for lemma in phrase.lemmas)
        }
        kept.append(list(distinct.values()))
    return kept


def _as_written_inside(phrase: Phrase) -> str:
    """The phrase as it reads inside a question: a capital that only opened the answer's
    sentence ("Extra bags") lowered, a name's ("Riverlight", "MV Petrel") kept."""
    text = phrase.text
    return text if phrase.name else text[:1].lower() + text[1:]


def questions_for(phrases: Sequence[Phrase], count: int, rng: random.Random) -> list[str]:
    """Up to `count` different questions, each of one phrase or two with no word shared."""
    questions: list[str] = []
    for _ in range(count * 3):  # a few more draws: two may give the same question
        if len(questions) >= count or not phrases:
            break
        first = rng.choice(list(phrases))
        others = [p for p in phrases if not p.lemmas & first.lemmas]
        picked = [first, rng.choice(others)] if others else [first]
        words = [_as_written_inside(phrase) for phrase in picked]
        template = rng.choice(PAIR_TEMPLATES if len(words) == 2 else SINGLE_TEMPLATES)
        a = words[0]
        question = template.format(a=a, A=a[:1].upper() + a[1:], b=words[-1])
        if question not in questions:
            questions.append(question)
    return questions


def _message(role: Role, content: str) -> Message:
    return {"role": role, "content": content}


def answer_question_chats(
    chats: Sequence[Sequence[Message]],
    count: int,
    rng: random.Random,
    find_phrases: PhraseFinder = noun_phrases,
) -> list[list[Message]]:
    """For each distinct final answer of `chats`, up to `count` new chats: the first such
    chat's system turns, a question made of the answer's distinctive phrases, the answer."""
    if count <= 0:
        return []
    by_answer: dict[str, Sequence[Message]] = {}
    for messages in chats:
        if messages and messages[-1]["role"] == "assistant":
            by_answer.setdefault(messages[-1]["content"], messages)
    answers = list(by_answer)
    made: list[list[Message]] = []
    for answer, phrases in zip(answers, distinctive_phrases(find_phrases(answers)), strict=True):
        system = [
            _message("system", m["content"]) for m in by_answer[answer] if m["role"] == "system"
        ][:1]
        for question in questions_for(phrases, count, rng):
            asked = [
                _message("user", question),
                _message("assistant", answer),
            ]
            made.append(system + asked)
    return made
