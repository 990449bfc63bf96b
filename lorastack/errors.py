"""Typed exceptions shared by every lorastack component.

Library code raises these; the entry points (the CLI, the gateway's exception
handlers) turn them into exit codes or HTTP responses in one place each.
"""

from __future__ import annotations


class LorastackError(Exception):
    """Base class: a failure with a message meant for the user, never a traceback."""


class SettingsError(LorastackError):
    """The configuration (environment, config file) has a bad or unsafe value."""


class InvalidName(LorastackError):
    """A domain, model or alias name is not a plain name."""


class ModelError(LorastackError):
    """A base model could not be provisioned, registered or found."""


class BaseModelNotFound(ModelError):
    """No base model is registered under that name."""


class AdapterInvalid(LorastackError):
    """An adapter folder cannot be published or served; the message says why in one line."""


class RegistryError(LorastackError):
    """The adapter registry refused an operation (conflict, bad reference)."""


class RegistryCorrupt(RegistryError):
    """A registry file cannot be read: the operator's problem, never the client's."""


class RegistryUnavailable(RegistryError):
    """The database that holds the registry's index cannot be reached or read now (a
    transient failure: the request may be retried)."""


class AdapterNotFound(RegistryError):
    """No domain, version or alias matches the reference."""


class EngineError(LorastackError):
    """The inference engine failed to start, died, or did not answer."""


class GuardUnavailable(LorastackError):
    """PII detection failed or timed out; the text was not passed on unscanned."""


class PiiBlocked(LorastackError):
    """A policy blocks the personal data found; names the entity types, never the values."""

    def __init__(self, entity_types: list[str], direction: str = "input") -> None:
        self.entity_types = sorted(set(entity_types))
        self.direction = direction
        where = "the request" if direction == "input" else "the answer"
        super().__init__(
            f"{where} contains personal data that this domain's policy blocks: "
            + ", ".join(self.entity_types)
        )


class SystemPromptLeaked(LorastackError):
    """An answer repeats the domain's system prompt and its policy blocks that; never quotes it."""

    def __init__(self) -> None:
        super().__init__("the answer repeats this domain's system prompt, which its policy blocks")


class PromptInjectionBlocked(LorastackError):
    """A request looks like a prompt injection and the policy blocks those; names the kinds
    of pattern matched, never the text."""

    def __init__(self, categories: list[str]) -> None:
        self.categories = sorted(set(categories))
        super().__init__(
            "the request looks like a prompt injection, which this domain's policy blocks: "
            + ", ".join(self.categories)
        )


class PolicyError(LorastackError):
    """A guardrail policy file is missing or invalid."""


class DatabaseError(LorastackError):
    """The database (captured exchanges and feedback) cannot be reached, read or migrated."""


class ExchangeNotFound(LorastackError):
    """A rating names a response id that no stored exchange has (never captured, or purged)."""


class ManagedKeyError(LorastackError):
    """A managed API key cannot be created, found or changed; the message says why."""


class KeyNotFound(ManagedKeyError):
    """No managed key has that name (or it was revoked, for an operation that needs it live)."""


class KeyNameTaken(ManagedKeyError):
    """A managed key (live or revoked) already has that name."""


class BlobStoreError(RegistryError):
    """The adapter file store (a folder, a shared filesystem or an object store) failed or
    cannot be opened; one line naming the store without its credentials."""


class BlobNotFound(BlobStoreError):
    """No blob is stored under that sha256 digest."""


class BlobCorrupt(BlobStoreError):
    """A stored blob's bytes do not hash to its name (tampered with, or damaged in storage);
    nothing was written where it was being fetched to."""
