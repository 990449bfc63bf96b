"""Places a customer says they live in, move to or are based in, when spaCy misses them.

spaCy's small model knows many places but not every city ("Ghent", "Düsseldorf" in
running text); a customer's own place is personal in a support chat when it comes
after a cue about where they are. Only capitalised words count after a cue, and never
a pronoun or an article, so "moved to a new plan" and "based in the UK office" stay.
The score (0.65) clears the policy's LOCATION threshold (0.6) and stays under spaCy's
(0.85), so where both find a place the longer span wins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lorastack.guardrails.entities import LOCATION

if TYPE_CHECKING:
    from presidio_analyzer import EntityRecognizer

CUE_SCORE = 0.65
# Presidio matches with the `regex` module, case-insensitively: the look-behind keeps
# the cue out of the span and `(?-i:...)` requires the place's capitals.
_CUE = (
    r"(?<=\b(?:moved from|moved to|moving from|moving to|move to|relocated to|relocating to|"
    r"live in|living in|lives in|based in|located in|staying in|from \p{Lu}\p{L}+ to)\s{1,3})"
)
_PLACE_WORD = r"(?-i:\p{Lu}[\p{L}'\u2019-]+)"
# Nor a month or a day ("moved to March 3rd").
_NOT_A_PLACE = (
    r"(?!(?-i:I|The|This|That|We|You|My|Our|It|A|An|UK|US|EU|January|February|March|April|"
    r"May|June|July|August|September|October|November|December|Monday|Tuesday|Wednesday|"
    r"Thursday|Friday|Saturday|Sunday)\b)"
)
PLACE_AFTER_CUE = rf"{_CUE}{_NOT_A_PLACE}{_PLACE_WORD}(?:\s{_PLACE_WORD}){{0,2}}"


def recognizers() -> list[EntityRecognizer]:
    from presidio_analyzer import Pattern, PatternRecognizer

    recognizer: EntityRecognizer = PatternRecognizer(
        supported_entity=LOCATION,
        name="PlaceCueRecognizer",
        patterns=[Pattern("place-after-cue", PLACE_AFTER_CUE, CUE_SCORE)],
    )
    return [recognizer]
