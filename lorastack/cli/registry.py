"""`lorastack registry ...`: where the adapter registry keeps its index.

`migrate` copies a folder registry (`<home>/adapters` by default) into the database index
and its blob store, which several machines can share; the folder is left as it was. The
home's own folder registry moves in by itself the first time the database index is
opened (`adopt_folder_registry`); `migrate` is for another folder, a dry run, or a
database elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lorastack.cli.context import err, out, record_action, settings
from lorastack.errors import RegistryError
from lorastack.progress import progress_display

app = typer.Typer(
    help="The adapter registry's index: the database (the default, shareable) or folders.",
    no_args_is_help=True,
)


@app.command("migrate")
def migrate(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check and say what would be copied; write nothing.")
    ] = False,
    source: Annotated[
        Path | None,
        typer.Option(
            "--from", help="The folder registry to copy (default: <home>/adapters).", dir_okay=True
        ),
    ] = None,
) -> None:
    """Copy the folder registry into the database index (LORASTACK_DATABASE_URL) and the
    blob store (LORASTACK_REGISTRY__STORE): every version with its files (hash-checked),
    aliases and their history, canaries and capture. Safe to run again: what the database
    holds already is left alone. The folder registry is never changed."""
    # Imported here: SQLAlchemy and fsspec only for the commands that use them.
    from lorastack.registry import FolderIndex, migrate_folder_registry, open_database_index

    config = settings()
    folder = FolderIndex(source or config.adapters_dir)
    if not folder.domains():
        out.print(f"nothing to migrate: no published domain in {folder.root}")
        return
    target = open_database_index(config)
    try:
        err.print(f"from {folder.description} to {target.description}")
        with progress_display(err) as progress:
            results = migrate_folder_registry(folder, target, dry_run=dry_run, progress=progress)
    finally:
        target.engine.dispose()
    for result in results:
        out.print(str(result), markup=False)
    refused = [r for r in results if r.outcome == "refused"]
    copied = [r for r in results if r.outcome == "copied"]
    if copied:
        record_action(
            "registry.migrate",
            str(folder.root),
            {"domains": [r.domain for r in copied], "to": target.description},
        )
    if refused:
        names = ", ".join(r.domain for r in refused)
        raise RegistryError(f"{len(refused)} of {len(results)} domains not migrated: {names}")
    if dry_run:
        out.print("dry run: nothing was written")
    elif not copied:
        out.print("nothing changed: the database holds every domain already")
    else:
        out.print("every version reads back as it is in the folder")
    if not dry_run:
        out.print(
            "every gateway and command with the same LORASTACK_DATABASE_URL and "
            "LORASTACK_REGISTRY__STORE uses it: the database index is the default "
            "(LORASTACK_REGISTRY__INDEX=folder is not)"
        )
