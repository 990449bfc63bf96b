"""`lorastack feedback export`: a domain's rated exchanges as a KTO, DPO or SFT dataset.

Registered on the `feedback` sub-app (`lorastack/cli/feedback.py`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from lorastack.cli.context import err, guard_for, out, settings
from lorastack.cli.guard import PolicyOption
from lorastack.periods import parse_since as parse_period_start
from lorastack.progress import progress_display
from lorastack.train.feedback_export import EXPORT_FORMATS, export_feedback


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`--since`: a moment from `7d` (or `30m`, `12h`, `2w`) ago, a date (its midnight,
    UTC) or an ISO datetime (UTC unless it gives its offset); a usage error otherwise."""
    try:
        return parse_period_start(text, now)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--since") from None


def export(
    domain: Annotated[str, typer.Option(help="The domain whose feedback to export.")],
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="kto (rated answers, labelled), dpo (corrections and retries, as pairs) "
            "or sft (up-voted answers and corrections, as chats).",
        ),
    ],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the dataset into.")],
    since: Annotated[
        str | None,
        typer.Option(
            help="Only exchanges captured since then: 2026-12-01, an ISO datetime, or 7d.",
        ),
    ] = None,
    scrub: Annotated[
        bool, typer.Option(help="Mask personal data again with the domain's input policy.")
    ] = True,
    policy: PolicyOption = None,
) -> None:
    """Turn a domain's rated answers into a prepared dataset (prints the folder).

    The rows go through the checks of `lorastack data prepare` (validated, deduplicated,
    scrubbed again, split into train/validation/test); export.json and export.md beside
    the splits count what went where and what was left out, and why.
    """
    if format not in EXPORT_FORMATS:
        raise typer.BadParameter(
            f"{format!r} is not one of {', '.join(EXPORT_FORMATS)}", param_hint="--format"
        )
    # Imported here: SQLAlchemy and Alembic would slow every other `lorastack` command.
    from lorastack.db import database_url, display_url, open_feedback_store

    start = parse_since(since) if since is not None else None
    guard = guard_for(domain, policy) if scrub else None
    config = settings()
    err.print(f"database {display_url(database_url(config))}")
    with open_feedback_store(config) as store, progress_display(err) as progress:
        result = export_feedback(store, domain, format, out_dir, start, guard, progress)
    report, data = result.report, result.data
    rows = ", ".join(f"{k} {v}" for k, v in sorted(report.rows.items()))
    left_out = ", ".join(f"{k} {v}" for k, v in report.dropped.items() if v) or "nothing"
    checks = ", ".join(f"{k} {v}" for k, v in data.dropped.items() if v) or "none"
    splits = ", ".join(f"{k} {v}" for k, v in data.splits.items())
    err.print(
        f"{report.exchanges} exchanges, {report.rated} rated: {sum(report.rows.values())} "
        f"{format} rows ({rows}); left out: {left_out}"
    )
    err.print(f"kept {data.kept} rows ({splits}); dropped by the data checks: {checks}")
    out.print(result.out)
