"""Training data preparation: a business's raw data in, clean train/validation/test splits out.

`prepare_dataset` runs the whole pipeline; each stage is a plain function in
its own module of this package:

1. read JSONL/JSON, CSV, Parquet files and `datasets` folders (`readers`);
2. detect each file's record format and convert every record to one canonical
   format, reporting each problem with file, line and field (`convert`):
   OpenAI chat `messages`, `prompt`/`completion`, `text` (Alpaca becomes
   prompt/completion, ShareGPT becomes messages), or TRL's preference formats
   (`prompt`/`chosen`/`rejected` for DPO, `prompt`/`completion`/`label` for KTO);
3. normalise whitespace, drop empty and over-long records (`records`);
4. scrub personal data with the guard's input policy (the placeholders the
   gateway will use at serving time);
5. add the brand-voice system prompt to chats that have none;
6. remove exact, near-exact and (optionally) MinHash near duplicates (`dedupe`);
7. split deterministically, stratified by label for classification data and
   unpaired preferences (`split`);
8. augment the train split only: question paraphrases (`lorastack.train.paraphrase`,
   on by default) and typing noise (`lorastack.train.augment`);
9. write the splits and a report into a new folder, atomically (`write`, `report`).

The output folder holds `train.jsonl`, `validation.jsonl`, `test.jsonl`,
`report.json` (with the dataset's sha256 over the three splits) and `report.md`.
"""

from __future__ import annotations

import random
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from lorastack.guardrails.guard import Guard
from lorastack.guardrails.scrub import ScrubReport, scrub_records
from lorastack.progress import NullProgress, Progress
from lorastack.train.augment import Variant, augment_messages
from lorastack.train.data.convert import InvalidRecord, convert_record, detect_format, json_type
from lorastack.train.data.dedupe import deduplicate, exact_key
from lorastack.train.data.readers import Location, Problem, Row, read_rows
from lorastack.train.data.records import (
    CANONICAL,
    INPUT_FORMATS,
    ChatRecord,
    DataError,
    InputFormat,
    Record,
    add_system_prompt,
    is_conversational,
    is_empty,
    map_texts,
    normalize_text,
    record_chars,
    record_format,
    without_empty_system,
)
from lorastack.train.data.report import (
    DROP_REASONS,
    DataReport,
    PreparedSplits,
    PrepareResult,
    SourceSummary,
)
from lorastack.train.data.split import check_fractions, split_indices, stratify_labels
from lorastack.train.data.write import write_dataset
from lorastack.train.paraphrase import DEFAULT_PARAPHRASES, paraphrase_messages
from lorastack.train.run import SPLITS

MAX_PROBLEMS_SHOWN = 20


@dataclass(frozen=True)
class PrepareOptions:
    """What `prepare_dataset` does; the defaults are the CLI's."""

    out: Path
    format: InputFormat | None = None
    """Force one input format for every file (default: detect per file)."""
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 42
    max_chars: int = 8000
    """Records with more characters of text than this are dropped."""
    skip_invalid: bool = False
    """Drop invalid records (counted) instead of failing."""
    near_dup_threshold: float | None = None
    """Also drop records whose word-shingle Jaccard similarity to a kept one reaches this."""
    stratify: bool = True
    """Stratify by label when the data is classification-like."""
    system_prompt: str | None = None
    """The brand voice: added to chats without a system message."""
    augment: int = 0
    """Up to this many augmented variants per train chat (typing noise, system prompt)."""
    paraphrases: int = DEFAULT_PARAPHRASES
    """This many question paraphrases per train chat (`lorastack.train.paraphrase`)."""
    vocabulary: bool = True
    """Scrubbing leaves the business's own names unmasked: the name-like values that
    recur across its records (`lorastack.guardrails.vocabulary`)."""

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in INPUT_FORMATS:
            raise DataError(f"format {self.format!r}: expected one of {', '.join(INPUT_FORMATS)}")
        check_fractions(self.split)
        if self.max_chars < 1:
            raise DataError("max_chars must be at least 1")
        if self.augment < 0:
            raise DataError("augment must be 0 or more")
        if self.paraphrases < 0:
            raise DataError("paraphrases must be 0 or more")
        if self.near_dup_threshold is not None and not 0 < self.near_dup_threshold <= 1:
            raise DataError("near_dup_threshold must be above 0 and at most 1")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "split": list(self.split),
            "seed": self.seed,
            "max_chars": self.max_chars,
            "skip_invalid": self.skip_invalid,
            "near_dup_threshold": self.near_dup_threshold,
            "stratify": self.stratify,
            "system_prompt": self.system_prompt,
            "augment": self.augment,
            "paraphrases": self.paraphrases,
            "vocabulary": self.vocabulary,
        }


@dataclass
class Example:
    """A valid record in canonical form, and where it came from."""

    location: Location
    record: Record


# -- the pipeline --------------------------------------------------------------------


