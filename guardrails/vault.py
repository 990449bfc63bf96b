"""Reversible placeholders for one conversation.

A `Vault` lives exactly as long as one request: the gateway builds it from the
conversation the client sends and drops it with the response. Nothing else can
address it, so a placeholder typed by a user can only ever be restored to a
value that user sent in the same conversation, and one the vault did not issue
is never restored at all.
"""

from __future__ import annotations

import re
import unicodedata

PLACEHOLDER = re.compile(r"<(?P<type>[A-Z][A-Z0-9_]*?)_(?P<index>[0-9]+)>")


def _key(entity_type: str, value: str) -> tuple[str, str]:
    folded = " ".join(unicodedata.normalize("NFKC", value).casefold().split())
    return entity_type, folded


class Vault:
    """Value-to-placeholder mapping for one conversation."""

    def __init__(self) -> None:
        self._placeholders: dict[tuple[str, str], str] = {}
        self._values: dict[str, str] = {}
        self._restorable: set[str] = set()
        self._taken: set[str] = set()
        self._counters: dict[str, int] = {}

    def reserve_literals(self, text: str) -> None:
        """Never issue a placeholder that already appears, typed, in `text`.

        Otherwise a user could type `<PERSON_1>` and have it restored to the
        value the vault later gives that name.
        """
        self._taken.update(match.group(0) for match in PLACEHOLDER.finditer(text))

    def placeholder_for(self, entity_type: str, value: str, restorable: bool = True) -> str:
        """The placeholder for a value; the same value always gets the same one.

        Values the user sent are `restorable`; values first seen in the model's
        answer are masked but never restored.
        """
        key = _key(entity_type, value)
        existing = self._placeholders.get(key)
        if existing is not None:
            if restorable:
                self._restorable.add(existing)
            return existing
        index = self._counters.get(entity_type, 0)
        while True:
            index += 1
            placeholder = f"<{entity_type}_{index}>"
            if placeholder not in self._taken and placeholder not in self._values:
                break
        self._counters[entity_type] = index
        self._placeholders[key] = placeholder
        self._values[placeholder] = value
        if restorable:
            self._restorable.add(placeholder)
        return placeholder

    def value_of(self, placeholder: str) -> str | None:
        """The value behind a restorable placeholder this vault issued, else None."""
        return self._values.get(placeholder) if placeholder in self._restorable else None

    def restore(self, text: str) -> str:
        """Replace the restorable placeholders this vault issued with their values."""
        return PLACEHOLDER.sub(lambda m: self.value_of(m.group(0)) or m.group(0), text)

    def __len__(self) -> int:
        return len(self._values)
