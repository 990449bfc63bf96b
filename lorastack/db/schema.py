"""The tables, as the code sees them at the newest migration.

The migrations in `migrations/versions/` create and change the real tables; they never
import this module, so an old migration keeps meaning what it meant when it was written.
A test compares this metadata with a database migrated to head.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Named constraints, so that a later migration can drop or alter one by name on every
# backend (SQLite and PostgreSQL would otherwise each invent their own).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL keeps the zone (`timestamptz`); SQLite stores text without one and hands back
    naive values. Everything is stored as UTC and comes back aware, in UTC. A naive value is
    refused: its zone is a guess, and a wrong guess shifts what `purge` removes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: give a timezone-aware one")
        value = value.astimezone(UTC)
        # SQLite's text form compares in order only when every value has the same zone.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# SQLite auto-increments only an INTEGER primary key; elsewhere ids get 64 bits.
_RatingId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ExchangeRow(Base):
    """One served answer (`lorastack.feedback.Exchange`)."""

    __tablename__ = "exchanges"

    response_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    domain: Mapped[str] = mapped_column(String(255))
    version: Mapped[int] = mapped_column(Integer)
    key_hash: Mapped[str | None] = mapped_column(String(64))
    # Indexed: the retries of one conversation share it.
    prompt_hash: Mapped[str] = mapped_column(String(64), index=True)
    messages: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    answer: Mapped[str] = mapped_column(Text)
    latency_s: Mapped[float] = mapped_column(Float)
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (
        # Every read is one domain's exchanges over a time window, and purge is by age.
        Index("ix_exchanges_domain_created_at", "domain", "created_at"),
    )


class RatingRow(Base):
    """A client's verdict on one exchange (`lorastack.feedback.Rating`)."""

    __tablename__ = "ratings"

    id: Mapped[int] = mapped_column(_RatingId, primary_key=True, autoincrement=True)
    response_id: Mapped[str] = mapped_column(
        String(255), ForeignKey("exchanges.response_id", ondelete="CASCADE"), index=True
    )
    rating: Mapped[int] = mapped_column(SmallInteger)
    key_hash: Mapped[str | None] = mapped_column(String(64))
    correction: Mapped[str | None] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (CheckConstraint("rating IN (1, -1)", name="vote"),)


class ApiKeyRow(Base):
    """A client key made by `lorastack keys create` or the admin API; only its hash is kept."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(_RatingId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    """sha256 of the key, hex: what a request's key is looked up by."""
    hint: Mapped[str] = mapped_column(String(16))
    """The key's last four characters, to tell keys apart in a listing (`...wxyz`)."""
    domains: Mapped[list[str]] = mapped_column(JSON)
    rpm: Mapped[int | None] = mapped_column(Integer)
    tpm: Mapped[int | None] = mapped_column(Integer)
    budget_tokens: Mapped[int | None] = mapped_column(BigInteger)
    budget_period: Mapped[str | None] = mapped_column(String(16))
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    rotated_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class UsageRow(Base):
    """One answer's tokens and latency, by key, domain and version."""

    __tablename__ = "usage"

    id: Mapped[int] = mapped_column(_RatingId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    key_name: Mapped[str | None] = mapped_column(String(255))
    key_hash: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(255))
    """The domain, or the base model's name."""
    version: Mapped[int | None] = mapped_column(Integer)
    """The adapter version that answered; None for the base model."""
    endpoint: Mapped[str] = mapped_column(String(64))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    latency_s: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        Index("ix_usage_created_at", "created_at"),
        Index("ix_usage_key_name_created_at", "key_name", "created_at"),
    )


class AuditRow(Base):
    """One admin action: who (which admin credential), what, on what, when."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(_RatingId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(255))
    """`admin-key:<first 12 hex of its sha256>` through the API, `cli:<user>` from the CLI."""
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)


class RateWindowRow(Base):
    """A rate-limit counter shared by gateways (`lorastack.db.rate_storage`)."""

    __tablename__ = "rate_windows"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[float] = mapped_column(Float)
    """Unix time at which the window ends and the count starts again from zero."""


class RegistryDomainRow(Base):
    """One domain of the adapter registry's database index (`lorastack.registry.database`):
    its `DomainIndex` (aliases, their history, the canary, capture, the last version).

    Every change of a domain locks its row first, so concurrent writers take turns."""

    __tablename__ = "registry_domains"

    domain: Mapped[str] = mapped_column(String(255), primary_key=True)
    index: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class RegistryVersionRow(Base):
    """One published version: its manifest and the blobs of its two files, by sha256."""

    __tablename__ = "registry_versions"

    domain: Mapped[str] = mapped_column(
        String(255), ForeignKey("registry_domains.domain"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    adapter_sha256: Mapped[str] = mapped_column(String(64))
    """The blob of `adapter_model.safetensors` (also in the manifest)."""
    config_sha256: Mapped[str] = mapped_column(String(64))
    """The blob of `adapter_config.json`."""
    published_at: Mapped[datetime] = mapped_column(UtcDateTime())