def _file_format(path: Path, rows: Sequence[Row]) -> InputFormat | None:
    """The first recognisable record decides a file's format."""
    objects = [row.value for row in rows if row.problem is None and isinstance(row.value, dict)]
    for value in objects:
        detected = detect_format(value)
        if detected is not None:
            return detected
    if not objects:
        return None  # empty, or nothing parseable: reported as problems
    fields = ", ".join(sorted(map(str, objects[0]))) or "none"
    raise DataError(
        f"cannot tell the record format of {path}: its first record has the fields {fields}; "
        "expected messages, prompt+completion, text, instruction+output (Alpaca), "
        "conversations (ShareGPT), prompt+chosen+rejected (preference) or "
        "prompt+completion+label (unpaired preference); pass --format to force one"
    )


def load_examples(
    sources: Sequence[Path],
    format: InputFormat | None = None,
    progress: Progress | None = None,
) -> tuple[list[Example], list[Problem], list[SourceSummary]]:
    """Read and validate every source: the valid examples, every problem, and a summary.

    Raises `DataError` when a file cannot be read or its format detected, or
    when the files hold records of incompatible formats.
    """
    progress = progress or NullProgress()
    examples: list[Example] = []
    problems: list[Problem] = []
    summaries: list[SourceSummary] = []
    for path in sources:
        rows = read_rows(path, progress)
        fmt = format or _file_format(path, rows)
        bad = 0
        for row in rows:
            if row.problem is not None:
                problems.append(Problem(row.location, row.problem))
                bad += 1
                continue
            if not isinstance(row.value, dict) or fmt is None:
                # (fmt is None only when no row is an object: these are all non-objects.)
                kind = json_type(row.value)
                problems.append(Problem(row.location, f"expected a JSON object, got {kind}"))
                bad += 1
                continue
            try:
                examples.append(Example(row.location, convert_record(row.value, fmt)))
            except InvalidRecord as error:
                problems.append(Problem(row.location, error.message, error.field))
                bad += 1
        summaries.append(SourceSummary(str(path), fmt, len(rows), bad))
    _check_one_format(summaries, examples)
    return examples, problems, summaries


def _check_one_format(summaries: Sequence[SourceSummary], examples: Sequence[Example]) -> None:
    canonical = {CANONICAL[s.format] for s in summaries if s.format is not None}
    if len(canonical) > 1:
        listed = "; ".join(
            f"{s.path} is {s.format}"
            + (f" ({CANONICAL[s.format]})" if s.format != CANONICAL[s.format] else "")
            for s in summaries
            if s.format is not None
        )
        raise DataError(
            "cannot mix record formats in one dataset: "
            f"{listed}; convert them to one format or prepare them separately"
        )
    # TRL needs one shape per dataset: plain strings or message lists, not both.
    shapes: dict[bool, Location] = {}
    for example in examples:
        if record_format(example.record) not in ("messages", "text"):
            shapes.setdefault(is_conversational(example.record), example.location)
    if len(shapes) > 1:
        kind = record_format(examples[0].record)
        noun = "prompt/completion" if kind == "prompt-completion" else kind
        raise DataError(
            f"cannot mix plain {noun} strings "
            f"({shapes[False]}) with conversational message lists ({shapes[True]}) in one dataset"
        )


def _invalid_message(problems: Sequence[Problem]) -> str:
    shown = [f"  {problem}" for problem in problems[:MAX_PROBLEMS_SHOWN]]
    more = len(problems) - len(shown)
    if more:
        shown.append(f"  ... and {more} more")
    noun = "record is" if len(problems) == 1 else "records are"
    return f"{len(problems)} {noun} invalid (drop them with --skip-invalid):\n" + "\n".join(shown)


def _length_stats(records: Sequence[Record]) -> dict[str, float]:
    lengths = [record_chars(record) for record in records]
    return {
        "min": min(lengths),
        "median": float(statistics.median(lengths)),
        "max": max(lengths),
    }


