"""Question paraphrases for the train split: the same facts asked in other words.

A customer never asks the way the training data does. An adapter trained on each
question in one wording learns that wording: asked "Could you tell me how long the
crossing takes?" instead of "How long is the crossing?" it recalls the fact about
half as often (measured with `lorastack eval-defaults` on the held-out test brand,
docs/training.md). Adding a few rewordings of each train chat's user turns, with
the answers unchanged, teaches the question-to-fact link instead of the string.

The rewordings are deliberately *not* those `lorastack eval` measures with
(`train/rewording.py`): other framing templates, another synonym table, and no
clause reordering, so fact recall on reworded test questions stays a measure of
generalisation, not of having seen the test's rewording method. A unit test keeps
the two disjoint.

Each paraphrase applies, to every user turn:

1. synonym swaps from `TRAIN_SYNONYMS` (probability 0.5 each, lower-case or
   question-opening words only, so names, numbers, times and prices stay as written);
2. for the chat's first user turn, one framing template from `TRAIN_QUESTION_TEMPLATES`
   (or, for a message that asks nothing, `TRAIN_STATEMENT_TEMPLATES`), a different one
   for each paraphrase of the same chat.

Placeholders left by PII scrubbing (`<PERSON_1>`) are never changed. Everything comes
from a seeded `random.Random`: the same data and seed give the same paraphrases.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lorastack.train.rewording import lower_first, swap_pattern, swap_synonyms, upper_first

if TYPE_CHECKING:
    # Types only: the data pipeline imports this module, so a runtime import would be circular.
    from lorastack.train.data.records import Message

DEFAULT_PARAPHRASES = 1
"""Question paraphrases per train chat by default: measured with `lorastack eval-defaults`
(docs/training.md), they raise fact recall on reworded questions of a brand nobody tuned
the defaults on."""
SWAP_PROBABILITY = 0.5

TRAIN_SYNONYMS: dict[str, tuple[str, ...]] = {
    "is it possible to": ("could i",),
    "do you have": ("is there",),
    "how do i": ("what do i do to",),
    "how can i": ("what should i do to",),
    "how much does": ("what does",),
    "how long does": ("how much time does",),
    "what time": ("what hour",),
    "when does": ("what time does",),
    "where can i": ("where do i",),
    "how many": ("what number of",),
    "what is": ("what's",),
    "i want to": ("i wish to",),
    "i need to": ("i must",),
    "can i": ("could i", "may i"),
    "can you": ("could you",),
    "do you": ("does your company",),
    "tell me": ("let me know",),
    "need": ("require",),
    "buy": ("get",),
    "book": ("reserve",),
    "cost": ("price",),
    "allowed": ("ok",),
    "bring": ("take",),
    "usually": ("normally",),
    "help": ("support",),
}
TRAIN_QUESTION_TEMPLATES: tuple[str, ...] = (
    "Hey, {q}",
    "Question: {q}",
    "{Q} Please let me know.",
    "Can you help? {Q}",
    "So, {q}",
    "Good morning. {Q}",
    "{Q} Cheers!",
)
TRAIN_STATEMENT_TEMPLATES: tuple[str, ...] = ("Hey. {Q}", "{Q} Please advise.", "Good morning. {Q}")

_PROTECTED = re.compile(r"<[A-Z][A-Z0-9_]*>")
_SWAP = swap_pattern(TRAIN_SYNONYMS)


def paraphrase_text(text: str, template: str, rng: random.Random) -> str:
    """`text` with synonyms swapped and framed by `template` (`{q}` / `{Q}` placeholders)."""
    text = " ".join(text.split())
    if not text or _PROTECTED.fullmatch(text):
        return text
    swapped = swap_synonyms(text, rng, TRAIN_SYNONYMS, _SWAP, SWAP_PROBABILITY)
    return template.format(q=lower_first(swapped), Q=upper_first(swapped))


def _reword_turn(message: Message, framed: bool, template: str, rng: random.Random) -> str:
    if message["role"] != "user":
        return message["content"]
    return paraphrase_text(message["content"], template if framed else "{Q}", rng)


def paraphrase_messages(
    messages: Sequence[Message], count: int, rng: random.Random
) -> list[list[Message]]:
    """Up to `count` paraphrases of a chat: user turns reworded, every other turn as is.

    Synonyms are swapped in every user turn; the first one is also framed, with a
    different template in each paraphrase. A chat without a user turn has none.
    """
    first = next((i for i, m in enumerate(messages) if m["role"] == "user"), None)
    if count <= 0 or first is None:
        return []
    asks = "?" in messages[first]["content"]
    templates = list(TRAIN_QUESTION_TEMPLATES if asks else TRAIN_STATEMENT_TEMPLATES)
    rng.shuffle(templates)
    paraphrases: list[list[Message]] = []
    for template in templates[:count]:
        paraphrases.append(
            [
                {"role": m["role"], "content": _reword_turn(m, i == first, template, rng)}
                for i, m in enumerate(messages)
            ]
        )
    return paraphrases
