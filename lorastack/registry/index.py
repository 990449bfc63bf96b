"""What the registry keeps its index in: the interface of the folder and the database backends.

The index is everything the registry knows besides the adapters' bytes: each domain's
`DomainIndex` (aliases, their history, the canary, capture, the last version assigned) and
each version's manifest. `AdapterRegistry` (core.py) holds the rules (validation, what a
promote or a rollback does); an index only stores, behind one transaction per domain, so
that concurrent writers, in several processes or on several machines, never lose an update
and never get the same version.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from lorastack.manifest import AdapterManifest, DomainIndex


@dataclass(frozen=True)
class StagedAdapter:
    """An adapter's two files, copied where the index keeps them, not yet a version."""

    adapter_sha256: str
    """sha256 of `adapter_model.safetensors`, as copied."""
    config_sha256: str
    """sha256 of `adapter_config.json`, as copied."""
    folder: Path | None = None
    """The folder index's staging folder, renamed into the version; None elsewhere."""


class IndexTransaction(Protocol):
    """One domain's index, locked against every other writer until the transaction ends.

    `index` is the domain's state to change in place; leaving the `with` block normally
    writes it, an exception leaves everything as it was (the version files added through
    `add_version` of the folder index excepted: see `FolderIndex`)."""

    index: DomainIndex

    def version_numbers(self) -> list[int]:
        """The domain's versions now, oldest first."""
        ...

    def add_version(self, manifest: AdapterManifest, staged: StagedAdapter) -> None:
        """Make `staged` version `manifest.version` of the domain, described by `manifest`."""
        ...

    def remove_version(self, version: int) -> None:
        """Delete one version, its manifest and (where nothing else uses them) its files."""
        ...


class RegistryIndex(Protocol):
    """Where the registry's index and adapter files live."""

    @property
    def description(self) -> str:
        """Where, for messages and logs (never a credential)."""
        ...

    def domains(self) -> list[str]:
        """Domains with at least one version, sorted."""
        ...

    def read(self, domain: str) -> DomainIndex:
        """The domain's state; a fresh one for a domain never written. `RegistryCorrupt`
        when it cannot be read."""
        ...

    def version_numbers(self, domain: str) -> list[int]:
        """The domain's versions, oldest first; [] for an unknown domain."""
        ...

    def manifest(self, domain: str, version: int) -> AdapterManifest:
        """One version's manifest; `AdapterNotFound` when it does not exist."""
        ...

    def version_dir(self, domain: str, version: int) -> Path:
        """A local folder with the version's `adapter_config.json` and
        `adapter_model.safetensors`, which vLLM and the evaluation read."""
        ...

    def stage(self, domain: str, source: Path) -> AbstractContextManager[StagedAdapter]:
        """Copy the two files of the adapter in `source` where the index keeps adapters;
        what no transaction made a version by the end of the `with` block is dropped."""
        ...

    def transaction(self, domain: str) -> AbstractContextManager[IndexTransaction]:
        """Lock the domain's index for one change (see `IndexTransaction`)."""
        ...
