"""What a request's `model` names: the base model, or a domain adapter version."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lorastack.errors import AdapterNotFound, InvalidName, RegistryCorrupt, RegistryError
from lorastack.manifest import AdapterManifest
from lorastack.registry import AdapterRef, AdapterRegistry
from lorastack.serve.errors import BadRequest, ModelNotFound
from lorastack.serve.keys import ClientKey


@dataclass(frozen=True)
class Target:
    requested: str
    """The `model` the client sent; answers carry it back."""
    domain: str | None
    """None for the base model."""
    manifest: AdapterManifest | None = None
    path: Path | None = None


def resolve_target(
    model: str, base_model: str, registry: AdapterRegistry, key: ClientKey | None
) -> Target:
    """Resolve `domain`, `domain@N`, `domain@alias` or the base model's name.

    A domain the key may not use is reported exactly like one that does not
    exist, so keys cannot probe for other businesses' domains.
    """
    if model == base_model:
        if key is not None and not key.allows(base_model):
            raise ModelNotFound(model)
        return Target(model, None)
    try:
        ref = AdapterRef.parse(model)
        if key is not None and not key.allows(ref.domain):
            raise ModelNotFound(model)
        manifest = registry.resolve(ref)
    except (AdapterNotFound, InvalidName):
        raise ModelNotFound(model) from None
    except RegistryCorrupt:
        raise  # the operator's problem: a 500 that names no path
    except RegistryError:
        raise ModelNotFound(model) from None
    if manifest.base_model.name != base_model:
        raise BadRequest(
            f"`{model}` was trained on base model {manifest.base_model.name}, "
            f"but this deployment serves {base_model}",
            param="model",
            code="model_not_available",
        )
    return Target(model, ref.domain, manifest, registry.version_dir(ref.domain, manifest.version))
