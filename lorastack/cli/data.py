"""`lorastack data ...`: prepare training data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lorastack.cli.context import err, out
from lorastack.cli.guard import DomainOption, PolicyOption, resolve_policy
from lorastack.errors import LorastackError
from lorastack.fsutil import write_json_atomic
from lorastack.guardrails.guard import Guard
from lorastack.guardrails.scrub import ScrubReport, scrub_record
from lorastack.progress import RichProgress

app = typer.Typer(help="Training data: scrub, prepare.", no_args_is_help=True)


@app.command()
def scrub(
    source: Annotated[
        Path, typer.Argument(help="JSONL records: messages, prompt/completion or text.")
    ],
    target: Annotated[Path, typer.Argument(help="Where to write the scrubbed JSONL.")],
    domain: DomainOption = None,
    policy: PolicyOption = None,
) -> None:
    """Apply the input policy to a training file, keeping every record's structure.

    Writes TARGET and a report (TARGET with .report.json) of what was found;
    records holding data the policy blocks are left out and counted.
    """
    guard = Guard(resolve_policy(domain, policy), domain=domain)
    report = ScrubReport()
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise LorastackError(f"cannot read {source}: {error.strerror}") from None
    scrubbed: list[str] = []
    with RichProgress(err) as progress:
        progress.step(f"scrubbing {source.name}", total=len(lines))
        for number, line in enumerate(lines, start=1):
            progress.advance(1)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise LorastackError(f"{source}:{number}: not JSON: {error.msg}") from None
            if not isinstance(record, dict):
                raise LorastackError(f"{source}:{number}: expected a JSON object")
            cleaned = scrub_record(record, guard, report)
            if cleaned is not None:
                scrubbed.append(json.dumps(cleaned, ensure_ascii=False))
    # Written whole, then renamed: an interrupted scrub never leaves a partial file.
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text("".join(f"{line}\n" for line in scrubbed), encoding="utf-8")
    partial.replace(target)
    report_path = target.with_name(f"{target.name}.report.json")
    write_json_atomic(report_path, report.to_dict())
    summary = report.to_dict()
    found = ", ".join(f"{k} {v}" for k, v in summary["entities"].items()) or "nothing"
    err.print(
        f"{report.records} records, {report.records_changed} changed, "
        f"{report.records_dropped} dropped; found: {found}"
    )
    out.print(report_path)
