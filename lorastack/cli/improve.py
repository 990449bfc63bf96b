"""`lorastack improve DOMAIN`: from users' ratings to a new version answering as a canary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lorastack.cli.context import err, guard_for, model_store, out, registry, settings
from lorastack.cli.feedback_export import parse_since
from lorastack.cli.train import TEST_BRANDS, stamp, with_brand_data
from lorastack.progress import progress_display
from lorastack.train.config import load_config
from lorastack.train.improve import (
    DEFAULT_WEIGHT,
    IMPROVE_FORMATS,
    Attempt,
    Measure,
    RetryOptions,
)
from lorastack.train.improve import improve as run_loop
from lorastack.train.improve_bench import DEFAULT_QUESTIONS, measure_improve, write_improve_report
from lorastack.train.quality import DEFAULT_EXAMPLES
from lorastack.train.replay import DEFAULT_REPLAY_SHARE, ReplayOptions

_REPLAY_HELP = (
    "kto: rows of the data prod learnt from added as desirable answers, per feedback "
    "row of the train split, against forgetting (0: none; 1: as many as feedback rows)."
)


_RETRIES_HELP = (
    "Candidates the quality gate refuses are trained again from prod at half the learning "
    "rate, this many times at most (0: never)."
)


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
    replay: Annotated[float, typer.Option(min=0, help=_REPLAY_HELP)] = DEFAULT_REPLAY_SHARE,
    retries: Annotated[int, typer.Option(min=0, help=_RETRIES_HELP)] = RetryOptions().times,
) -> None:
    """Export the domain's feedback, train on it from prod, evaluate against prod, publish
    through the quality gate and start a canary; prints the comparison, the run folder and
    NAME@vN last.

    Nothing is published when a step refuses: too little feedback, no prod version, or
    candidates the quality gate finds worse than prod (each refused one is trained again
    at half its learning rate, --retries times).
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
            replay=ReplayOptions(share=replay),
            retries=RetryOptions(times=retries),
        )
    report = result.export.report
    err.print(
        f"{report.exchanges} exchanges, {report.rated} rated: {result.export.data.kept} "
        f"{format} rows kept, in {result.export.out}"
    )
    if report.replay is not None:
        err.print(report.replay.note())
    for attempt in result.attempts[:-1]:
        err.print(refused_attempt(attempt))
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


def refused_attempt(attempt: Attempt) -> str:
    """One refused run, as a line: its learning rate, the gate's reasons, its folder."""
    return (
        f"learning rate {attempt.learning_rate:g}: refused ({'; '.join(attempt.problems)}); "
        f"run {attempt.run}"
    )


def _cells(measure: Measure) -> tuple[str, str, str]:
    candidate, prod = measure.candidate, measure.prod
    if candidate is None or prod is None:
        change = "-"
    elif measure.rate:
        change = f"{(candidate - prod) * 100:+.0f} points"
    else:
        change = f"{candidate - prod:+.4f}"
    return measure.show(candidate), measure.show(prod), change


def evaluate_improve(
    config_file: Annotated[
        Path | None,
        typer.Argument(
            help="A brand's training YAML with a starts_with or ends_with rule (default: "
            "the test brand tests/data/harborline, when run from a checkout).",
        ),
    ] = None,
    questions: Annotated[
        int, typer.Option(min=2, help="Train questions prod answers and the users rate.")
    ] = DEFAULT_QUESTIONS,
    quality_examples: Annotated[
        int, typer.Option("--quality-examples", min=1, help="Test questions measured.")
    ] = DEFAULT_EXAMPLES,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Report folder (default: $LORASTACK_HOME/bench/improve-<time>)."
        ),
    ] = None,
    replay: Annotated[float, typer.Option(min=0, help=_REPLAY_HELP)] = DEFAULT_REPLAY_SHARE,
) -> None:
    """Measure `lorastack improve`: train an adapter that breaks a brand rule in about half
    its answers, rate its answers by the rule, improve it, and report the rule's pass rate
    on unseen test questions before and after; writes improve.json and improve.md and
    prints the folder last. Runs in a home of its own under the folder."""
    path = config_file or TEST_BRANDS[-1]
    if not path.is_file():
        raise typer.BadParameter(f"{path} does not exist", param_hint="CONFIG_FILE")
    config = with_brand_data(load_config(path))
    config_settings = settings()
    folder = (out_dir or config_settings.home / "bench" / f"improve-{stamp()}").absolute()
    folder.mkdir(parents=True, exist_ok=True)
    with progress_display(err) as progress:
        bench = measure_improve(
            config,
            config_settings,
            model_store(),
            folder,
            guard_for(config.domain),
            progress,
            examples=quality_examples,
            questions=questions,
            replay=ReplayOptions(share=replay),
        )
    write_improve_report(bench, folder)
    before = "-" if bench.rule_before is None else f"{bench.rule_before:.0%}"
    after = "-" if bench.rule_after is None else f"{bench.rule_after:.0%}"
    out.print(
        f"{bench.domain}: rule {bench.rule} on {bench.test_examples} unseen questions: prod "
        f"{before}, after improve {after} ({bench.up} up, {bench.down} down from "
        f"{bench.feedback_answers} answers); "
        + (f"published {bench.published}" if bench.published else "refused by the gate")
    )
    out.print(str(folder), highlight=False)
