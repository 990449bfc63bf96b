"""Client API keys, each allowed some domains, and the admin key.

Keys come from three places: `LORASTACK_GATEWAY__API_KEYS`, the keys file, and the
database, where `lorastack keys create` (or `POST /admin/keys`) puts them with their limits
(`lorastack.keys`). Keys are kept as sha256 digests. Those of the settings and the file are
compared in constant time against every one; the database's are looked up by digest in a
copy reread every `keys_refresh_s`, which reveals nothing either (a digest's prefix tells
nothing about a key). The keys file is YAML::

    keys:
      - name: support-widget
        key: sk-...              # or `sha256: <hex digest>` to keep the key itself out
        domains: [coffee-shop]   # or ["*"] for every domain and the base model
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lorastack.errors import LorastackError, SettingsError
from lorastack.keys import ALL_DOMAINS, KeyLimits, ManagedKey, Period
from lorastack.serve.errors import KeysUnavailable, Unauthorized

logger = logging.getLogger(__name__)

Authorization = str | Sequence[str] | None
"""A request's Authorization header, or all of them."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True)
class ClientKey:
    name: str
    digest: bytes
    domains: frozenset[str]
    limits: KeyLimits = field(default_factory=KeyLimits)
    expires_at: datetime | None = None
    managed: bool = False
    """Made by `lorastack keys` (kept in the database), not by the settings or the file."""

    def allows(self, domain: str) -> bool:
        return ALL_DOMAINS in self.domains or domain in self.domains

    @property
    def sha256(self) -> str:
        """The key's sha256, hex: what stored exchanges and ratings keep of it
        (`lorastack.feedback.key_hash` of the key itself)."""
        return self.digest.hex()


class _KeyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    key: str | None = Field(default=None, min_length=16)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    domains: list[str] = Field(default_factory=lambda: [ALL_DOMAINS])
    # The limits `lorastack keys create` sets, for a key kept in the file: counted under
    # the key's name, like a database key's.
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    budget_tokens: int | None = Field(default=None, ge=1)
    budget_period: Period | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> _KeyEntry:
        if (self.key is None) == (self.sha256 is None):
            raise ValueError("give exactly one of key or sha256")
        if (self.budget_tokens is None) != (self.budget_period is None):
            raise ValueError("a budget needs both budget_tokens and budget_period")
        return self

    def to_key(self) -> ClientKey:
        digest = bytes.fromhex(self.sha256) if self.sha256 else _digest(self.key or "")
        limits = KeyLimits(self.rpm, self.tpm, self.budget_tokens, self.budget_period)
        return ClientKey(self.name, digest, frozenset(self.domains), limits)


class ManagedKeySource(Protocol):
    """The database's keys (`lorastack.db.key_store.SqlKeyStore`); blocking calls."""

    def list(self, *, include_revoked: bool = False) -> list[ManagedKey]: ...

    def touch(self, last_used: dict[str, datetime]) -> None: ...

    def create(
        self,
        name: str,
        *,
        domains: tuple[str, ...] = ...,
        limits: KeyLimits | None = None,
        expires_at: datetime | None = None,
        now: datetime | None = None,
    ) -> tuple[ManagedKey, str]: ...

    def revoke(self, name: str, *, now: datetime | None = None) -> ManagedKey: ...

    def rotate(self, name: str, *, now: datetime | None = None) -> tuple[ManagedKey, str]: ...


