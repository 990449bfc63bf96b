"""Managed client keys in the lorastack database (`lorastack.keys`): hashes only."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lorastack.db.migrate import upgrade
from lorastack.db.schema import ApiKeyRow
from lorastack.db.sessions import Sessions
from lorastack.errors import KeyNameTaken, KeyNotFound
from lorastack.keys import (
    ALL_DOMAINS,
    KeyLimits,
    ManagedKey,
    check_key_name,
    key_sha256,
    new_secret,
)


class SqlKeyStore:
    """Create, list, revoke and rotate keys; every method blocks (call it off the event loop).

    `create` and `rotate` return the new key itself: the only time it exists outside the
    caller's hands. Failures of the database raise `DatabaseError`.
    """

    def __init__(self, engine: Engine) -> None:
        self._sessions = Sessions(engine)
        upgrade(engine)

    def create(
        self,
        name: str,
        *,
        domains: tuple[str, ...] = (ALL_DOMAINS,),
        limits: KeyLimits | None = None,
        expires_at: datetime | None = None,
        now: datetime | None = None,
    ) -> tuple[ManagedKey, str]:
        check_key_name(name)
        limits = limits or KeyLimits()
        secret = new_secret()
        row = ApiKeyRow(
            name=name,
            key_hash=key_sha256(secret),
            hint=secret[-4:],
            domains=list(domains) or [ALL_DOMAINS],
            rpm=limits.rpm,
            tpm=limits.tpm,
            budget_tokens=limits.budget_tokens,
            budget_period=limits.budget_period,
            expires_at=expires_at,
            created_at=now or datetime.now(UTC),
        )
        try:
            with self._sessions.writing() as session:
                session.add(row)
                session.flush()
                created = _managed(row)
        except Exception as error:
            if isinstance(error.__cause__, IntegrityError) or isinstance(error, IntegrityError):
                raise KeyNameTaken(f"a key named {name!r} exists already") from None
            raise
        return created, secret

    def list(self, *, include_revoked: bool = False) -> list[ManagedKey]:
        query = select(ApiKeyRow).order_by(ApiKeyRow.name)
        if not include_revoked:
            query = query.where(ApiKeyRow.revoked_at.is_(None))
        with self._sessions.reading() as session:
            return [_managed(row) for row in session.scalars(query)]

    def get(self, name: str) -> ManagedKey:
        with self._sessions.reading() as session:
            row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.name == name))
            if row is None:
                raise KeyNotFound(f"no key named {name!r}")
            return _managed(row)

    def revoke(self, name: str, *, now: datetime | None = None) -> ManagedKey:
        """The key stops working (within `keys_refresh_s` on other gateways); its usage stays."""
        with self._sessions.writing() as session:
            row = self._live(session, name)
            row.revoked_at = now or datetime.now(UTC)
            session.flush()
            return _managed(row)

    def rotate(self, name: str, *, now: datetime | None = None) -> tuple[ManagedKey, str]:
        """A new secret for the same name, domains and limits; the old one stops working."""
        secret = new_secret()
        with self._sessions.writing() as session:
            row = self._live(session, name)
            row.key_hash = key_sha256(secret)
            row.hint = secret[-4:]
            row.rotated_at = now or datetime.now(UTC)
            session.flush()
            return _managed(row), secret

    def touch(self, last_used: Mapping[str, datetime]) -> None:
        """Record when keys were last used (name -> time), in one transaction."""
        if not last_used:
            return
        with self._sessions.writing() as session:
            for name, at in last_used.items():
                session.execute(
                    update(ApiKeyRow).where(ApiKeyRow.name == name).values(last_used_at=at)
                )

    @staticmethod
    def _live(session: Session, name: str) -> ApiKeyRow:
        row = session.scalar(
            select(ApiKeyRow).where(ApiKeyRow.name == name, ApiKeyRow.revoked_at.is_(None))
        )
        if row is None:
            raise KeyNotFound(f"no live key named {name!r}")
        return row


def _managed(row: ApiKeyRow) -> ManagedKey:
    period: Any = row.budget_period
    return ManagedKey(
        name=row.name,
        key_sha256=row.key_hash,
        hint=row.hint,
        domains=tuple(row.domains),
        limits=KeyLimits(row.rpm, row.tpm, row.budget_tokens, period),
        expires_at=row.expires_at,
        created_at=row.created_at,
        rotated_at=row.rotated_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )
