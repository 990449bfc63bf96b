"""`lorastack data ...`: prepare training data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lorastack.cli.context import err, guard_for, out
from lorastack.cli.guard import DomainOption, PolicyOption, VocabularyOption
from lorastack.fsutil import write_json_atomic
from lorastack.guardrails.guard import Guard
from lorastack.guardrails.scrub import ScrubReport, scrub_records
from lorastack.jsonl import read_objects
from lorastack.progress import progress_display
from lorastack.train.data import (
    DEFAULT_PARAPHRASES,
    INPUT_FORMATS,
    PrepareOptions,
    parse_split,
    prepare_dataset,
)

app = typer.Typer(help="Training data: scrub, prepare.", no_args_is_help=True)


def _guard(domain: str | None, policy: Path | None) -> Guard:
    """The input-policy guard for a domain (or a policy file), as the gateway builds it."""
    return guard_for(domain, policy)


@app.command()
def scrub(
    source: Annotated[
        Path, typer.Argument(help="JSONL records: messages, prompt/completion or text.")
    ],
    target: Annotated[Path, typer.Argument(help="Where to write the scrubbed JSONL.")],
    domain: DomainOption = None,
    policy: PolicyOption = None,
    vocabulary: VocabularyOption = True,
) -> None:
    """Apply the input policy to a training file, keeping every record's structure.

    Writes TARGET and a report (TARGET with .report.json) of what was found;
    records holding data the policy blocks are left out and counted.
    """
    guard = _guard(domain, policy)
    report = ScrubReport()
    records = read_objects(source)
    scrubbed: list[str] = []
    with progress_display(err) as progress:
        progress.step(f"scrubbing {source.name}", total=len(records))
        cleaned_records = scrub_records([r for _, r in records], guard, report, vocabulary)
        for cleaned in cleaned_records:
            progress.advance(1)
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
    _print_vocabulary(report.vocabulary)
    out.print(report_path)


def _print_vocabulary(names: list[str]) -> None:
    if names:
        err.print(
            f"kept as the business's own names (in many records; --no-vocabulary masks them): "
            f"{', '.join(names)}",
            soft_wrap=True,
        )


@app.command()
def prepare(
    sources: Annotated[
        list[Path],
        typer.Argument(
            help="JSONL, JSON, CSV, Parquet files or `datasets` folders (save_to_disk).",
            metavar="FILE...",
            show_default=False,
        ),
    ],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the dataset into.")],
    format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help=f"Force the input format: {', '.join(INPUT_FORMATS)} (default: detect per file).",
        ),
    ] = None,
    split: Annotated[
        str, typer.Option(help="Train, validation and test fractions.")
    ] = "0.8,0.1,0.1",
    seed: Annotated[int, typer.Option(help="Same data and seed: byte-identical output.")] = 42,
    max_chars: Annotated[
        int, typer.Option(help="Drop records with more characters of text than this.")
    ] = 8000,
    skip_invalid: Annotated[
        bool,
        typer.Option("--skip-invalid", help="Drop invalid records (counted) instead of failing."),
    ] = False,
    near_dup_threshold: Annotated[
        float | None,
        typer.Option(
            help="Also drop records this similar (word-shingle Jaccard, e.g. 0.9) to a kept one."
        ),
    ] = None,
    stratify: Annotated[
        bool, typer.Option(help="Stratify the split by label for classification-like data.")
    ] = True,
    scrub: Annotated[
        bool, typer.Option(help="Mask personal data with the domain's input policy.")
    ] = True,
    vocabulary: VocabularyOption = True,
    domain: DomainOption = None,
    policy: PolicyOption = None,
    system_prompt: Annotated[
        str | None, typer.Option(help="The brand voice, added to chats that have none.")
    ] = None,
    system_prompt_file: Annotated[
        Path | None,
        typer.Option(help="Read the system prompt from a file.", exists=True, dir_okay=False),
    ] = None,
    augment: Annotated[
        int, typer.Option(help="Up to N augmented variants per train chat (0: none).", min=0)
    ] = 0,
    paraphrases: Annotated[
        int,
        typer.Option(help="Question paraphrases per train chat (0: none).", min=0),
    ] = DEFAULT_PARAPHRASES,
) -> None:
    """Turn raw data into clean train/validation/test splits (prints the folder).

    Validates every record (file:line: field: problem), normalises whitespace,
    drops empty, over-long and duplicate records, masks personal data, splits
    deterministically and writes train.jsonl, validation.jsonl, test.jsonl,
    report.json and report.md into OUT at once.
    """
    if system_prompt is not None and system_prompt_file is not None:
        raise typer.BadParameter("give --system-prompt or --system-prompt-file, not both")
    if format is not None and format not in INPUT_FORMATS:
        raise typer.BadParameter(
            f"{format!r} is not one of {', '.join(INPUT_FORMATS)}", param_hint="--format"
        )
    prompt = (
        system_prompt_file.read_text(encoding="utf-8").strip()
        if system_prompt_file is not None
        else system_prompt
    )
    options = PrepareOptions(
        out=out_dir,
        format=format,
        split=parse_split(split),
        seed=seed,
        max_chars=max_chars,
        skip_invalid=skip_invalid,
        near_dup_threshold=near_dup_threshold,
        stratify=stratify,
        system_prompt=prompt or None,
        augment=augment,
        paraphrases=paraphrases,
        vocabulary=vocabulary,
    )
    guard = _guard(domain, policy) if scrub else None
    with progress_display(err) as progress:
        result = prepare_dataset(sources, options, guard, progress)
    report = result.report
    dropped = ", ".join(f"{k} {v}" for k, v in report.dropped.items() if v) or "none"
    splits = ", ".join(f"{k} {v}" for k, v in report.splits.items())
    err.print(f"{report.format}: kept {report.kept} of {report.read} records; dropped: {dropped}")
    err.print(f"splits: {splits}; augmented {report.augmented}")
    err.print(f"dataset sha256: {report.sha256}", soft_wrap=True)
    if report.scrub is not None:
        found = ", ".join(f"{k} {v}" for k, v in sorted(report.scrub.entities.items()))
        err.print(f"personal data masked: {found or 'none found'}")
        _print_vocabulary(report.scrub.vocabulary)
    out.print(result.out)
