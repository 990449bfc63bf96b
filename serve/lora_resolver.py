"""lorastack domains inside any vLLM server: a vLLM LoRA resolver over the registry.

vLLM's OpenAI server asks its LoRA resolvers for a `model` it does not know, then loads
what they return and keeps it under that name. With lorastack installed, the plugin entry
point `lorastack_registry` (`vllm.general_plugins`) registers this resolver when
`LORASTACK_RESOLVER_HOME` names a lorastack home; without it nothing changes. vLLM consults
resolvers only with `--enable-lora` and `VLLM_ALLOW_RUNTIME_LORA_UPDATING=true`.

It resolves `domain@vN` and `domain@N` (serve/adapter_cache.py: checked, cached locally)
and refuses aliases with a message that says to name a version. vLLM's error for each
refusal carries the reason; one log line says it too.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

from vllm.exceptions import GracefulHTTPError, VLLMNotFoundError, VLLMValidationError
from vllm.lora.request import LoRARequest
from vllm.lora.resolver import LoRAResolver, LoRAResolverRegistry

from lorastack.errors import AdapterInvalid, AdapterNotFound, RegistryError
from lorastack.models import ModelStore
from lorastack.registry import open_registry
from lorastack.serve.adapter_cache import AdapterCache, MutableName, WrongBaseModel
from lorastack.settings import VLLM_LORA_RANKS, load_settings

# A child of vLLM's logger, so that the lines land where vLLM's own log goes.
logger = logging.getLogger("vllm.lorastack.lora_resolver")

RESOLVER_NAME = "lorastack registry"
HOME_ENV = "LORASTACK_RESOLVER_HOME"
CACHE_ENV = "LORASTACK_RESOLVER_CACHE_DIR"
REGISTRY_COPIES = "registry"
"""Under the resolver's cache folder: the database index's local copies (when the settings
name no `registry.cache_dir`), which the resolver's own copies are made from."""
RUNTIME_LORA_ENV = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"


@dataclass(frozen=True)
class ResolverConfig:
    """Where the resolver reads adapters from and caches them, from the environment."""

    home: Path
    """A lorastack home (`LORASTACK_RESOLVER_HOME`): its `adapters/` registry and its
    `models/` store, which says what base model the server runs."""
    cache_dir: Path
    """Local copies of resolved versions (`LORASTACK_RESOLVER_CACHE_DIR`; default
    `$XDG_CACHE_HOME/lorastack/vllm-adapters`). Keep it on local disk, one per host or
    per server; vLLM rereads adapters from it while it runs."""

    def __post_init__(self) -> None:
        if not self.home.is_dir():
            raise ValueError(f"{HOME_ENV}={self.home}: not a folder (a lorastack home)")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ResolverConfig | None:
        """The configuration the environment asks for; None when it asks for none."""
        home = env.get(HOME_ENV, "").strip()
        if not home:
            return None
        cache = env.get(CACHE_ENV, "").strip()
        if not cache:
            cache_home = env.get("XDG_CACHE_HOME", "").strip() or "~/.cache"
            cache = f"{cache_home}/lorastack/vllm-adapters"
        return cls(
            home=Path(home).expanduser().absolute(),
            cache_dir=Path(cache).expanduser().absolute(),
        )

    def adapter_cache(self) -> AdapterCache:
        """The cache over the home's registry: the database index the `LORASTACK_*`
        environment names (the default), or its `adapters/` folder
        (`LORASTACK_REGISTRY__INDEX=folder`)."""
        settings = load_settings(home=self.home)
        if settings.registry.cache_dir is None:
            # The database index's local copies beside the resolver's, not in a shared home.
            copies = self.cache_dir / REGISTRY_COPIES
            local = settings.registry.model_copy(update={"cache_dir": copies})
            settings = settings.model_copy(update={"registry": local})
        store = ModelStore(settings.models_dir)
        # The resolver never publishes, so the registry's rank limit does not apply here.
        registry = open_registry(settings, store, max_rank=max(VLLM_LORA_RANKS))
        return AdapterCache(registry, self.cache_dir)


class AdapterRefused(GracefulHTTPError):
    """vLLM's error for an adapter lorastack will not serve: its status and one line."""


class RegistryResolver(LoRAResolver):
    """vLLM's `LoRAResolver` over a lorastack registry."""

    def __init__(self, cache: AdapterCache) -> None:
        self.cache = cache

    async def resolve_lora(self, base_model_name: str, lora_name: str) -> LoRARequest | None:
        """`base_model_name` is what vLLM passes: the server's `--model` (a path or hub id)."""
        try:
            found = await asyncio.to_thread(self.cache.get, lora_name, base_model_name)
        except (RegistryError, AdapterInvalid, OSError) as error:
            raise _refusal(lora_name, error) from None
        if found is None:
            logger.debug("%s is not a domain of the lorastack registry", lora_name)
            return None
        logger.info(
            "resolved %s to %s (%s, sha256 %s)",
            lora_name,
            found.manifest.ref,
            "copied into the cache" if found.copied else "cached",
            found.manifest.adapter_sha256[:12],
        )
        return LoRARequest(
            lora_name=lora_name, lora_int_id=stable_id(lora_name), lora_path=str(found.path)
        )


def stable_id(name: str) -> int:
    """A positive 31-bit id from the name. vLLM's server numbers resolved adapters itself
    (it overwrites this), but a `LoRARequest` needs one and other callers may keep it."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") % (2**31 - 1) + 1


def _refusal(name: str, error: Exception) -> Exception:
    """vLLM's error for a refused name: the client sees its status and message.

    vLLM ends its search at an exception: a name lorastack refuses is lorastack's, so no
    other resolver should serve it.
    """
    logger.warning("refused %s: %s", name, error)
    if isinstance(error, MutableName | WrongBaseModel):
        return VLLMValidationError(str(error), parameter="model", value=name)
    if isinstance(error, AdapterNotFound):
        return VLLMNotFoundError(f"{error} in the lorastack registry")
    if isinstance(error, AdapterInvalid):
        return AdapterRefused(
            f"`{name}` cannot be served: {error}", HTTPStatus.INTERNAL_SERVER_ERROR
        )
    # A corrupt manifest, a file that cannot be read: the operator's to fix; the client
    # gets no registry path.
    return AdapterRefused(
        f"`{name}` cannot be served: the lorastack registry could not be read "
        "(the server's log says why)",
        HTTPStatus.INTERNAL_SERVER_ERROR,
    )


def register() -> None:
    """The `vllm.general_plugins` entry point: register the resolver when asked to.

    vLLM calls it in each of its processes; only the API server consults resolvers.
    """
    config = ResolverConfig.from_env(os.environ)
    if config is None:
        return
    LoRAResolverRegistry.register_resolver(RESOLVER_NAME, RegistryResolver(config.adapter_cache()))
    logger.info(
        "lorastack's LoRA resolver serves domain versions (domain@vN) from %s, cached in %s",
        config.home / "adapters",
        config.cache_dir,
    )
    if os.environ.get(RUNTIME_LORA_ENV, "").strip().lower() not in ("1", "true"):
        logger.warning(
            "%s is not set to true: vLLM will not consult lorastack's LoRA resolver",
            RUNTIME_LORA_ENV,
        )
