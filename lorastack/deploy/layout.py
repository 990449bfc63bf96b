"""The registry's published versions as an object-storage layout of adapter folders.

Engines that load LoRA adapters by name from a storage prefix (Ray Serve LLM's
`dynamic_lora_loading_path`) read one folder per adapter::

    <layout>/<domain>@v<N>/adapter_model.safetensors
    <layout>/<domain>@v<N>/adapter_config.json

The folder name is the version's immutable name (`AdapterManifest.ref`, the same name the
gateway gives the version inside vLLM); aliases stay in the registry, where the gateway
maps them. `export_layout` copies what vLLM loads and nothing else, checks each version in
the registry against its manifest before copying and each copy after it, writes the
config last (a folder without it is not a loadable adapter yet), and never replaces a
version already there: one that differs from its manifest is refused (a folder without
its config, an interrupted copy, is redone).

The layout is a local folder or any fsspec URL (`s3://...` needs `s3fs`, `gs://...`
`gcsfs`, installed by whoever exports there).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorastack.errors import AdapterInvalid, LorastackError
from lorastack.manifest import AdapterManifest
from lorastack.registry import AdapterRegistry
from lorastack.validation import ADAPTER_CONFIG, ADAPTER_WEIGHTS, check_published

logger = logging.getLogger(__name__)

# The weights first, the config last: Ray reads the config to list and load an adapter.
LAYOUT_FILES = (ADAPTER_WEIGHTS, ADAPTER_CONFIG)
_CHUNK = 1 << 20


class LayoutError(LorastackError):
    """The layout cannot be written, or holds a version that is not what was published."""


@dataclass
class LayoutReport:
    """What one export did, by version name (`domain@vN`)."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def _filesystem(location: str) -> tuple[Any, str]:
    """The fsspec filesystem and root path of a local folder or URL."""
    try:
        from fsspec.core import url_to_fs
    except ImportError:  # pragma: no cover - fsspec comes with datasets
        raise LayoutError("writing a layout needs the fsspec package") from None
    try:
        fs, root = url_to_fs(location)
    except ImportError as error:
        raise LayoutError(f"{location}: {error}") from None
    except ValueError as error:  # an unknown protocol
        raise LayoutError(f"{location}: {error}") from None
    return fs, str(root).rstrip("/")


def _sha256(fs: Any, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_matches(fs: Any, folder: str, manifest: AdapterManifest, source: Path) -> bool:
    """Whether `folder` holds exactly the published files (weights by the manifest's hash)."""
    if not fs.exists(f"{folder}/{ADAPTER_WEIGHTS}"):
        return False
    if _sha256(fs, f"{folder}/{ADAPTER_WEIGHTS}") != manifest.adapter_sha256:
        return False
    with fs.open(f"{folder}/{ADAPTER_CONFIG}", "rb") as handle:
        return bool(handle.read() == (source / ADAPTER_CONFIG).read_bytes())


def _write_version(fs: Any, folder: str, manifest: AdapterManifest, source: Path) -> None:
    fs.makedirs(folder, exist_ok=True)
    for name in LAYOUT_FILES:
        # Uploaded under a temporary name and moved: a reader never sees half a file
        # (on object stores the move is a copy, still complete before it appears).
        partial = f"{folder}/.{name}.partial"
        fs.put_file(str(source / name), partial)
        if name == ADAPTER_WEIGHTS and _sha256(fs, partial) != manifest.adapter_sha256:
            fs.rm(partial)
            raise LayoutError(f"{manifest.ref}: the copy's weights do not match the published hash")
        fs.mv(partial, f"{folder}/{name}")


def _published(
    registry: AdapterRegistry, domains: Iterable[str] | None
) -> list[tuple[AdapterManifest, Path]]:
    names = list(domains) if domains is not None else registry.domains()
    known = set(registry.domains())
    missing = [name for name in names if name not in known]
    if missing:
        raise LayoutError(f"no adapter is published for domain {', '.join(sorted(missing))}")
    return [
        (manifest, registry.version_dir(manifest.domain, manifest.version))
        for name in names
        for manifest in registry.versions(name)
    ]


def export_layout(
    registry: AdapterRegistry, location: str, domains: Iterable[str] | None = None
) -> LayoutReport:
    """Copy every published version (of `domains`, default all) into the layout at
    `location`; versions already there and intact are left as they are."""
    versions = _published(registry, domains)
    if not versions:
        raise LayoutError("the registry has no published adapter to export")
    fs, root = _filesystem(location)
    report = LayoutReport()
    for manifest, source in versions:
        try:
            check_published(source, manifest)  # the registry's own check, before any copy
        except AdapterInvalid as error:
            raise LayoutError(f"not exported: {error}") from None
        folder = f"{root}/{manifest.ref}"
        try:
            # Without its config (written last) a folder is an interrupted copy: redone.
            if fs.exists(f"{folder}/{ADAPTER_CONFIG}"):
                if not _copy_matches(fs, folder, manifest, source):
                    raise LayoutError(
                        f"{location}/{manifest.ref} exists and differs from the published "
                        "version; versions never change: remove it by hand if it is a "
                        "broken copy"
                    )
                report.unchanged.append(manifest.ref)
                continue
            _write_version(fs, folder, manifest, source)
        except OSError as error:
            raise LayoutError(f"{location}/{manifest.ref}: {error}") from None
        logger.info("exported %s to %s", manifest.ref, folder)
        report.written.append(manifest.ref)
    return report
