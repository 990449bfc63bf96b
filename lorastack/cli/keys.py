"""`lorastack keys ...`: client keys kept in the database, each with its domains and limits.

A key is printed once, on stdout, when it is created or rotated; the database keeps its
sha256 and its last four characters. Gateways sharing the database pick changes up within
`gateway.keys_refresh_s`. Every change is recorded in the audit trail (`lorastack audit`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.table import Table

from lorastack.audit import AuditEvent, cli_actor
from lorastack.cli.context import err, out, settings
from lorastack.keys import PERIODS, KeyLimits, ManagedKey, Period, parse_domains, parse_expiry

if TYPE_CHECKING:
    from lorastack.db.audit_store import SqlAuditLog
    from lorastack.db.key_store import SqlKeyStore

app = typer.Typer(help="Client API keys with domains and limits (kept in the database).")


@contextmanager
def _store() -> Iterator[tuple[SqlKeyStore, SqlAuditLog]]:
    # Imported here: SQLAlchemy costs every other command a quarter of a second.
    from lorastack.db.audit_store import SqlAuditLog
    from lorastack.db.key_store import SqlKeyStore
    from lorastack.db.sessions import open_engine

    with open_engine(settings()) as engine:
        yield SqlKeyStore(engine), SqlAuditLog(engine)


def _audit(log: SqlAuditLog, action: str, name: str, details: dict[str, object]) -> None:
    log.record(AuditEvent(datetime.now(UTC), cli_actor(), action, name, dict(details)))


def _bad(option: str, error: ValueError) -> typer.BadParameter:
    return typer.BadParameter(str(error), param_hint=option)


@app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="A name for the key (its owner).")],
    domains: Annotated[
        str, typer.Option(help="Domains it may use, comma-separated; * for every one.")
    ] = "*",
    rpm: Annotated[int | None, typer.Option(min=1, help="Requests per minute.")] = None,
    tpm: Annotated[
        int | None, typer.Option(min=1, help="Tokens (prompt + answer) per minute.")
    ] = None,
    budget: Annotated[
        int | None, typer.Option(min=1, help="Tokens per --period (a calendar period, UTC).")
    ] = None,
    period: Annotated[
        str, typer.Option(help=f"The budget's period: {', '.join(PERIODS)}.")
    ] = "month",
    expires: Annotated[
        str | None,
        typer.Option(help="When it stops working: 2027-01-31 (through that day), 30d, 12h."),
    ] = None,
) -> None:
    """Create a key and print it (once: only its hash is kept)."""
    now = datetime.now(UTC)
    try:
        allowed = parse_domains(domains)
    except ValueError as error:
        raise _bad("--domains", error) from None
    if period not in PERIODS:
        raise _bad("--period", ValueError(f"one of {', '.join(PERIODS)}"))
    try:
        expires_at = parse_expiry(expires, now) if expires else None
    except ValueError as error:
        raise _bad("--expires", error) from None
    budget_period = cast(Period, period) if budget is not None else None
    try:
        limits = KeyLimits(rpm, tpm, budget, budget_period)
    except ValueError as error:
        raise _bad("--budget", error) from None
    with _store() as (store, audit):
        try:
            key, secret = store.create(
                name, domains=allowed, limits=limits, expires_at=expires_at, now=now
            )
        except ValueError as error:
            raise _bad("--name", error) from None
        _audit(audit, "keys.create", name, key.audit_details())
    err.print(f"created key {name} ({key.limits.described}); it is shown only now:")
    out.print(secret, soft_wrap=True)


@app.command("list")
def list_keys(
    all_keys: Annotated[bool, typer.Option("--all", help="Revoked keys too.")] = False,
) -> None:
    """The keys: names, domains, limits, expiry, last use; never the keys themselves."""
    with _store() as (store, _):
        keys = store.list(include_revoked=all_keys)
    if not keys:
        err.print("no keys yet: lorastack keys create --name NAME")
        return
    table = Table("name", "key", "domains", "limits", "expires", "last used", "state")
    for key in keys:
        table.add_row(
            key.name,
            f"...{key.hint}",
            ",".join(key.domains),
            key.limits.described,
            _when(key.expires_at),
            _when(key.last_used_at),
            _state(key),
        )
    out.print(table)


@app.command("revoke")
def revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Stop a key from working; its usage and audit records stay."""
    with _store() as (store, audit):
        store.revoke(name)
        _audit(audit, "keys.revoke", name, {})
    err.print(f"revoked key {name}")


@app.command("rotate")
def rotate(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Give a key a new secret (same name, domains and limits) and print it; the old one
    stops working."""
    with _store() as (store, audit):
        _key, secret = store.rotate(name)
        _audit(audit, "keys.rotate", name, {})
    err.print(f"rotated key {name}; the new key is shown only now:")
    out.print(secret, soft_wrap=True)


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else "-"


def _state(key: ManagedKey) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expired(datetime.now(UTC)):
        return "expired"
    return "live"
