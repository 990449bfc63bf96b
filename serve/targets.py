"""What a request's `model` names: the base model, or a domain adapter version.

A target also carries what the domain's manifest asks of every conversation
sent to it: the brand voice (its system prompt), and its brand rules. A request for
a domain with a running canary lands on the canary or on prod by who is talking
(serve/canary.py); the target remembers which, and whether the domain's answers are
captured (its registry setting, read with the request like the canary).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorastack.errors import (
    AdapterNotFound,
    InvalidName,
    RegistryCorrupt,
    RegistryError,
    RegistryUnavailable,
)
from lorastack.manifest import DEFAULT_ALIAS, AdapterManifest, DomainIndex
from lorastack.registry import AdapterRef, AdapterRegistry
from lorastack.serve import canary
from lorastack.serve.canary import Split
from lorastack.serve.errors import BadRequest, ModelNotFound
from lorastack.serve.keys import ClientKey

logger = logging.getLogger(__name__)

BASE_DOMAIN_LABEL = "base"
"""How metrics and logs name the base model's "domain"."""


@dataclass(frozen=True)
class ServedModel:
    """The base model the engines run."""

    name: str
    checkpoint_sha256: str | None = None
    """Hash of its weights, when this gateway's model store has them; None when it fronts
    engines whose model it does not hold (adapters are then matched by name only)."""


@dataclass(frozen=True)
class Target:
    requested: str
    """The `model` the client sent."""
    domain: str | None
    """None for the base model."""
    manifest: AdapterManifest | None = None
    path: Path | None = None
    split: Split | None = None
    """Set when the domain's canary shared this request with prod: the side it is on."""
    capture: bool = False
    """Whether the domain's answers are captured (never the base model's)."""

    @property
    def label(self) -> str:
        """The domain as metrics and logs name it."""
        return self.domain or BASE_DOMAIN_LABEL

    @property
    def version_label(self) -> str:
        """The version as metrics name it (`v3`); "" for the base model."""
        return f"v{self.manifest.version}" if self.manifest is not None else ""

    @property
    def answered_by(self) -> str:
        """What answers carry in `model`: the version that wrote them (`coffee-shop@v3`),
        or the base model's name."""
        return self.manifest.ref if self.manifest is not None else self.requested

    def with_brand_voice(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return with_system_prompt(messages, self.manifest)


def with_system_prompt(
    messages: list[dict[str, Any]], manifest: AdapterManifest | None
) -> list[dict[str, Any]]:
    """Add the domain's brand voice; the domain's mode decides what happens to the client's."""
    if manifest is None or not manifest.system_prompt:
        return messages
    voice = manifest.system_prompt
    first = messages[0] if messages else None
    if first is None or first.get("role") not in ("system", "developer"):
        return [{"role": "system", "content": voice}, *messages]
    if manifest.system_prompt_mode == "keep":
        return messages
    if manifest.system_prompt_mode == "replace":
        return [{**first, "content": voice}, *messages[1:]]
    own = first.get("content")
    if isinstance(own, str):
        return [{**first, "content": f"{voice}\n\n{own}"}, *messages[1:]]
    return [{"role": "system", "content": voice}, *messages]


def resolve_target(
    model: str,
    served: ServedModel,
    registry: AdapterRegistry,
    key: ClientKey | None,
    conversation: str = "",
) -> Target:
    """Resolve `domain`, `domain@N`, `domain@alias` or the base model's name.

    A domain the key may not use is reported exactly like one that does not
    exist, so keys cannot probe for other businesses' domains. `conversation` is who is
    talking (`canary.conversation_identity`): it picks the side of a running canary.
    """
    if model == served.name:
        if key is not None and not key.allows(served.name):
            raise ModelNotFound(model)
        return Target(model, None)
    split = None
    index = None
    try:
        ref = AdapterRef.parse(model)
        if key is not None and not key.allows(ref.domain):
            raise ModelNotFound(model)
        if canary.splits(ref):
            # The registry is read on every request: every replica sees a canary start,
            # change or stop at once, and the same conversation lands on the same side.
            index = registry.index(ref.domain)
            split = canary.choose(index, conversation)
            if split is not None:
                ref = AdapterRef(ref.domain, version=split.version)
            elif DEFAULT_ALIAS in index.aliases:
                ref = AdapterRef(ref.domain, version=index.aliases[DEFAULT_ALIAS])
        manifest = registry.resolve(ref)
    except (AdapterNotFound, InvalidName):
        raise ModelNotFound(model) from None
    except (RegistryCorrupt, RegistryUnavailable):
        raise  # the operator's problem (a 500 that names no path), or a 503 to retry
    except RegistryError:
        raise ModelNotFound(model) from None
    _check_base_model(model, manifest, served)
    path = registry.version_dir(ref.domain, manifest.version)
    capture = _captured(registry, ref.domain, index)
    return Target(model, ref.domain, manifest, path, split, capture)


def _captured(registry: AdapterRegistry, domain: str, index: DomainIndex | None) -> bool:
    """The domain's capture setting: read with each request, so a change applies to the next."""
    if index is None:
        try:
            index = registry.index(domain)
        except RegistryCorrupt as error:
            # A pinned version is still served; its answers are not captured meanwhile.
            logger.warning("capture of %s is off: %s", domain, error)
            return False
    return index.capture is not None and index.capture.enabled


def _check_base_model(model: str, manifest: AdapterManifest, served: ServedModel) -> None:
    """An adapter runs only on the weights it was trained on: the name and, where known,
    the checkpoint's hash must match what the manifest recorded."""
    trained_on = manifest.base_model
    same_weights = served.checkpoint_sha256 is None or (
        trained_on.checkpoint_sha256 == served.checkpoint_sha256
    )
    if trained_on.name == served.name and same_weights:
        return
    what = (
        f"base model {trained_on.name}"
        if trained_on.name != served.name
        else f"other weights of {trained_on.name}"
    )
    raise BadRequest(
        f"`{model}` was trained on {what}, but this deployment serves {served.name}",
        param="model",
        code="model_not_available",
    )
