"""Reword a question, deterministically, without touching the words that carry its facts.

`lorastack eval` asks each model the test questions a second time, reworded, and
measures how many of the reference answer's facts the answers still give (fact
recall, `train/facts.py`): an adapter that learnt facts, not the test questions'
exact wording, keeps them. The rewording is the same for the same question and
seed (`random.Random(f"{seed}:{question}")`), so base, candidate and prod get the
same reworded questions, and a run evaluated twice gets the same ones again.

Three changes, in this order:

1. Synonym swaps from a small table of everyday words and phrases (`how do I` ->
   `how can I`, `buy` -> `purchase`, `problem` -> `issue`), each swapped with
   probability 0.6, only where written in lower case (or opening the question),
   so names, numbers, times and prices are never touched.
2. Clause order, with probability 0.5: a leading `if`/`when`/`before`/... clause
   moves behind the main clause or a trailing one in front of it ("Can I pay by
   card when I order online?" -> "When I order online, can I pay by card?"), or,
   for two sentences, the question moves before the statement.
3. Always one framing template, so the wording always changes: for a question
   "Could you tell me: ...", "Quick question: ...", "Hi there! ...", "... Thanks in
   advance.", "I was wondering, ...", "Hello, I have a question. ..."; for a
   message that asks nothing "Hi there! ...", "... Thanks.", "Hello. ...".

A question's first word is lower-cased behind a template or clause only when it
is a question or function word ("What", "Can", "Do"), never a name.
"""

from __future__ import annotations

import random
import re

SWAP_PROBABILITY = 0.6
CLAUSE_PROBABILITY = 0.5

# Longest phrases first, so "how do i" wins over "do i".
SYNONYMS: dict[str, tuple[str, ...]] = {
    "is it possible to": ("can i",),
    "do you have": ("have you got",),
    "how do i": ("how can i", "what's the way to"),
    "how can i": ("how do i", "what's the best way to"),
    "what time": ("at what time", "when"),
    "i want to": ("i'd like to", "i would like to"),
    "i need to": ("i have to",),
    "do you sell": ("can i buy",),
    "help me": ("assist me",),
    "can i": ("am i able to", "is it possible to"),
    "buy": ("purchase",),
    "change": ("modify", "update"),
    "delete": ("remove",),
    "remove": ("delete",),
    "find": ("locate",),
    "fix": ("sort out", "resolve"),
    "problem": ("issue",),
    "issue": ("problem",),
    "price": ("cost",),
    "big": ("large",),
    "small": ("little",),
    "cheap": ("inexpensive",),
    "quick": ("fast",),
    "maybe": ("perhaps",),
    "allowed": ("permitted",),
    "start": ("begin",),
    "wrong": ("incorrect",),
    "broken": ("not working",),
    "show": ("display",),
    "pls": ("please",),
    "u": ("you",),
}
QUESTION_TEMPLATES: tuple[str, ...] = (
    "Could you tell me: {q}",
    "Quick question: {q}",
    "Hi there! {Q}",
    "{Q} Thanks in advance.",
    "I was wondering, {q}",
    "Hello, I have a question. {Q}",
)
# For a message that asks nothing ("My latte was cold this morning.").
STATEMENT_TEMPLATES: tuple[str, ...] = ("Hi there! {Q}", "{Q} Thanks.", "Hello. {Q}")
CONJUNCTIONS = ("if", "when", "before", "after", "once", "while", "since", "because")
# Words that may be lower-cased when they stop opening the question: never a name.
_FUNCTION_WORDS = (
    "what where when why how which who whom whose can could would should will shall "
    "do does did is are was were am have has had may might must if once while since "
    "because before after my our your the a an any some there it this that these those "
    "we you they he she its please hi hello hey"
)
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS.split())

_LEADING_CLAUSE = re.compile(
    rf"^(?P<clause>(?:{'|'.join(CONJUNCTIONS)})\b[^,?.!]+),\s*(?P<main>[^?.!]+)(?P<end>[?.!]*)$",
    re.IGNORECASE,
)
_TRAILING_CLAUSE = re.compile(
    rf"^(?P<main>[^,?.!]+?)\s+(?P<clause>(?:{'|'.join(CONJUNCTIONS)})\b[^,?.!]+)(?P<end>[?.!]*)$",
    re.IGNORECASE,
)
_TWO_SENTENCES = re.compile(r"^(?P<first>[^?.!]+[.!])\s+(?P<second>[^?.!]+\?)$")


def lower_first(text: str) -> str:
    """`text` with its first letter lower-cased if its first word is a function word."""
    first = text.split(" ", 1)[0]
    word = first.lower().strip(",:;").removesuffix("'s")
    if word in FUNCTION_WORDS and first[:1].isupper():
        return text[:1].lower() + text[1:]
    return text


def upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def swap_pattern(synonyms: dict[str, tuple[str, ...]]) -> re.Pattern[str]:
    """A regex finding the table's phrases as whole words, longest first."""
    return re.compile(
        r"(?<![\w'<])("
        + "|".join(re.escape(p) for p in sorted(synonyms, key=len, reverse=True))
        + r")(?![\w'>])",
        re.IGNORECASE,
    )


def swap_synonyms(
    text: str,
    rng: random.Random,
    synonyms: dict[str, tuple[str, ...]],
    pattern: re.Pattern[str],
    probability: float,
) -> str:
    """Each phrase of `synonyms` found by `pattern` (`swap_pattern(synonyms)`) swapped for
    one of its synonyms with `probability`, only where written in lower case or opening
    the text, so names stay as written."""

    def replace(match: re.Match[str]) -> str:
        written = match.group(0)
        probe = re.sub(r"\bI\b", "i", written)  # "how do I" is written in lower case
        opens = match.start() == 0
        if probe != probe.lower() and not (opens and probe[1:] == probe[1:].lower()):
            return written  # capitalised inside the text: perhaps a name
        if rng.random() >= probability:
            return written
        choice = re.sub(r"\bi\b", "I", rng.choice(synonyms[probe.lower()]))
        return upper_first(choice) if opens and written[:1].isupper() else choice

    return pattern.sub(replace, text)


_SWAP = swap_pattern(SYNONYMS)


def _reorder(question: str, rng: random.Random) -> str:
    if rng.random() >= CLAUSE_PROBABILITY:
        return question
    leading = _LEADING_CLAUSE.match(question)
    if leading:
        main = upper_first(leading["main"].strip())
        return f"{main} {lower_first(leading['clause'].strip())}{leading['end']}"
    trailing = _TRAILING_CLAUSE.match(question)
    if trailing:
        clause = upper_first(trailing["clause"].strip())
        return f"{clause}, {lower_first(trailing['main'].strip())}{trailing['end']}"
    two = _TWO_SENTENCES.match(question)
    if two:
        return f"{two['second'].strip()} {two['first'].strip()}"
    return question


def reword(question: str, seed: int = 0) -> str:
    """`question` reworded: synonyms, clause order and a framing template (see above).

    The same question and seed always give the same rewording; the facts' words
    (names, numbers, times, prices) are kept as written.
    """
    text = " ".join(question.split())
    if not text:
        return question
    rng = random.Random(f"{seed}:{text}")
    text = _reorder(swap_synonyms(text, rng, SYNONYMS, _SWAP, SWAP_PROBABILITY), rng)
    templates = QUESTION_TEMPLATES if "?" in text else STATEMENT_TEMPLATES
    template = rng.choice(templates)
    return template.format(q=lower_first(text), Q=upper_first(text))