class KeyStore:
    """The client keys a gateway accepts. With none at all, a loopback gateway is open;
    one bound beyond loopback refuses every request (fail closed)."""

    def __init__(
        self,
        keys: list[ClientKey],
        admin_key: str | None = None,
        *,
        managed: ManagedKeySource | None = None,
        allow_open: bool = True,
    ) -> None:
        self._keys = keys
        self._settings_by_name = {key.name: key for key in keys}
        self._admin = _digest(admin_key) if admin_key else None
        self._source = managed
        self._allow_open = allow_open
        self._managed: dict[bytes, ClientKey] = {}
        self._managed_by_name: dict[str, ClientKey] = {}
        self._loaded = managed is None
        """Whether the database's keys were read at least once (until then: fail closed)."""
        self._last_used: dict[str, datetime] = {}
        self._refreshing = threading.Lock()
        self._managed_ever = False

    @classmethod
    def from_settings(
        cls,
        api_keys: list[str],
        keys_file: Path | None,
        admin_key: str | None,
        *,
        managed: ManagedKeySource | None = None,
        allow_open: bool = True,
    ) -> KeyStore:
        keys = [
            ClientKey(f"key-{i + 1}", _digest(k), frozenset({ALL_DOMAINS}))
            for i, k in enumerate(api_keys)
        ]
        if keys_file is not None:
            keys += _read_keys_file(keys_file)
        if admin_key is not None and any(
            hmac.compare_digest(k.digest, _digest(admin_key)) for k in keys
        ):
            raise SettingsError("the admin key must differ from every client key")
        return cls(keys, admin_key, managed=managed, allow_open=allow_open)

    @property
    def open(self) -> bool:
        """No key is needed: a loopback gateway that knows no key at all."""
        return self._allow_open and self._loaded and not self._keys and not self._managed_ever

    @property
    def managed(self) -> ManagedKeySource | None:
        """The database's keys, to create and change them; None without a database."""
        return self._source

    @property
    def has_keys(self) -> bool:
        return bool(self._keys or self._managed)

    @property
    def admin_sha256(self) -> str | None:
        """The admin key's sha256 (hex), what the audit trail names it by."""
        return self._admin.hex() if self._admin is not None else None

    def refresh(self) -> None:
        """Reread the database's keys, and record when keys were last used. Blocking.

        A failed read keeps the keys read before (and, before any read, accepts none of
        them): a database that is down for a moment does not lock every client out."""
        if self._source is None:
            return
        # One at a time: a reread that began before a change must not land after one
        # that began after it (the change would be undone until the next reread).
        with self._refreshing:
            self._refresh(self._source)

    def _refresh(self, source: ManagedKeySource) -> None:
        used, self._last_used = self._last_used, {}
        try:
            if used:
                source.touch(used)
            managed = source.list(include_revoked=True)
        except LorastackError as error:
            logger.warning("the database's API keys were not reread: %s", error)
            for name, at in used.items():
                self._last_used.setdefault(name, at)
            return
        live = [key for key in managed if key.revoked_at is None]
        # Each dict is replaced whole: readers on other threads see the old or the new one.
        self._managed = {bytes.fromhex(key.key_sha256): _client_key(key) for key in live}
        self._managed_by_name = {key.name: key for key in self._managed.values()}
        # Once the database has had a key, the gateway never falls back to open, even
        # with every key revoked.
        self._managed_ever = bool(managed)
        self._loaded = True

    async def keep_fresh(self, interval_s: float) -> None:
        """Reread the database's keys every `interval_s` until cancelled."""
        while True:
            await asyncio.to_thread(self.refresh)
            await asyncio.sleep(interval_s)

    def by_name(self, name: str) -> ClientKey | None:
        """A key by name (for counting its tokens); a database key wins a shared name."""
        return self._managed_by_name.get(name) or self._settings_by_name.get(name)

    @property
    def admin_enabled(self) -> bool:
        return self._admin is not None

    def client(self, authorization: Authorization) -> ClientKey | None:
        """The key a request presents (its Authorization headers); None when the gateway
        has no keys. 401 otherwise."""
        if self.open:
            return None
        digest = _digest(_bearer(authorization))
        found = None
        for key in self._keys:  # no early exit: every check takes the same time
            if hmac.compare_digest(key.digest, digest):
                found = key
        if found is None:
            found = self._managed.get(digest)
        if found is None:
            if not self._loaded:
                raise KeysUnavailable("the gateway cannot read its API keys yet; try again")
            if not self.has_keys and not self._allow_open:
                raise Unauthorized(
                    "this gateway has no API keys yet: create one with `lorastack keys create`"
                )
            raise Unauthorized("missing or invalid API key")
        if found.expires_at is not None and datetime.now(UTC) >= found.expires_at:
            raise Unauthorized("this API key has expired", code="expired_api_key")
        if found.managed:
            self._last_used[found.name] = datetime.now(UTC)
        return found

    def check_admin(self, authorization: Authorization) -> None:
        if self._admin is None or not hmac.compare_digest(
            self._admin, _digest(_bearer(authorization))
        ):
            raise Unauthorized("the admin API needs the admin key", code="invalid_admin_key")


def _client_key(key: ManagedKey) -> ClientKey:
    return ClientKey(
        key.name,
        bytes.fromhex(key.key_sha256),
        frozenset(key.domains),
        key.limits,
        key.expires_at,
        managed=True,
    )


# RFC 7235: the scheme is case-insensitive; one space, then a token68 credential.
_BEARER = re.compile(r"bearer ([A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)


def _bearer(authorization: Authorization) -> str:
    """The key of exactly one well-formed `Bearer KEY` header, else "" (no key)."""
    headers = [authorization] if isinstance(authorization, str) else list(authorization or ())
    if len(headers) != 1:
        return ""  # none, or two that could each be read as the key
    match = _BEARER.fullmatch(headers[0])
    return match.group(1) if match else ""


def _read_keys_file(path: Path) -> list[ClientKey]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise SettingsError(f"cannot read keys file {path}: {error}") from None
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise SettingsError(f"{path}: expected a `keys:` list")
    keys = []
    for number, entry in enumerate(entries, start=1):
        try:
            keys.append(_KeyEntry.model_validate(entry).to_key())
        except ValidationError as error:
            problem = error.errors()[0]
            where = ".".join(str(p) for p in problem["loc"]) or "entry"
            raise SettingsError(f"{path}: key {number}: {where}: {problem['msg']}") from None
    return keys
