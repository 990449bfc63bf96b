"""The registry's index in the lorastack database, the adapters' files in a blob store.

Several gateways and publishers on several machines share one registry this way: the
index (each domain's `DomainIndex` and each version's manifest) lives in two tables of the
lorastack database (PostgreSQL to share it), the two files of each version in a
content-addressed blob store (`lorastack.blobs`: a folder, a shared filesystem, S3, GCS or
Azure). Every change of a domain is one SQL transaction that first locks the domain's row
(`SELECT ... FOR UPDATE` on PostgreSQL; SQLite's write transactions already queue), so
concurrent publishes get distinct versions and a promote is seen by every reader the
moment it commits.

vLLM and the evaluation read a version from a local folder: `version_dir` materialises it
once per host under the cache folder, from the blobs, checked against the manifest and
renamed in whole, so concurrent processes never see half a copy. Versions never change:
a copy, once verified, stays valid.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from lorastack import fsutil
from lorastack.blobs import BlobStore
from lorastack.db.engine import display_url
from lorastack.db.migrate import upgrade
from lorastack.db.schema import RegistryDomainRow, RegistryVersionRow
from lorastack.db.sessions import Sessions
from lorastack.errors import AdapterNotFound, DatabaseError, RegistryCorrupt, RegistryUnavailable
from lorastack.manifest import MANIFEST_FILE, AdapterManifest, DomainIndex, check_name
from lorastack.registry.index import StagedAdapter
from lorastack.validation import ADAPTER_CONFIG, ADAPTER_WEIGHTS


class _RegistrySessions(Sessions):
    """Sessions whose database failures are the registry's (`RegistryUnavailable`): a
    gateway answers 503 for them, not the feedback store's or the keys' error."""

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with _registry_unavailable(), super().reading() as session:
            yield session

    @contextmanager
    def writing(self) -> Iterator[Session]:
        with _registry_unavailable(), super().writing() as session:
            yield session


@contextmanager
def _registry_unavailable() -> Iterator[None]:
    try:
        yield
    except DatabaseError as error:
        raise RegistryUnavailable(f"the registry's index: {error}") from error


class DatabaseIndex:
    """The index in the database, the files in `blobs`, local copies in `cache_dir`
    (`RegistryIndex`). Opening it upgrades the database's schema."""

    def __init__(self, engine: Engine, blobs: BlobStore, cache_dir: Path) -> None:
        self.engine = engine
        self.blobs = blobs
        self.cache_dir = cache_dir
        self._sessions = _RegistrySessions(engine)
        # Versions whose cached copy this process has checked: later uses cost nothing.
        self._verified: set[tuple[str, int]] = set()
        upgrade(engine)

    @property
    def description(self) -> str:
        return f"database {display_url(self.engine.url)} (adapter files in {self.blobs.url})"

    # -- reading -------------------------------------------------------------

    def domains(self) -> list[str]:
        query = select(RegistryVersionRow.domain).distinct().order_by(RegistryVersionRow.domain)
        with self._sessions.reading() as session:
            return list(session.scalars(query))

    def read(self, domain: str) -> DomainIndex:
        check_name(domain)
        with self._sessions.reading() as session:
            row = session.get(RegistryDomainRow, domain)
            if row is None:
                return DomainIndex(domain=domain)
            return _domain_index(domain, row.index)

    def version_numbers(self, domain: str) -> list[int]:
        check_name(domain)
        with self._sessions.reading() as session:
            return _version_numbers(session, domain)

    def manifest(self, domain: str, version: int) -> AdapterManifest:
        return _manifest(domain, version, self._version_row(domain, version).manifest)

    def _version_row(self, domain: str, version: int) -> RegistryVersionRow:
        check_name(domain)
        with self._sessions.reading() as session:
            row = session.get(RegistryVersionRow, (domain, version))
            if row is None:
                raise AdapterNotFound(f"{domain}@v{version} does not exist")
            session.expunge(row)
            return row

    def version_dir(self, domain: str, version: int) -> Path:
        """The version's verified local copy, made on first use (`AdapterNotFound` for a
        version that does not exist; `BlobNotFound`, `BlobCorrupt` for missing or damaged
        files: nothing is left behind then)."""
        folder = self.cache_dir / check_name(domain) / f"v{version}"
        if (domain, version) in self._verified and folder.is_dir():
            return folder
        row = self._version_row(domain, version)
        manifest = _manifest(domain, version, row.manifest)
        if manifest.adapter_sha256 != row.adapter_sha256:
            raise RegistryCorrupt(f"{manifest.ref}: its manifest and its row name other weights")
        parent = folder.parent
        parent.mkdir(parents=True, exist_ok=True)
        with fsutil.file_lock(parent / f".v{version}.lock"):
            if not _copy_matches(folder, manifest, row.config_sha256):
                if folder.exists():  # another database's version of that number, or damaged
                    fsutil.remove_tree_atomic(folder)
                self._materialise(folder, manifest, row)
        self._verified.add((domain, version))
        return folder

    def _materialise(
        self, folder: Path, manifest: AdapterManifest, row: RegistryVersionRow
    ) -> None:
        fsutil.remove_stale_staging(folder.parent)
        with fsutil.staging_dir(folder.parent) as staging:
            # The blob store checks each file against its digest as it fetches it.
            self.blobs.fetch(row.adapter_sha256, staging / ADAPTER_WEIGHTS)
            self.blobs.fetch(row.config_sha256, staging / ADAPTER_CONFIG)
            fsutil.write_json_atomic(staging / MANIFEST_FILE, manifest.model_dump(mode="json"))
            fsutil.fsync_tree(staging)
            staging.rename(folder)
            fsutil.fsync_dir(folder.parent)

    # -- writing -------------------------------------------------------------

    @contextmanager
    def stage(self, domain: str, source: Path) -> Iterator[StagedAdapter]:
        # Blobs are content-addressed: one that no version ends up naming costs space only.
        yield StagedAdapter(
            adapter_sha256=self.blobs.put(source / ADAPTER_WEIGHTS),
            config_sha256=self.blobs.put(source / ADAPTER_CONFIG),
        )

    @contextmanager
    def transaction(self, domain: str) -> Iterator[_SqlTransaction]:
        check_name(domain)
        with self._sessions.writing() as session:
            row = _locked_domain(session, domain)
            transaction = _SqlTransaction(session, domain, _domain_index(domain, row.index))
            yield transaction
            row.index = transaction.index.model_dump(mode="json")
            row.updated_at = datetime.now(UTC)


