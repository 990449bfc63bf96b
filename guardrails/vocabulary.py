"""A business's own names, told apart from its customers' personal data.

spaCy's small NER model reads many of a business's names as people or places: a ferry
operator's "Skerry Point" and "Free Wi-Fi", an outdoor shop's "Switchback" tent, even the
"Ahoy" its brand voice opens with. Masked in the training data, each becomes a placeholder
numbered per conversation (`<PERSON_2>` is one island in one chat and another island in
the next), so the adapter cannot learn which is which, and learns to answer customers with
placeholders instead of the facts.

A customer's name or address belongs to one conversation, two or three at most; a
business's own name recurs across many of them, in what the business writes. So a
name-like value (the statistical `PERSON` and `LOCATION` findings, never a pattern one
like an e-mail or a card number) found in the business's own texts (system and assistant
turns, completions, documents: `lorastack.texts.business_texts`; the caller picks them) of
at least `MIN_RECORDS` records and `MIN_SHARE` of them is the business's *vocabulary*:
kept as written in the training data, listed in the data report and the published
manifest, and left unmasked by the gateway for that adapter version, so prompts look as
they did in training. A value on the policy's deny-lists (employee names) is never
vocabulary; a common first name that agents greet many customers with can be, so the
report lists every value for a person to check, and `--no-vocabulary` turns it off.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

from lorastack.guardrails.entities import LOCATION, PERSON, Finding

NAME_TYPES = (PERSON, LOCATION)
"""The entity types a business's own names are mistaken for (spaCy's NER finds both)."""
MIN_RECORDS = 5
"""A value is vocabulary from this many records on ..."""
MIN_SHARE = 0.02
"""... and in at least this share of the records (2%: in a large dataset, even a common
first name a support team greets customers with stays under it)."""

RecordFindings = Sequence[tuple[str, Sequence[Finding] | None]]
"""One record's texts, each with what was found in it (None: not scanned)."""


def _key(value: str) -> str:
    return " ".join(value.split()).casefold()


def recurring_names(
    records: Sequence[RecordFindings],
    never: Iterable[str] = (),
    min_records: int = MIN_RECORDS,
    min_share: float = MIN_SHARE,
) -> list[str]:
    """The name-like values found in enough of `records` to be the business's own,
    most frequent first (then alphabetically), each in its most common spelling.
    Values in `never` (any case) are left out."""
    excluded = {_key(value) for value in never}
    counts: Counter[str] = Counter()
    spellings: dict[str, Counter[str]] = {}
    for record in records:
        seen: set[str] = set()
        for text, findings in record:
            for finding in findings or ():
                if finding.type not in NAME_TYPES:
                    continue
                value = " ".join(text[finding.start : finding.end].split())
                key = _key(value)
                if not key or key in excluded:
                    continue
                spellings.setdefault(key, Counter())[value] += 1
                seen.add(key)
        counts.update(seen)
    needed = max(min_records, math.ceil(min_share * len(records)))
    kept = [(key, count) for key, count in counts.items() if count >= needed]
    kept.sort(key=lambda item: (-item[1], item[0]))
    return [spellings[key].most_common(1)[0][0] for key, _ in kept]
