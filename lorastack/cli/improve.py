"""`lorastack improve DOMAIN`: from users' ratings to a new version answering as a canary."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from lorastack.cli.context import err, guard_for, model_store, out, registry, settings
from lorastack.cli.feedback_export import parse_since
from lorastack.progress import progress_display
from lorastack.train.improve import DEFAULT_WEIGHT, IMPROVE_FORMATS, Measure
from lorastack.train.improve import improve as run_loop


def improve(
    domain: Annotated[str, typer.Argument(help="The domain to improve, from its prod version.")],
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="kto (every rated answer, labelled) or dpo (corrections and retries, as pairs).",
        ),
    ] = "kto",
    since: Annotated[
        str | None,
        typer.Option(
            help="Only feedback on exchanges captured since then: 2026-12-01, an ISO "
            "datetime, or 7d."
        ),
    ] = None,
    weight: Annotated[
        float | None,
        typer.Option(
            help=f"Percent of the domain's conversations the new version answers, (0-100] "
            f"(default {DEFAULT_WEIGHT:g})."
        ),
    ] = None,
    no_canary: Annotated[
        bool, typer.Option("--no-canary", help="Publish the new version without a canary.")
    ] = False,
) -> None:
    """Export the domain's feedback, train on it from prod, evaluate against prod, publish
    through the quality gate and start a canary; prints the comparison, the run folder and
    NAME@vN last.

    Nothing is published when a step refuses: too little feedback, no prod version, or a
    candidate the quality gate finds worse than prod.
    """
    if format not in IMPROVE_FORMATS:
        raise typer.BadParameter(
            f"{format!r} is not one of {', '.join(IMPROVE_FORMATS)}", param_hint="--format"
        )
    if no_canary and weight is not None:
        raise typer.BadParameter("--no-canary starts no canary to weigh", param_hint="--weight")
    # Imported here: SQLAlchemy and Alembic would slow every other `lorastack` command.
    from lorastack.db import database_url, display_url, open_feedback_store

    start = parse_since(since) if since is not None else None
    config = settings()
    err.print(f"database {display_url(database_url(config))}")
    with open_feedback_store(config) as store, progress_display(err) as progress:
        result = run_loop(
            domain,
            store,
            registry(),
            model_store(),
            config,
            fmt=format,  # checked above
            since=start,
            weight=None if no_canary else (weight if weight is not None else DEFAULT_WEIGHT),
            scrub=guard_for(domain),
            progress=progress,
        )
    report = result.export.report
    err.print(
        f"{report.exchanges} exchanges, {report.rated} rated: {result.export.data.kept} "
        f"{format} rows kept, in {result.export.out}"
    )
    err.print(f"trained {result.training.steps} steps from {result.training.from_adapter}")
    version, prod = f"v{result.manifest.version}", f"v{result.prod}"
    table = Table("measure", f"candidate {version}", f"prod {prod}", "change")
    for measure in result.comparison:
        table.add_row(measure.name, *_cells(measure))
    out.print(table)
    if result.index is not None and result.index.canary is not None:
        canary = result.index.canary
        out.print(
            f"{domain}: {version} answers {canary.weight:g}% of conversations, prod {prod} the "
            "rest; the gateways stop it if it does worse than prod"
        )
    else:
        out.print(f"{domain}: {version} published, no canary; prod {prod} answers every request")
    out.print(result.run)
    out.print(result.manifest.ref)


def _cells(measure: Measure) -> tuple[str, str, str]:
    def show(value: float | None) -> str:
        if value is None:
            return "-"
        return f"{value:.0%}" if measure.rate else f"{value:.4f}"

    candidate, prod = measure.candidate, measure.prod
    if candidate is None or prod is None:
        change = "-"
    elif measure.rate:
        change = f"{(candidate - prod) * 100:+.0f} points"
    else:
        change = f"{candidate - prod:+.4f}"
    return show(candidate), show(prod), change
