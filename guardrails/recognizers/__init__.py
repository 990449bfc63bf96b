"""Recognizers beyond Presidio's predefined ones, one module per family of entities.

Each module's `recognizers()` returns Presidio `EntityRecognizer`s, built once
per process by `detector.build_analyzer`:

- `address`: postal addresses (`ADDRESS`)
- `names`: names from many countries, beyond what spaCy's small English model knows (`PERSON`)
- `places`: places after a cue ("moved to Ghent"), where spaCy misses them (`LOCATION`)
- `secrets`: API keys, tokens, private keys, passwords given in context (`SECRET`)
- `documents`: dates of birth, passport and driving licence numbers, UK National
  Insurance numbers (`DATE_OF_BIRTH`, `PASSPORT_NUMBER`, `DRIVER_LICENSE`, `UK_NINO`)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from presidio_analyzer import EntityRecognizer


def extra_recognizers() -> list[EntityRecognizer]:
    from lorastack.guardrails.recognizers import address, documents, names, places, secrets

    return [
        *address.recognizers(),
        *names.recognizers(),
        *places.recognizers(),
        *secrets.recognizers(),
        *documents.recognizers(),
    ]