def prepare_splits(
    sources: Sequence[Path],
    options: PrepareOptions,
    guard: Guard | None = None,
    progress: Progress | None = None,
) -> PreparedSplits:
    """Everything `prepare_dataset` does except writing: the splits and their report."""
    progress = progress or NullProgress()
    if not sources:
        raise DataError("no input files given")
    examples, problems, summaries = load_examples(sources, options.format, progress)
    if problems and not options.skip_invalid:
        raise DataError(_invalid_message(problems))
    read = sum(s.records for s in summaries)
    dropped: Counter[str] = Counter({reason: 0 for reason in DROP_REASONS})
    dropped["invalid"] = len(problems)
    notes: list[str] = [f"{s.path}: no records" for s in summaries if s.records == 0]
    if not examples:
        raise DataError("no valid records in the input")
    fmt = record_format(examples[0].record)

    # Clean: normalised text, then empty and over-long records out.
    cleaned: list[Example] = []
    for example in examples:
        record = without_empty_system(map_texts(example.record, normalize_text))
        if is_empty(record):
            dropped["empty"] += 1
        elif record_chars(record) > options.max_chars:
            dropped["too_long"] += 1
        else:
            cleaned.append(Example(example.location, record))

    # Scrub before deduplicating: records differing only in a customer's name
    # become the same training example once the name is a placeholder.
    scrub_report: ScrubReport | None = None
    if guard is not None:
        scrub_report = ScrubReport()
        progress.step("scrubbing personal data", total=len(cleaned))
        scrubbed: list[Example] = []
        results = scrub_records(
            [dict(e.record) for e in cleaned], guard, scrub_report, options.vocabulary
        )
        for example, result in zip(cleaned, results, strict=True):
            progress.advance(1)
            if result is None:
                dropped["pii_blocked"] += 1
            else:
                scrubbed.append(Example(example.location, cast(Record, result)))
        cleaned = scrubbed

    system_prompt = normalize_text(options.system_prompt) if options.system_prompt else None
    if system_prompt:
        # Chats and TRL's conversational prompts have a place for it; plain strings do not.
        if fmt == "messages" or (cleaned and is_conversational(cleaned[0].record)):
            cleaned = [
                Example(e.location, add_system_prompt(e.record, system_prompt)) for e in cleaned
            ]
        else:
            notes.append(f"the system prompt applies to chat records only; ignored for {fmt}")

    progress.step("removing duplicates", total=len(cleaned))
    kept_at, duplicates = deduplicate([e.record for e in cleaned], options.near_dup_threshold)
    dropped.update(duplicates)
    kept = [cleaned[i] for i in kept_at]
    progress.advance(len(cleaned))
    if not kept:
        raise DataError(
            "no records left after cleaning: "
            + ", ".join(f"{k} {v}" for k, v in dropped.items() if v)
        )

    records = [example.record for example in kept]
    labels = stratify_labels(records) if options.stratify else None
    train_at, validation_at, test_at = split_indices(
        len(records), options.split, options.seed, labels
    )
    train = [records[i] for i in train_at]
    validation = [records[i] for i in validation_at]
    test = [records[i] for i in test_at]
    label_counts: dict[str, dict[str, int]] = {}
    if labels is not None:
        for name, positions in zip(SPLITS, (train_at, validation_at, test_at), strict=True):
            label_counts[name] = dict(sorted(Counter(labels[i] for i in positions).items()))

    augmented, kinds = 0, Counter[str]()
    if fmt == "messages" and (options.augment or options.paraphrases):
        train, augmented, kinds = _augment(train, options, system_prompt)
    elif options.augment:  # asked for; paraphrases are on by default and need chats as well
        notes.append(f"augmentation applies to chat records only; nothing added for {fmt}")

    report = DataReport(
        format=fmt,
        sources=summaries,
        read=read,
        kept=len(records),
        dropped=dict(dropped),
        splits={"train": len(train), "validation": len(validation), "test": len(test)},
        augmented=augmented,
        augmented_kinds=dict(sorted(kinds.items())),
        stratified=labels is not None,
        labels=label_counts,
        length_chars=_length_stats(records),
        scrub=scrub_report,
        policy=guard.policy.name if guard is not None else None,
        options=options.to_dict(),
        invalid_examples=[str(p) for p in problems[:MAX_PROBLEMS_SHOWN]],
        notes=notes,
    )
    return PreparedSplits(train, validation, test, report)


def _augment(
    train: list[Record], options: PrepareOptions, system_prompt: str | None
) -> tuple[list[Record], int, Counter[str]]:
    rng = random.Random(f"augment:{options.seed}")
    existing = {exact_key(record) for record in train}
    out: list[Record] = []
    kinds: Counter[str] = Counter()
    added = 0
    for record in train:
        out.append(record)
        messages = cast(ChatRecord, record)["messages"]
        variants = [
            Variant(paraphrase, ["paraphrase"])
            for paraphrase in paraphrase_messages(messages, options.paraphrases, rng)
        ]
        variants += augment_messages(messages, options.augment, rng, system_prompt)
        for variant in variants:
            candidate: ChatRecord = {"messages": variant.messages}
            key = exact_key(candidate)
            if key in existing:  # never a second copy of a real example
                continue
            existing.add(key)
            out.append(candidate)
            kinds.update(variant.kinds)
            added += 1
    rng.shuffle(out)
    return out, added, kinds


def prepare_dataset(
    sources: list[Path],
    options: PrepareOptions,
    guard: Guard | None = None,
    progress: Progress | None = None,
) -> PrepareResult:
    """Prepare `sources` into `options.out`: train/validation/test JSONL and reports.

    `guard` scrubs personal data with its input policy (None: no scrubbing).
    Raises `DataError` for unreadable files, mixed formats or invalid records
    (unless `options.skip_invalid`).
    """
    prepared = prepare_splits(sources, options, guard, progress)
    out = write_dataset(options.out, prepared, progress)
    return PrepareResult(out, prepared.report)
