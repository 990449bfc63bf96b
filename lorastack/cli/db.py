"""`lorastack db ...`: the database's schema version, for operators.

The gateway and every command that uses the database upgrade it themselves; these are for
upgrading ahead of a rollout and for checking where a database stands.
"""

from __future__ import annotations

import typer

from lorastack.cli.context import err, out, settings

# lorastack.db is imported by the commands that use it: SQLAlchemy and Alembic would add
# about a quarter of a second to every other `lorastack` command.

app = typer.Typer(
    help="The database of captured exchanges and feedback (LORASTACK_DATABASE_URL).",
    no_args_is_help=True,
)


def _describe(revision: str | None) -> str:
    from lorastack.db import head_revision

    if revision is None:
        return "none (no lorastack tables yet)"
    head = head_revision()
    return f"{revision} (head)" if revision == head else f"{revision} (the newest is {head})"


@app.command("upgrade")
def upgrade_command() -> None:
    """Migrate the database to the newest schema (prints the revision it is at)."""
    from lorastack.db import current_revision, database_url, display_url, upgrade

    url = database_url(settings())
    err.print(f"database {display_url(url)}")
    upgrade(url)
    out.print(_describe(current_revision(url)))


@app.command("current")
def current_command() -> None:
    """Print the database's schema revision and whether it is the newest."""
    from lorastack.db import current_revision, database_url, display_url

    url = database_url(settings())
    err.print(f"database {display_url(url)}")
    out.print(_describe(current_revision(url)))
