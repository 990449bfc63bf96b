"""`lorastack feedback ...`: the captured exchanges and users' ratings of them."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from lorastack.cli.context import err, out, settings
from lorastack.cli.feedback_export import export
from lorastack.feedback import utc_now

app = typer.Typer(
    help="Captured exchanges and feedback (in the database, LORASTACK_DATABASE_URL).",
    no_args_is_help=True,
)
app.command("export")(export)


@app.command()
def purge(
    domain: Annotated[
        str | None, typer.Option(help="Only this domain's exchanges (default: every domain).")
    ] = None,
    older_than_days: Annotated[
        int, typer.Option(min=0, help="Remove exchanges captured more than this many days ago.")
    ] = 90,
) -> None:
    """Remove captured exchanges older than N days, with their ratings; print how many went.

    This applies one age to every domain it touches. The gateway applies each domain's own
    retention from the registry by itself.
    """
    # Imported here: SQLAlchemy and Alembic would slow every other `lorastack` command.
    from lorastack.db import database_url, display_url, open_feedback_store

    config = settings()
    before = utc_now() - timedelta(days=older_than_days)
    err.print(f"database {display_url(database_url(config))}")
    with open_feedback_store(config) as store:
        removed = store.purge(before, domain)
    scope = f" of {domain}" if domain else ""
    noun = "exchange" if removed == 1 else "exchanges"
    out.print(f"removed {removed} {noun}{scope} captured before {before:%Y-%m-%d %H:%M} UTC")
