"""Copy a folder registry into another index (the database's), losslessly and idempotently.

Each domain goes over whole or not at all: its versions' files first (checked against
their manifests), then, in one transaction of the target, every version's manifest as it
was and the domain's index as it was (aliases, their history, the canary, the last canary,
capture, the last version assigned). A domain the target already holds exactly as the
folder does is left alone; one that differs (changed in the target since a migration) is
refused and left alone too. The folder is only read, never changed.

`adopt_folder_registry` does it by itself the first time a home's database index is opened
(the default since the database index became it), so a home published to in folders keeps
its adapters, then marks the folder as moved.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from lorastack import fsutil
from lorastack.errors import LorastackError, RegistryCorrupt, RegistryError
from lorastack.manifest import AdapterManifest, DomainIndex
from lorastack.progress import NullProgress, Progress
from lorastack.registry.folder import FolderIndex
from lorastack.registry.index import RegistryIndex
from lorastack.validation import ADAPTER_WEIGHTS

Outcome = Literal["copied", "would copy", "unchanged", "refused"]

MOVED_FILE = "moved.json"
"""In a folder registry that `adopt_folder_registry` moved: where to, when, which domains.
Its presence says the registry no longer lives in the folder."""
_MOVE_LOCK = ".move.lock"


@dataclass(frozen=True)
class DomainMigration:
    """What happened to one domain."""

    domain: str
    versions: int
    outcome: Outcome
    reason: str = ""

    def __str__(self) -> str:
        what = f"{self.domain}: {self.outcome} ({self.versions} versions)"
        return f"{what}: {self.reason}" if self.reason else what


def migrate_folder_registry(
    source: FolderIndex,
    target: RegistryIndex,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> list[DomainMigration]:
    """Copy every domain of `source` into `target`; one result per domain, in name order.

    `dry_run`: check and say what would be copied, write nothing. A domain that cannot be
    read or copied is reported `refused`, the others go on.
    """
    progress = progress or NullProgress()
    results = []
    for domain in source.domains():
        try:
            results.append(_migrate_domain(source, target, domain, dry_run, progress))
        except LorastackError as error:
            results.append(DomainMigration(domain, 0, "refused", str(error)))
    return results


def adopt_folder_registry(source: FolderIndex, target: RegistryIndex) -> list[DomainMigration]:
    """Move the home's folder registry into `target`, once: the domains `source` holds, when
    it holds any and has not been moved already; then mark it moved (`MOVED_FILE`). What was
    copied is returned (nothing when there was nothing to do).

    Processes opening the same home at once move it once (a file lock; the loser finds it
    marked). A domain that cannot be moved stops the move before the mark, so nothing is
    left behind: it raises `RegistryError` with each domain's reason, and the next open
    tries again (what was copied already is left alone: the migration is idempotent).
    """
    marker = source.root / MOVED_FILE
    if marker.is_file() or not source.domains():
        return []
    with fsutil.file_lock(source.root / _MOVE_LOCK):
        if marker.is_file():
            return []
        results = migrate_folder_registry(source, target)
        refused = [str(result) for result in results if result.outcome == "refused"]
        if refused:
            raise RegistryError(
                f"the folder registry {source.root} could not be moved into "
                f"{target.description}: {'; '.join(refused)}. The folder was not changed: "
                "mend it and run `lorastack registry migrate`, or keep serving from it "
                "with LORASTACK_REGISTRY__INDEX=folder"
            )
        record = {
            "to": target.description,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "domains": [result.domain for result in results],
        }
        fsutil.write_json_atomic(marker, record)
    return [result for result in results if result.outcome == "copied"]


def _migrate_domain(
    source: FolderIndex, target: RegistryIndex, domain: str, dry_run: bool, progress: Progress
) -> DomainMigration:
    index = source.read(domain)
    manifests = _manifests(source, domain)
    progress.step(f"{domain}: {len(manifests)} versions", total=len(manifests))
    held = _manifests(target, domain)
    held_index = target.read(domain)
    if held == manifests and held_index == index:
        progress.advance(len(manifests))
        return DomainMigration(domain, len(manifests), "unchanged")
    if held or held_index != DomainIndex(domain=domain):
        return DomainMigration(
            domain,
            len(manifests),
            "refused",
            f"{target.description} holds it already, differently (changed there since it was "
            "migrated?); nothing was changed",
        )
    for manifest in manifests:
        _check_files(source, manifest)
    if dry_run:
        progress.advance(len(manifests))
        return DomainMigration(domain, len(manifests), "would copy")
    with ExitStack() as stack:
        staged = []
        for manifest in manifests:
            files = source.version_dir(domain, manifest.version)
            staging = stack.enter_context(target.stage(domain, files))
            if staging.adapter_sha256 != manifest.adapter_sha256:
                raise RegistryCorrupt(f"{manifest.ref}: its weights changed while being copied")
            staged.append(staging)
            progress.advance(1)
        with target.transaction(domain) as tx:
            if tx.version_numbers():
                raise RegistryError(f"{domain} was published to while being migrated: run again")
            for manifest, staging in zip(manifests, staged, strict=True):
                tx.add_version(manifest, staging)
            tx.index = index.model_copy(deep=True)
    _check_read_back(target, domain, index, manifests)
    return DomainMigration(domain, len(manifests), "copied")


def _check_files(source: FolderIndex, manifest: AdapterManifest) -> None:
    weights = source.version_dir(manifest.domain, manifest.version) / ADAPTER_WEIGHTS
    try:
        digest = fsutil.sha256_file(weights)
    except OSError as error:
        raise RegistryCorrupt(f"{manifest.ref}: cannot read {weights}: {error.strerror}") from None
    if digest != manifest.adapter_sha256:
        raise RegistryCorrupt(
            f"{manifest.ref}: {weights} does not match its manifest's sha256 (damaged or changed)"
        )


def _manifests(index: RegistryIndex, domain: str) -> list[AdapterManifest]:
    """The domain's manifests, oldest first."""
    return [index.manifest(domain, n) for n in index.version_numbers(domain)]


def _check_read_back(
    target: RegistryIndex, domain: str, index: DomainIndex, manifests: list[AdapterManifest]
) -> None:
    if _manifests(target, domain) != manifests or target.read(domain) != index:
        raise RegistryError(f"{domain}: what {target.description} reads back differs")
