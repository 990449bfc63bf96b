"""Client API keys, each allowed some domains, and the admin key.

Keys are kept as sha256 digests and compared in constant time against every
known key, so neither the memory nor the timing of a check reveals them. The
keys file is YAML::

    keys:
      - name: support-widget
        key: sk-...              # or `sha256: <hex digest>` to keep the key itself out
        domains: [coffee-shop]   # or ["*"] for every domain and the base model
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lorastack.errors import SettingsError
from lorastack.serve.errors import Unauthorized

ALL_DOMAINS = "*"

Authorization = str | Sequence[str] | None
"""A request's Authorization header, or all of them."""


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


@dataclass(frozen=True)
class ClientKey:
    name: str
    digest: bytes
    domains: frozenset[str]

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

    @model_validator(mode="after")
    def _one_secret(self) -> _KeyEntry:
        if (self.key is None) == (self.sha256 is None):
            raise ValueError("give exactly one of key or sha256")
        return self

    def to_key(self) -> ClientKey:
        digest = bytes.fromhex(self.sha256) if self.sha256 else _digest(self.key or "")
        return ClientKey(self.name, digest, frozenset(self.domains))


class KeyStore:
    """The client keys a gateway accepts; with none, the gateway is open (loopback only)."""

    def __init__(self, keys: list[ClientKey], admin_key: str | None = None) -> None:
        self._keys = keys
        self._admin = _digest(admin_key) if admin_key else None

    @classmethod
    def from_settings(
        cls, api_keys: list[str], keys_file: Path | None, admin_key: str | None
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
        return cls(keys, admin_key)

    @property
    def open(self) -> bool:
        return not self._keys

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
            raise Unauthorized("missing or invalid API key")
        return found

    def check_admin(self, authorization: Authorization) -> None:
        if self._admin is None or not hmac.compare_digest(
            self._admin, _digest(_bearer(authorization))
        ):
            raise Unauthorized("the admin API needs the admin key", code="invalid_admin_key")


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
