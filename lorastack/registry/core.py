"""The adapter registry: published, versioned domain adapters and the rules they follow.

Every domain has numbered versions that never change once published, aliases (`prod`)
that point at one of them and remember where they pointed before (for `rollback`), an
optional canary beside `prod`, and a capture setting. Where all of that is kept is the
index's business (index.py): folders under `adapters/` (folder.py, the default) or the
database with the adapters' files in a blob store (database.py), which several gateways
on several machines can share.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from lorastack.errors import AdapterNotFound, RegistryCorrupt, RegistryError
from lorastack.manifest import (
    DEFAULT_ALIAS,
    AdapterManifest,
    BaseModelRef,
    Canary,
    CanaryEnd,
    CanaryGuard,
    CanaryOutcome,
    CaptureSetting,
    DomainIndex,
    SystemPromptMode,
    check_alias,
    check_name,
)
from lorastack.models import ModelStore
from lorastack.registry.folder import FolderIndex
from lorastack.registry.index import IndexTransaction, RegistryIndex
from lorastack.rules import BrandRule
from lorastack.validation import validate_adapter

logger = logging.getLogger(__name__)

DEFAULT_CANARY_GUARD = CanaryGuard()


@dataclass(frozen=True)
class AdapterRef:
    """A parsed `domain`, `domain@N` (or `@vN`) or `domain@alias` reference."""

    domain: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str) -> AdapterRef:
        domain, sep, selector = text.partition("@")
        check_name(domain)
        if not sep:
            return cls(domain)
        number = selector.removeprefix("v")
        if number.isdigit() and int(number) >= 1:
            return cls(domain, version=int(number))
        return cls(domain, alias=check_alias(selector))

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.domain}@v{self.version}"
        if self.alias is not None:
            return f"{self.domain}@{self.alias}"
        return self.domain


@dataclass(frozen=True)
class DomainSummary:
    """One domain as `adapters list` shows it."""

    index: DomainIndex
    versions: list[AdapterManifest]

    @property
    def latest(self) -> AdapterManifest:
        return self.versions[-1]


class AdapterRegistry:
    """Published domain adapters: the rules, over an index in folders or in a database.

    `AdapterRegistry(home / "adapters", models, max_rank)` keeps everything in that folder
    (folder.py); pass a `RegistryIndex` instead for another backend (`open_registry` builds
    the configured one: database.py).
    """

    def __init__(self, root: Path | RegistryIndex, models: ModelStore, max_rank: int) -> None:
        self.backend: RegistryIndex = FolderIndex(root) if isinstance(root, Path) else root
        self.models = models
        self.max_rank = max_rank

    @property
    def root(self) -> Path:
        """The `adapters/` folder of a folder index."""
        if isinstance(self.backend, FolderIndex):
            return self.backend.root
        raise RegistryError(f"the registry's index is in {self.backend.description}, no folder")

    @property
    def reads_files(self) -> bool:
        """Whether reading the registry costs local file reads only (the folder index): cheap
        enough for an event loop, unlike the database index's queries and downloads."""
        return isinstance(self.backend, FolderIndex)

    # -- reading -------------------------------------------------------------

    def version_dir(self, domain: str, version: int) -> Path:
        """A local folder holding the version's `adapter_config.json` and
        `adapter_model.safetensors` (with a database index, a verified cached copy)."""
        return self.backend.version_dir(domain, version)

    def index(self, domain: str) -> DomainIndex:
        return self.backend.read(check_name(domain))

    def manifest(self, domain: str, version: int) -> AdapterManifest:
        return self.backend.manifest(check_name(domain), version)

    def versions(self, domain: str) -> list[AdapterManifest]:
        numbers = self.backend.version_numbers(check_name(domain))
        return [self.manifest(domain, n) for n in numbers]

    def domains(self) -> list[str]:
        return self.backend.domains()

    def list(self) -> list[DomainSummary]:
        """Every readable domain; a corrupt one is logged and left out, not fatal to all."""
        summaries = []
        for domain in self.domains():
            try:
                summaries.append(DomainSummary(self.index(domain), self.versions(domain)))
            except RegistryCorrupt as error:
                logger.warning("skipping domain %s: %s", domain, error)
        return summaries

    def resolve(self, reference: str | AdapterRef) -> AdapterManifest:
        """The manifest a reference names; a bare domain means its `prod` alias, else latest.

        Gateways resolve on every request: a domain with `prod` costs two reads (its index,
        the manifest), which on the database index are two queries.
        """
        ref = AdapterRef.parse(reference) if isinstance(reference, str) else reference
        try:
            if ref.version is not None:
                return self.manifest(ref.domain, ref.version)
            aliases = self.index(ref.domain).aliases
            alias = ref.alias or DEFAULT_ALIAS
            if alias in aliases:
                return self.manifest(ref.domain, aliases[alias])
        except AdapterNotFound:
            self._latest_version(ref.domain)  # the domain itself may be unknown
            raise
        latest = self._latest_version(ref.domain)
        if ref.alias is not None:
            raise AdapterNotFound(f"domain {ref.domain!r} has no alias {ref.alias!r}")
        return self.manifest(ref.domain, latest)

    def _latest_version(self, domain: str) -> int:
        numbers = self.backend.version_numbers(domain)
        if not numbers:
            raise AdapterNotFound(f"no adapter is published for domain {domain!r}")
        return numbers[-1]

    # -- writing -------------------------------------------------------------

    def publish(
        self,
        source: Path,
        domain: str,
        *,
        display_name: str | None = None,
        description: str = "",
        system_prompt: str = "",
        system_prompt_mode: SystemPromptMode = "prepend",
        base_model: str | None = None,
        dataset_sha256: str | None = None,
        metrics: dict[str, Any] | None = None,
        training: dict[str, Any] | None = None,
        rules: Sequence[BrandRule] = (),
        vocabulary: Sequence[str] = (),
        forced: str | None = None,
        started_from: str | None = None,
        promote: str | None = None,
        capture: bool | None = None,
        retention_days: int | None = None,
    ) -> AdapterManifest:
        """Validate the adapter in `source` and add it as the domain's next version.

        `promote` names an alias to point at the new version in the same step; `capture`
        and `retention_days` change the domain's capture setting in it too (None: as is).
        """
        check_name(domain)
        if promote is not None:
            check_alias(promote)
        _changed_capture(None, capture, retention_days)  # refused before anything is copied
        adapter = validate_adapter(source, self.models, self.max_rank, base_model)
        with self.backend.stage(domain, source) as staged, self._writing(domain) as tx:
            index = tx.index
            version = index.last_version + 1
            manifest = AdapterManifest(
                domain=domain,
                version=version,
                display_name=display_name or domain,
                description=description,
                system_prompt=system_prompt,
                system_prompt_mode=system_prompt_mode,
                base_model=BaseModelRef(
                    name=adapter.base_model.name,
                    checkpoint_sha256=adapter.base_model.checkpoint_sha256,
                ),
                lora=adapter.lora,
                adapter_sha256=staged.adapter_sha256,
                dataset_sha256=dataset_sha256,
                metrics=metrics or {},
                training=training or {},
                rules=list(rules),
                vocabulary=list(vocabulary),
                forced=forced,
                started_from=started_from,
            )
            tx.add_version(manifest, staged)
            index.last_version = version
            if promote is not None:
                _point_alias(index, promote, version)
            if capture is not None or retention_days is not None:
                index.capture = _changed_capture(index.capture, capture, retention_days)
        return manifest

    def _writing(self, domain: str) -> AbstractContextManager[IndexTransaction]:
        return self.backend.transaction(check_name(domain))

    def promote(self, domain: str, version: int, alias: str = DEFAULT_ALIAS) -> DomainIndex:
        """Point `alias` at `version` (an atomic switch); the old target is remembered."""
        check_alias(alias)
        with self._writing(domain) as tx:
            _require_version(tx, domain, version)
            index = tx.index
            _point_alias(index, alias, version)
            if alias == DEFAULT_ALIAS and index.canary is not None:
                if index.canary.version == version:
                    _end_canary(index, "promoted", f"v{version} promoted to {alias}")
                else:  # prod moved elsewhere: the canary's comparison no longer holds
                    _end_canary(index, "stopped", f"{alias} moved to v{version}")
        return index

    def rollback(self, domain: str, alias: str = DEFAULT_ALIAS) -> DomainIndex:
        """Point `alias` back at the version it pointed to before the last promote.

        While a canary runs, rolling back `prod` ends the canary instead: prod stays.
        """
        check_alias(alias)
        with self._writing(domain) as tx:
            index = tx.index
            if alias == DEFAULT_ALIAS and index.canary is not None:
                _end_canary(index, "rolled back", "rolled back: prod keeps all traffic")
                return index
            if alias not in index.aliases:
                raise RegistryError(f"domain {domain!r} has no alias {alias!r} to roll back")
            history = index.alias_history.get(alias, [])
            existing = set(tx.version_numbers())
            while history and history[-1] not in existing:
                history.pop()
            if not history:
                raise RegistryError(
                    f"{domain}@{alias} has no earlier version to roll back to "
                    f"(it points to v{index.aliases[alias]})"
                )
            index.aliases[alias] = history.pop()
        return index

    def remove(self, domain: str, version: int) -> None:
        """Delete one version; refused while an alias points to it."""
        with self._writing(domain) as tx:
            _require_version(tx, domain, version)
            index = tx.index
            pointing = sorted(a for a, v in index.aliases.items() if v == version)
            if index.canary is not None and index.canary.version == version:
                pointing.append("canary")
            if pointing:
                raise RegistryError(
                    f"{domain}@v{version} is in use by alias {', '.join(pointing)}; "
                    "promote another version first"
                )
            tx.remove_version(version)
            for history in index.alias_history.values():
                history[:] = [v for v in history if v != version]

    def start_canary(
        self,
        domain: str,
        version: int,
        weight: float,
        guard: CanaryGuard | None = DEFAULT_CANARY_GUARD,
    ) -> DomainIndex:
        """Send `weight` percent of the domain's conversations to `version`, the rest to
        `prod`; a running canary is replaced (a new weight, or another version).

        `guard` says when the gateway stops it by itself; None: never."""
        if not 0 < weight <= 100:
            raise RegistryError(f"a canary's weight is a percentage above 0, up to 100: {weight}")
        self.manifest(domain, version)  # before the lock, which would create the domain's folder
        with self._writing(domain) as tx:
            _require_version(tx, domain, version)
            index = tx.index
            prod = index.aliases.get(DEFAULT_ALIAS)
            if prod is None:
                raise RegistryError(
                    f"domain {domain!r} has no {DEFAULT_ALIAS!r} version for a canary to share "
                    "traffic with; promote one first"
                )
            if prod == version:
                raise RegistryError(f"{domain}@v{version} is already {DEFAULT_ALIAS}")
            if index.canary is not None and index.canary.version != version:
                _end_canary(index, "stopped", f"replaced by a canary of v{version}")
            index.canary = Canary(version=version, weight=weight, guard=guard)
        return index

    def end_canary(
        self,
        domain: str,
        reason: str = "stopped",
        *,
        automatic: bool = False,
        version: int | None = None,
    ) -> DomainIndex:
        """Stop the domain's canary: `prod` gets all traffic again.

        `version`: stop it only if the canary is still that version (a gateway that decided
        to stop one must not stop the canary an operator started since).
        """
        self._require_domain(domain)
        with self._writing(domain) as tx:
            index = tx.index
            if index.canary is None:
                raise RegistryError(f"domain {domain!r} has no canary running")
            if version is not None and index.canary.version != version:
                raise RegistryError(
                    f"the canary of {domain!r} is now v{index.canary.version}, not v{version}"
                )
            _end_canary(index, "auto-stopped" if automatic else "stopped", reason)
        return index

    def set_capture(
        self, domain: str, enabled: bool | None = None, retention_days: int | None = None
    ) -> DomainIndex:
        """Turn capture of the domain's served answers on or off, or change how long they are
        kept (None: as it is). Gateways read it with every request: it applies to the next."""
        _changed_capture(None, enabled, retention_days)  # a bad value: refused before the lock
        self._require_domain(domain)
        with self._writing(domain) as tx:
            index = tx.index
            index.capture = _changed_capture(index.capture, enabled, retention_days)
        return index

    def _require_domain(self, domain: str) -> None:
        # Before the lock, which would create the domain's folder.
        if not self.backend.version_numbers(check_name(domain)):
            raise AdapterNotFound(f"no adapter is published for domain {domain!r}")


def _require_version(tx: IndexTransaction, domain: str, version: int) -> None:
    if version not in tx.version_numbers():
        raise AdapterNotFound(f"{domain}@v{version} does not exist")


def _changed_capture(
    current: CaptureSetting | None, enabled: bool | None, retention_days: int | None
) -> CaptureSetting:
    """`current` (default: off, 30 days) with the values given; a bad value is refused."""
    changes = {"enabled": enabled, "retention_days": retention_days}
    values = {
        **(current or CaptureSetting()).model_dump(),
        **{name: value for name, value in changes.items() if value is not None},
    }
    try:
        return CaptureSetting.model_validate(values)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise RegistryError(f"capture {where}: {problem['msg']}") from None


def _end_canary(index: DomainIndex, outcome: CanaryOutcome, reason: str) -> None:
    assert index.canary is not None
    index.last_canary = CanaryEnd(version=index.canary.version, outcome=outcome, reason=reason)
    index.canary = None


def _point_alias(index: DomainIndex, alias: str, version: int) -> None:
    previous = index.aliases.get(alias)
    if previous == version:
        return
    if previous is not None:
        index.alias_history.setdefault(alias, []).append(previous)
    index.aliases[alias] = version
