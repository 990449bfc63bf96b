"""The registry's index in folders, on a local disk or on shared storage (the default
before the database index; `LORASTACK_REGISTRY__INDEX=folder`).

Layout, one folder per business domain::

    adapters/<domain>/domain.json        aliases, canary, capture, the last version assigned
    adapters/<domain>/v<N>/manifest.json
    adapters/<domain>/v<N>/adapter_config.json
    adapters/<domain>/v<N>/adapter_model.safetensors

A version folder appears by one rename once complete, and is never changed
afterwards; aliases switch by an atomic replace of `domain.json`. Writers of a
domain take its lock, so concurrent publishes get distinct versions. Readers
take no lock. The folder can live on shared storage for several gateways whose file
locks work there; the database index (database.py) needs none.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import ValidationError

from lorastack import fsutil
from lorastack.errors import AdapterNotFound, RegistryCorrupt
from lorastack.manifest import (
    DOMAIN_INDEX_FILE,
    MANIFEST_FILE,
    AdapterManifest,
    DomainIndex,
    check_name,
)
from lorastack.registry.index import StagedAdapter
from lorastack.validation import ADAPTER_CONFIG, ADAPTER_WEIGHTS

_VERSION_DIR = re.compile(r"^v([1-9][0-9]*)$")
_LOCK_FILE = ".lock"


class FolderIndex:
    """The index and the adapters under one `adapters/` folder (`RegistryIndex`)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def description(self) -> str:
        return str(self.root)

    def _domain_dir(self, domain: str) -> Path:
        return self.root / check_name(domain)

    def version_dir(self, domain: str, version: int) -> Path:
        return self._domain_dir(domain) / f"v{version}"

    def read(self, domain: str) -> DomainIndex:
        path = self._domain_dir(domain) / DOMAIN_INDEX_FILE
        if not path.is_file():
            return DomainIndex(domain=domain)
        try:
            return DomainIndex.model_validate(fsutil.read_json(path))
        except (ValueError, ValidationError) as error:
            raise RegistryCorrupt(f"{path} is corrupt: {error}") from None

    def version_numbers(self, domain: str) -> list[int]:
        folder = self._domain_dir(domain)
        if not folder.is_dir():
            return []
        numbers = (_VERSION_DIR.match(p.name) for p in folder.iterdir() if p.is_dir())
        return sorted(int(m.group(1)) for m in numbers if m)

    def manifest(self, domain: str, version: int) -> AdapterManifest:
        path = self.version_dir(domain, version) / MANIFEST_FILE
        if not path.is_file():
            raise AdapterNotFound(f"{domain}@v{version} does not exist")
        try:
            return AdapterManifest.model_validate(fsutil.read_json(path))
        except (ValueError, ValidationError) as error:
            raise RegistryCorrupt(f"{path} is corrupt: {error}") from None

    def domains(self) -> list[str]:
        if not self.root.is_dir():
            return []
        names = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        return [name for name in names if not name.startswith(".") and self.version_numbers(name)]

    @contextmanager
    def stage(self, domain: str, source: Path) -> Iterator[StagedAdapter]:
        folder = self._domain_dir(domain)
        folder.mkdir(parents=True, exist_ok=True)
        fsutil.remove_stale_staging(folder)
        with fsutil.staging_dir(folder) as staging:
            # Only what vLLM loads is copied: never optimizer states or stray files.
            for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
                shutil.copyfile(source / name, staging / name)
            yield StagedAdapter(
                adapter_sha256=fsutil.sha256_file(staging / ADAPTER_WEIGHTS),
                config_sha256=fsutil.sha256_file(staging / ADAPTER_CONFIG),
                folder=staging,
            )

    @contextmanager
    def transaction(self, domain: str) -> Iterator[_FolderTransaction]:
        with fsutil.file_lock(self._domain_dir(domain) / _LOCK_FILE):
            transaction = _FolderTransaction(self, domain, self.read(domain))
            yield transaction
            path = self._domain_dir(domain) / DOMAIN_INDEX_FILE
            fsutil.write_json_atomic(path, transaction.index.model_dump(mode="json"))


class _FolderTransaction:
    """Under the domain's file lock. A version folder is renamed in at `add_version`: should
    the process die before the index is written, the folder is there and its number is not
    reused (the next publish's rename fails rather than replace it)."""

    def __init__(self, folders: FolderIndex, domain: str, index: DomainIndex) -> None:
        self._folders = folders
        self._domain = domain
        self.index = index

    def version_numbers(self) -> list[int]:
        return self._folders.version_numbers(self._domain)

    def add_version(self, manifest: AdapterManifest, staged: StagedAdapter) -> None:
        if staged.folder is None:
            raise ValueError("the folder index adds only what it staged itself")
        fsutil.write_json_atomic(staged.folder / MANIFEST_FILE, manifest.model_dump(mode="json"))
        fsutil.fsync_tree(staged.folder)
        staged.folder.rename(self._folders.version_dir(self._domain, manifest.version))
        fsutil.fsync_dir(staged.folder.parent)

    def remove_version(self, version: int) -> None:
        fsutil.remove_tree_atomic(self._folders.version_dir(self._domain, version))
