"""The root `lorastack` command and its error handling.

Library errors (`LorastackError`) become one line on stderr and exit code 1;
bad settings exit with 2. No user mistake ends in a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from lorastack import __version__
from lorastack.cli import (
    adapters,
    bench,
    data,
    db,
    deploy,
    feedback,
    guard,
    improve,
    keys,
    models,
    quickstart,
    registry,
    serve,
    train,
    ui,
    usage,
)
from lorastack.errors import LorastackError, SettingsError
from lorastack.settings import CONFIG_ENV

app = typer.Typer(
    name="lorastack",
    help="Business-domain LLM assistants on hot-swapped LoRA adapters.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(models.app, name="model")
app.add_typer(adapters.app, name="adapters")
app.add_typer(guard.app, name="guard")
app.add_typer(data.app, name="data")
app.add_typer(feedback.app, name="feedback")
app.add_typer(db.app, name="db")
app.add_typer(keys.app, name="keys")
app.add_typer(deploy.app, name="deploy")
app.add_typer(usage.app, name="usage")
app.add_typer(registry.app, name="registry")
app.command("audit")(usage.audit)
app.command("quickstart")(quickstart.quickstart)
app.command("serve")(serve.serve)
app.command("train")(train.train)
app.command("eval")(train.evaluate)
app.command("eval-defaults")(train.evaluate_defaults)
app.command("publish")(train.publish)
app.command("improve")(improve.improve)
app.command("eval-improve")(improve.evaluate_improve)
app.command("ui")(ui.ui)
app.command("bench")(bench.bench)


def _show_version(value: bool) -> None:
    if value:
        print(f"lorastack {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    config: Annotated[
        Path | None,
        typer.Option(help=f"YAML or TOML settings file (same as {CONFIG_ENV}).", exists=True),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug details.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    if config is not None:
        os.environ[CONFIG_ENV] = str(config)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def main() -> None:
    # Typer (standalone mode) reports usage mistakes itself and exits; library
    # errors arrive here and become one line on stderr.
    try:
        app()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except LorastackError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
