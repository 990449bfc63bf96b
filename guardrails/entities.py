"""What the guardrails find: entity types and findings, with no raw values kept."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

PERSON = "PERSON"
EMAIL_ADDRESS = "EMAIL_ADDRESS"
PHONE_NUMBER = "PHONE_NUMBER"
CREDIT_CARD = "CREDIT_CARD"
IBAN_CODE = "IBAN_CODE"
US_SSN = "US_SSN"
IP_ADDRESS = "IP_ADDRESS"
LOCATION = "LOCATION"
# Issue 19's entities: each has its recognizers in `lorastack.guardrails.recognizers`.
ADDRESS = "ADDRESS"
"""A postal address: street and number, unit, city, postcode (US, UK, common EU formats)."""
SECRET = "SECRET"  # noqa: S105  (an entity name)
"""An API key, access token, private key or a password given in context."""
DATE_OF_BIRTH = "DATE_OF_BIRTH"
PASSPORT_NUMBER = "PASSPORT_NUMBER"
DRIVER_LICENSE = "DRIVER_LICENSE"
UK_NINO = "UK_NINO"

BUILTIN_ENTITIES = (
    PERSON,
    EMAIL_ADDRESS,
    PHONE_NUMBER,
    CREDIT_CARD,
    IBAN_CODE,
    US_SSN,
    IP_ADDRESS,
    LOCATION,
    ADDRESS,
    SECRET,
    DATE_OF_BIRTH,
    PASSPORT_NUMBER,
    DRIVER_LICENSE,
    UK_NINO,
)


class Direction(StrEnum):
    INPUT = "input"
    """Text on its way to the model: prompts, training data."""
    OUTPUT = "output"
    """Text the model wrote, on its way to the user."""


class Action(StrEnum):
    MASK = "mask"
    """Reversible placeholder (`<PERSON_1>`), the same for the same value in a conversation."""
    REDACT = "redact"
    """Irreversible: the value is replaced by its type (`<PERSON>`)."""
    BLOCK = "block"
    """The whole text is refused, naming the entity types found."""
    ALLOW = "allow"
    """Left as it is."""


@dataclass(frozen=True, order=True)
class Finding:
    """One detected entity: a span of the original text, never its value."""

    start: int
    end: int
    type: str
    score: float

    def overlaps(self, other: Finding) -> bool:
        return self.start < other.end and other.start < self.end


@dataclass(frozen=True)
class CustomEntity:
    """A domain's own entity: a pattern with context words, or a deny-list of values."""

    type: str
    patterns: tuple[str, ...] = ()
    deny_list: tuple[str, ...] = ()
    context: tuple[str, ...] = ()
    score: float = 0.6
