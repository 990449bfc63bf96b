"""`lorastack usage` and `lorastack audit`: what the answers cost, and who changed what.

Both read the database the gateways record into (LORASTACK_DATABASE_URL): each answer's
tokens and latency by key, domain and version, and every admin action with the admin key
(or the user, from the command line) that did it.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table

from lorastack.audit import AuditEvent
from lorastack.cli.context import err, out, settings
from lorastack.cli.feedback_export import parse_since
from lorastack.feedback import utc_now
from lorastack.usage import UsageGrouping, UsageTotals

# lorastack.db is imported by the commands: SQLAlchemy and Alembic would add about a
# quarter of a second to every other `lorastack` command.

SinceOption = Annotated[
    str, typer.Option(help="From when: an age (30m, 24h, 7d, 2w), a date or an ISO datetime.")
]
CsvOption = Annotated[bool, typer.Option("--csv", help="CSV on stdout instead of a table.")]

app = typer.Typer(invoke_without_command=True)


@app.callback()
def usage(
    ctx: typer.Context,
    since: SinceOption = "7d",
    by: Annotated[
        UsageGrouping, typer.Option(help="Sum by the client key, the domain or its version.")
    ] = "domain",
    daily: Annotated[bool, typer.Option("--daily", help="One row per UTC day too.")] = False,
    as_csv: CsvOption = False,
) -> None:
    """Tokens and latency of the answers since --since, summed by key, domain or version
    (the most first); `lorastack usage purge` removes old ones."""
    if ctx.invoked_subcommand is not None:
        return
    from lorastack.db import SqlUsageStore, database_url, display_url, open_engine

    start = parse_since(since)
    config = settings()
    err.print(f"database {display_url(database_url(config))}")
    with open_engine(config) as engine:
        totals = SqlUsageStore(engine).summary(start, by, daily=daily)
    if as_csv:
        _usage_csv(totals, by, daily)
        return
    if not totals:
        err.print(f"no answers recorded since {_moment(start)}")
        return
    err.print(f"answers since {_moment(start)}, by {by}")
    out.print(_usage_table(totals, by, daily))


@app.command()
def purge(
    older_than_days: Annotated[
        int, typer.Option(min=0, help="Remove the usage of answers more than this many days old.")
    ] = 365,
) -> None:
    """Remove the usage of old answers (kept until then); print how many went."""
    from lorastack.db import SqlUsageStore, database_url, display_url, open_engine

    config = settings()
    before = utc_now() - timedelta(days=older_than_days)
    err.print(f"database {display_url(database_url(config))}")
    with open_engine(config) as engine:
        removed = SqlUsageStore(engine).purge(before)
    noun = "answer" if removed == 1 else "answers"
    out.print(f"removed the usage of {removed} {noun} before {_moment(before)}")


def audit(
    since: Annotated[
        str | None,
        typer.Option(help="From when: an age (30m, 24h, 7d, 2w), a date or an ISO datetime."),
    ] = None,
    action: Annotated[
        str | None,
        typer.Option(help="One action (adapters.promote) or a family of them (adapters, keys)."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, the newest.")] = 100,
    as_csv: CsvOption = False,
) -> None:
    """Admin actions (admin API and command line), newest first: when, who, what, on what."""
    from lorastack.db import SqlAuditLog, database_url, display_url, open_engine

    start = parse_since(since) if since is not None else None
    config = settings()
    err.print(f"database {display_url(database_url(config))}")
    with open_engine(config) as engine:
        events = SqlAuditLog(engine).events(since=start, action=action, limit=limit)
    if as_csv:
        _audit_csv(events)
        return
    if not events:
        err.print("no admin actions recorded" + (f" since {_moment(start)}" if start else ""))
        return
    table = Table("when (UTC)", "actor", "action", "target", "details")
    for event in events:
        table.add_row(
            _moment(event.created_at), event.actor, event.action, event.target, _json(event)
        )
    out.print(table)


def _moment(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _json(event: AuditEvent) -> str:
    return json.dumps(event.details, sort_keys=True, ensure_ascii=False) if event.details else ""


def _usage_table(totals: Sequence[UsageTotals], by: UsageGrouping, daily: bool) -> Table:
    columns = [by, *(["day"] if daily else [])]
    table = Table(*columns, "requests", "prompt tokens", "completion tokens", "total tokens")
    table.add_column("mean latency")
    for row in totals:
        day = [row.day.isoformat() if row.day else ""] if daily else []
        numbers = (row.requests, row.prompt_tokens, row.completion_tokens, row.total_tokens)
        table.add_row(
            row.label(by), *day, *(f"{n:,}" for n in numbers), f"{row.mean_latency_s:.2f} s"
        )
    return table


def _usage_csv(totals: Sequence[UsageTotals], by: UsageGrouping, daily: bool) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(
        [
            by,
            *(["day"] if daily else []),
            "requests",
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "mean_latency_s",
        ]
    )
    for row in totals:
        day = [row.day.isoformat() if row.day else ""] if daily else []
        writer.writerow(
            [
                row.label(by),
                *day,
                row.requests,
                row.prompt_tokens,
                row.completion_tokens,
                row.total_tokens,
                f"{row.mean_latency_s:.4f}",
            ]
        )


def _audit_csv(events: Sequence[AuditEvent]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["created_at", "actor", "action", "target", "details"])
    for event in events:
        writer.writerow(
            [event.created_at.isoformat(), event.actor, event.action, event.target, _json(event)]
        )
