"""The adapter registry: published, versioned domain adapters on a filesystem.

Layout, one folder per business domain::

    adapters/<domain>/domain.json        aliases, canary, capture, the last version assigned
    adapters/<domain>/v<N>/manifest.json
    adapters/<domain>/v<N>/adapter_config.json
    adapters/<domain>/v<N>/adapter_model.safetensors

A version folder appears by one rename once complete, and is never changed
afterwards; aliases switch by an atomic replace of `domain.json`. Writers of a
domain take its lock, so concurrent publishes get distinct versions. Readers
take no lock. The registry can live on shared storage for several gateways.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from lorastack import fsutil
from lorastack.errors import AdapterNotFound, RegistryCorrupt, RegistryError
from lorastack.manifest import (
    DEFAULT_ALIAS,
    DOMAIN_INDEX_FILE,
    MANIFEST_FILE,
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
from lorastack.rules import BrandRule
from lorastack.validation import ADAPTER_CONFIG, ADAPTER_WEIGHTS, validate_adapter

logger = logging.getLogger(__name__)

DEFAULT_CANARY_GUARD = CanaryGuard()
_VERSION_DIR = re.compile(r"^v([1-9][0-9]*)$")
_LOCK_FILE = ".lock"


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
    """Domain adapters under one `adapters/` folder."""

    def __init__(self, root: Path, models: ModelStore, max_rank: int) -> None:
        self.root = root
        self.models = models
        self.max_rank = max_rank

    # -- reading -------------------------------------------------------------

    def _domain_dir(self, domain: str) -> Path:
        return self.root / check_name(domain)

    def version_dir(self, domain: str, version: int) -> Path:
        return self._domain_dir(domain) / f"v{version}"

    def index(self, domain: str) -> DomainIndex:
        path = self._domain_dir(domain) / DOMAIN_INDEX_FILE
        if not path.is_file():
            return DomainIndex(domain=domain)
        try:
            return DomainIndex.model_validate(fsutil.read_json(path))
        except (ValueError, ValidationError) as error:
            raise RegistryCorrupt(f"{path} is corrupt: {error}") from None

    def _version_numbers(self, domain: str) -> list[int]:
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

    def versions(self, domain: str) -> list[AdapterManifest]:
        return [self.manifest(domain, n) for n in self._version_numbers(domain)]

    def domains(self) -> list[str]:
        if not self.root.is_dir():
            return []
        names = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        return [name for name in names if not name.startswith(".") and self._version_numbers(name)]

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
        """The manifest a reference names; a bare domain means its `prod` alias, else latest."""
        ref = AdapterRef.parse(reference) if isinstance(reference, str) else reference
        numbers = self._version_numbers(ref.domain)
        if not numbers:
            raise AdapterNotFound(f"no adapter is published for domain {ref.domain!r}")
        if ref.version is not None:
            return self.manifest(ref.domain, ref.version)
        aliases = self.index(ref.domain).aliases
        if ref.alias is not None:
            if ref.alias not in aliases:
                raise AdapterNotFound(f"domain {ref.domain!r} has no alias {ref.alias!r}")
            return self.manifest(ref.domain, aliases[ref.alias])
        if DEFAULT_ALIAS in aliases:
            return self.manifest(ref.domain, aliases[DEFAULT_ALIAS])
        return self.manifest(ref.domain, numbers[-1])

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
        folder = self._domain_dir(domain)
        if promote is not None:
            check_alias(promote)
        _changed_capture(None, capture, retention_days)  # refused before anything is copied
        adapter = validate_adapter(source, self.models, self.max_rank, base_model)
        folder.mkdir(parents=True, exist_ok=True)
        fsutil.remove_stale_staging(folder)
        with fsutil.staging_dir(folder) as staging:
            # Only what vLLM loads is copied: never optimizer states or stray files.
            for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
                shutil.copyfile(source / name, staging / name)
            adapter_sha256 = fsutil.sha256_file(staging / ADAPTER_WEIGHTS)
            with fsutil.file_lock(folder / _LOCK_FILE):
                index = self.index(domain)
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
                    adapter_sha256=adapter_sha256,
                    dataset_sha256=dataset_sha256,
                    metrics=metrics or {},
                    training=training or {},
                    rules=list(rules),
                    forced=forced,
                    started_from=started_from,
                )
                fsutil.write_json_atomic(staging / MANIFEST_FILE, manifest.model_dump(mode="json"))
                fsutil.fsync_tree(staging)
                staging.rename(self.version_dir(domain, version))
                fsutil.fsync_dir(folder)
                index.last_version = version
                if promote is not None:
                    _point_alias(index, promote, version)
                if capture is not None or retention_days is not None:
                    index.capture = _changed_capture(index.capture, capture, retention_days)
                self._write_index(index)
        return manifest

    def _write_index(self, index: DomainIndex) -> None:
        path = self._domain_dir(index.domain) / DOMAIN_INDEX_FILE
        fsutil.write_json_atomic(path, index.model_dump(mode="json"))

    def promote(self, domain: str, version: int, alias: str = DEFAULT_ALIAS) -> DomainIndex:
        """Point `alias` at `version` (an atomic switch); the old target is remembered."""
        check_alias(alias)
        with fsutil.file_lock(self._domain_dir(domain) / _LOCK_FILE):
            self.manifest(domain, version)  # it must exist
            index = self.index(domain)
            _point_alias(index, alias, version)
            if alias == DEFAULT_ALIAS and index.canary is not None:
                if index.canary.version == version:
                    _end_canary(index, "promoted", f"v{version} promoted to {alias}")
                else:  # prod moved elsewhere: the canary's comparison no longer holds
                    _end_canary(index, "stopped", f"{alias} moved to v{version}")
            self._write_index(index)
            return index

    def rollback(self, domain: str, alias: str = DEFAULT_ALIAS) -> DomainIndex:
        """Point `alias` back at the version it pointed to before the last promote.

        While a canary runs, rolling back `prod` ends the canary instead: prod stays.
        """
        check_alias(alias)
        with fsutil.file_lock(self._domain_dir(domain) / _LOCK_FILE):
            index = self.index(domain)
            if alias == DEFAULT_ALIAS and index.canary is not None:
                _end_canary(index, "rolled back", "rolled back: prod keeps all traffic")
                self._write_index(index)
                return index
            if alias not in index.aliases:
                raise RegistryError(f"domain {domain!r} has no alias {alias!r} to roll back")
            history = index.alias_history.get(alias, [])
            existing = set(self._version_numbers(domain))
            while history and history[-1] not in existing:
                history.pop()
            if not history:
                raise RegistryError(
                    f"{domain}@{alias} has no earlier version to roll back to "
                    f"(it points to v{index.aliases[alias]})"
                )
            index.aliases[alias] = history.pop()
            self._write_index(index)
            return index

    def remove(self, domain: str, version: int) -> None:
        """Delete one version; refused while an alias points to it."""
        with fsutil.file_lock(self._domain_dir(domain) / _LOCK_FILE):
            self.manifest(domain, version)
            index = self.index(domain)
            pointing = sorted(a for a, v in index.aliases.items() if v == version)
            if index.canary is not None and index.canary.version == version:
                pointing.append("canary")
            if pointing:
                raise RegistryError(
                    f"{domain}@v{version} is in use by alias {', '.join(pointing)}; "
                    "promote another version first"
                )
            fsutil.remove_tree_atomic(self.version_dir(domain, version))
            for history in index.alias_history.values():
                history[:] = [v for v in history if v != version]
            self._write_index(index)

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
        with fsutil.file_lock(self._domain_dir(domain) / _LOCK_FILE):
            self.manifest(domain, version)  # it must exist
            index = self.index(domain)
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
            self._write_index(index)
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
        if not self._version_numbers(domain):
            raise AdapterNotFound(f"no adapter is published for domain {domain!r}")
        with fsutil.file_lock(self._domain_dir(domain) / _LOCK_FILE):
            index = self.index(domain)
            if index.canary is None:
                raise RegistryError(f"domain {domain!r} has no canary running")
            if version is not None and index.canary.version != version:
                raise RegistryError(
                    f"the canary of {domain!r} is now v{index.canary.version}, not v{version}"
                )
            _end_canary(index, "auto-stopped" if automatic else "stopped", reason)
            self._write_index(index)
            return index

    def set_capture(
        self, domain: str, enabled: bool | None = None, retention_days: int | None = None
    ) -> DomainIndex:
        """Turn capture of the domain's served answers on or off, or change how long they are
        kept (None: as it is). Gateways read it with every request: it applies to the next."""
        _changed_capture(None, enabled, retention_days)  # a bad value: refused before the lock
        if not self._version_numbers(domain):  # before the lock, which would create the folder
            raise AdapterNotFound(f"no adapter is published for domain {domain!r}")
        with fsutil.file_lock(self._domain_dir(domain) / _LOCK_FILE):
            index = self.index(domain)
            index.capture = _changed_capture(index.capture, enabled, retention_days)
            self._write_index(index)
            return index


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
