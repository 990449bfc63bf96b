"""Published domain versions, checked and copied into a local cache, by immutable name.

This is what lorastack's vLLM LoRA resolver (`serve/lora_resolver.py`) serves: a vLLM
server asks for `coffee@v3` (or `coffee@3`) by name, and gets a folder holding exactly
the files published as that version, on the base model the server runs.

Only version names are resolved. vLLM keeps an adapter it loaded under its name for as
long as it runs, so a name must always mean the same weights: an alias (`coffee`,
`coffee@prod`) moves on a promote and is refused here. The gateway, or whatever routes
clients, maps aliases to versions.

The cache holds one folder per adapter content (the published weights' hash and the
config's), so two names of one version share it. A folder appears by one rename once its
copy is complete and checked, and is never changed afterwards; vLLM may read it again at
any time (an adapter evicted from its CPU cache is reloaded from the same path). Copies
are made under a lock per content, across threads and processes: one copy per content.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from lorastack import fsutil
from lorastack.errors import AdapterInvalid, InvalidName, RegistryError
from lorastack.manifest import AdapterManifest
from lorastack.models import ModelRecord
from lorastack.registry import AdapterRef, AdapterRegistry
from lorastack.validation import ADAPTER_CONFIG, ADAPTER_WEIGHTS, check_published

logger = logging.getLogger(__name__)


class MutableName(RegistryError):
    """The name is a domain's alias, which a promote moves: only versions are resolved."""


class WrongBaseModel(RegistryError):
    """The adapter was trained on other weights than those the server runs."""


@dataclass(frozen=True)
class CachedAdapter:
    """A published version as a local folder, checked against its manifest."""

    name: str
    """The name it was asked for (`coffee@3`, `coffee@v3`)."""
    manifest: AdapterManifest
    path: Path
    """The cache folder: `adapter_config.json` and `adapter_model.safetensors`."""
    copied: bool
    """True when this call copied it from the registry; False when the cache had it."""


class AdapterCache:
    """Immutable domain versions of one registry, served from a local cache folder."""

    def __init__(self, registry: AdapterRegistry, root: Path) -> None:
        self.registry = registry
        self.root = root

    def get(self, name: str, base_model: str) -> CachedAdapter | None:
        """The version `name` names, checked and cached, for a server running `base_model`
        (a name, hub id or checkpoint path of a model in the registry's model store).

        None when `name` is not a domain of this registry (another resolver's, maybe).
        Raises `MutableName` for an alias, `AdapterNotFound` for a version that does not
        exist, `WrongBaseModel`, `AdapterInvalid` for files that are not what was published,
        `RegistryCorrupt` for a manifest that cannot be read.
        """
        try:
            ref = AdapterRef.parse(name)
        except InvalidName:
            return None
        if ref.domain not in self.registry.domains():
            return None
        if ref.version is None:
            raise MutableName(_mutable_message(self.registry, name, ref))
        manifest = self.registry.manifest(ref.domain, ref.version)
        _check_base_model(manifest, self.registry.models.find(base_model), name)
        source = self.registry.version_dir(ref.domain, ref.version)
        path, copied = self._cached_copy(source, manifest)
        return CachedAdapter(name, manifest, path, copied)

    def _cached_copy(self, source: Path, manifest: AdapterManifest) -> tuple[Path, bool]:
        key = _content_key(source, manifest)
        entry = self.root / key
        self.root.mkdir(parents=True, exist_ok=True)
        with fsutil.file_lock(self.root / f".{key}.lock"):
            if entry.is_dir():
                try:
                    check_published(entry, manifest)
                    return entry, False
                except (AdapterInvalid, OSError) as error:
                    # Changed on this host since it was cached: copy it again.
                    logger.warning("cached copy of %s is refused, copying again: %s", key, error)
                    fsutil.remove_tree_atomic(entry)
            fsutil.remove_stale_staging(self.root)
            with fsutil.staging_dir(self.root) as staging:
                for file_name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
                    shutil.copyfile(source / file_name, staging / file_name)
                # The copy is checked, not the source: it is what vLLM will read.
                check_published(staging, manifest)
                fsutil.fsync_tree(staging)
                staging.rename(entry)
                fsutil.fsync_dir(self.root)
            return entry, True


def _content_key(source: Path, manifest: AdapterManifest) -> str:
    """The cache folder's name: the published weights' hash and the config's content."""
    config = hashlib.sha256((source / ADAPTER_CONFIG).read_bytes()).hexdigest()
    return f"{manifest.adapter_sha256}-{config[:16]}"


def _mutable_message(registry: AdapterRegistry, name: str, ref: AdapterRef) -> str:
    try:
        now = f"; it points to {registry.resolve(ref).ref} now"
    except RegistryError:
        now = ""
    return (
        f"`{name}` names an alias, which moves when a version is promoted{now}. "
        f"Name a version instead (`{ref.domain}@vN`): a vLLM server keeps what it loaded "
        "under a name for as long as it runs"
    )


def _check_base_model(manifest: AdapterManifest, served: ModelRecord | None, name: str) -> None:
    """The server must run the checkpoint the adapter was trained on: same name in the
    model store, same weights' hash as the manifest recorded."""
    trained_on = manifest.base_model
    if served is None:
        raise WrongBaseModel(
            f"`{name}` was trained on {trained_on.name}, and this server's model is not a "
            "base model in lorastack's model store, so it cannot be checked"
        )
    if served.name != trained_on.name:
        raise WrongBaseModel(
            f"`{name}` was trained on base model {trained_on.name}, but this server runs "
            f"{served.name}"
        )
    if served.checkpoint_sha256 != trained_on.checkpoint_sha256:
        raise WrongBaseModel(
            f"`{name}` was trained on other weights of {trained_on.name} than this server runs"
        )