class _SqlTransaction:
    """Inside one SQL transaction that holds the domain row's lock."""

    def __init__(self, session: Session, domain: str, index: DomainIndex) -> None:
        self._session = session
        self._domain = domain
        self.index = index

    def version_numbers(self) -> list[int]:
        return _version_numbers(self._session, self._domain)

    def add_version(self, manifest: AdapterManifest, staged: StagedAdapter) -> None:
        self._session.add(
            RegistryVersionRow(
                domain=self._domain,
                version=manifest.version,
                manifest=manifest.model_dump(mode="json"),
                adapter_sha256=staged.adapter_sha256,
                config_sha256=staged.config_sha256,
                published_at=manifest.created_at,
            )
        )
        self._session.flush()

    def remove_version(self, version: int) -> None:
        # The blobs stay: another version (or domain) may share them.
        self._session.execute(
            delete(RegistryVersionRow).where(
                RegistryVersionRow.domain == self._domain, RegistryVersionRow.version == version
            )
        )


def _locked_domain(session: Session, domain: str) -> RegistryDomainRow:
    """The domain's row, locked until the transaction ends; created when missing (rolled
    back with the transaction if that fails)."""
    query = select(RegistryDomainRow).where(RegistryDomainRow.domain == domain).with_for_update()
    row = session.scalars(query).one_or_none()
    if row is not None:
        return row
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # Two writers creating the domain at once: the second waits for the first and finds it.
    values = {
        "domain": domain,
        "index": DomainIndex(domain=domain).model_dump(mode="json"),
        "updated_at": datetime.now(UTC),
    }
    session.execute(insert(RegistryDomainRow).values(values).on_conflict_do_nothing())
    return session.scalars(query).one()


def _version_numbers(session: Session, domain: str) -> list[int]:
    query = (
        select(RegistryVersionRow.version)
        .where(RegistryVersionRow.domain == domain)
        .order_by(RegistryVersionRow.version)
    )
    return list(session.scalars(query))


def _domain_index(domain: str, data: Any) -> DomainIndex:
    try:
        return DomainIndex.model_validate(data)
    except (ValueError, ValidationError) as error:
        raise RegistryCorrupt(f"the index of domain {domain!r} is corrupt: {error}") from None


def _manifest(domain: str, version: int, data: Any) -> AdapterManifest:
    try:
        return AdapterManifest.model_validate(data)
    except (ValueError, ValidationError) as error:
        raise RegistryCorrupt(f"the manifest of {domain}@v{version} is corrupt: {error}") from None


def _copy_matches(folder: Path, manifest: AdapterManifest, config_sha256: str) -> bool:
    """Whether `folder` is this version's copy: the same manifest, the same small config
    file (hashed), weights of some size (hashed when the copy was made)."""
    try:
        cached = AdapterManifest.model_validate(
            json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        )
        weights = (folder / ADAPTER_WEIGHTS).stat().st_size
        config = fsutil.sha256_file(folder / ADAPTER_CONFIG)
    except (OSError, ValueError, ValidationError):
        return False
    return cached == manifest and config == config_sha256 and weights > 0
