"""Users' ratings into a training dataset: KTO, DPO or SFT rows from captured exchanges.

`export_feedback` reads a domain's exchanges and ratings from a `FeedbackStore` and turns
them into rows of one format:

- `kto` (`unpaired-preference`): every rated answer, labelled by its latest vote; every
  correction as a desirable answer too;
- `dpo` (`preference`): every correction (chosen) over the answer it corrects (rejected),
  and an up-voted retry over the down-voted answer before it: the same conversation
  (`prompt_hash`) from the same client key, answered again later;
- `sft` (`messages`): the up-voted answers and the corrections.

The prompt is always the conversation the engine answered, masked and with the brand
voice. The rows then go through `prepare_splits`, the code of `lorastack data prepare`
(validation, normalisation, scrubbing again, deduplication, split), so data from use meets
the checks any other data does. Beside the splits the folder gets `export.json` and
`export.md` (`feedback_report`): what was read, where each row came from, what was left
out and why.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, get_args

from lorastack.feedback import Exchange, FeedbackStore, Rating
from lorastack.guardrails.guard import Guard
from lorastack.progress import NullProgress, Progress
from lorastack.train.data import (
    DataError,
    DataReport,
    PreparedSplits,
    PrepareOptions,
    normalize_text,
    prepare_splits,
    write_dataset,
)
from lorastack.train.data.records import CanonicalFormat
from lorastack.train.feedback_report import EXPORT_JSON, EXPORT_MD, ExportReport, Source
from lorastack.train.replay import Replay, mix_replay

ExportFormat = Literal["kto", "dpo", "sft"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = get_args(ExportFormat)
RECORD_FORMATS: dict[ExportFormat, CanonicalFormat] = {
    "kto": "unpaired-preference",
    "dpo": "preference",
    "sft": "messages",
}
MIN_ROWS = 3
"""Rows needed for a train, a validation and a test split of one row each or more."""

Prompt = list[dict[str, Any]]


@dataclass(frozen=True)
class Row:
    """One training record, and what it was made from (for the report)."""

    record: dict[str, Any]
    source: Source
    response_id: str


@dataclass(frozen=True)
class ExportResult:
    """The dataset folder, what the export did, and what the data checks did."""

    out: Path
    report: ExportReport
    data: DataReport


@dataclass(frozen=True)
class _Rated:
    """An exchange and the rating that counts: its latest."""

    exchange: Exchange
    rating: Rating

    @property
    def up(self) -> bool:
        return self.rating.rating == 1

    @property
    def correction(self) -> str | None:
        # A blank correction is no correction: there is nothing to learn from it.
        text = self.rating.correction
        return text if text is not None and text.strip() else None


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _same(a: str, b: str) -> bool:
    """Equal once whitespace is normalised the way the data pipeline does it."""
    return normalize_text(a) == normalize_text(b)


def _latest(ratings: Sequence[Rating]) -> Rating:
    """The newest rating; of two at the same moment, the one stored last."""
    return max(enumerate(ratings), key=lambda pair: (pair[1].created_at, pair[0]))[1]


def collect_rows(
    store: FeedbackStore, domain: str, fmt: ExportFormat, since: datetime | None = None
) -> tuple[list[Row], ExportReport]:
    """The rows of `fmt` that a domain's feedback gives, and the counts for the report."""
    if fmt not in EXPORT_FORMATS:
        raise DataError(f"format {fmt!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    exchanges = store.exchanges(domain, since)
    rated_exchanges = store.rated_exchanges(domain, since)
    report = ExportReport(domain, fmt, RECORD_FORMATS[fmt], since, exchanges=len(exchanges))
    rated: dict[str, _Rated] = {}
    for found in rated_exchanges:
        if not found.ratings:
            continue
        rated[found.exchange.response_id] = _Rated(found.exchange, _latest(found.ratings))
        report.ratings += len(found.ratings)
        report.drop("superseded_rating", len(found.ratings) - 1)
    report.rated = len(rated)
    report.drop("no_rating", sum(e.response_id not in rated for e in exchanges))
    for latest in rated.values():
        report.votes["up" if latest.up else "down"] += 1
        report.corrections += latest.correction is not None

    rows: list[Row] = []
    retries = _retry_pairs(exchanges, rated) if fmt == "dpo" else _Retries()
    # Oldest first, the order the store gives: the same feedback gives the same rows.
    for exchange in exchanges:
        item = rated.get(exchange.response_id)
        if item is None:
            continue
        correction = item.correction
        if correction is not None and _same(correction, exchange.answer):
            # Counted as a correction; it is also why its exchange may give nothing.
            report.drop("correction_same_as_answer")
            correction, counted = None, True
        else:
            counted = False
        made = _rows_of(item, correction, fmt) + retries.pairs.get(exchange.response_id, [])
        if not made and not counted and exchange.response_id not in retries.chosen:
            # Every rated exchange that gives nothing is counted once, with its reason.
            report.drop(retries.no_pair.get(exchange.response_id) or _UNUSED[fmt])
        rows += made
    for row in rows:
        report.rows[row.source] += 1
        if fmt == "kto":
            report.labels["true" if row.record["label"] else "false"] += 1
    return rows, report


# Why a rated exchange gave no row (KTO makes a row of every rated answer).
_UNUSED: dict[ExportFormat, str] = {
    "dpo": "no_correction_or_retry",
    "sft": "down_vote_without_correction",
}


def _kto(prompt: Prompt, answer: str, good: bool) -> dict[str, Any]:
    return {"prompt": prompt, "completion": _assistant(answer), "label": good}


def _dpo(prompt: Prompt, chosen: str, rejected: str) -> dict[str, Any]:
    return {"prompt": prompt, "chosen": _assistant(chosen), "rejected": _assistant(rejected)}


def _sft(prompt: Prompt, answer: str) -> dict[str, Any]:
    return {"messages": [*prompt, *_assistant(answer)]}


def _rows_of(item: _Rated, correction: str | None, fmt: ExportFormat) -> list[Row]:
    """The rows one rated exchange gives by itself (retry pairs aside)."""
    prompt, answer = item.exchange.messages, item.exchange.answer
    vote: Source = "upvoted_answer" if item.up else "downvoted_answer"
    made: list[tuple[dict[str, Any], Source]] = []
    if fmt == "kto":
        made.append((_kto(prompt, answer, item.up), vote))
        if correction is not None:
            made.append((_kto(prompt, correction, True), "correction"))
    elif fmt == "dpo":
        if correction is not None:
            made.append((_dpo(prompt, correction, answer), "correction"))
    else:
        if item.up:
            made.append((_sft(prompt, answer), vote))
        if correction is not None:
            made.append((_sft(prompt, correction), "correction"))
    return [Row(record, source, item.exchange.response_id) for record, source in made]


@dataclass
class _Retries:
    pairs: dict[str, list[Row]] = field(default_factory=dict)
    """DPO rows by the response id of their down-voted (rejected) side."""
    chosen: set[str] = field(default_factory=set)
    """The response ids of the up-voted (chosen) sides."""
    no_pair: dict[str, str] = field(default_factory=dict)
    """Why a down-voted answer whose conversation was retried got no pair."""


def _retry_pairs(exchanges: Sequence[Exchange], rated: dict[str, _Rated]) -> _Retries:
    """The DPO rows that retries give.

    A down-voted answer pairs with the first up-voted answer to the same conversation
    (`prompt_hash`) from the same client key that came after it. Both must be rated: a
    retry nobody rated says nothing about which answer was better.
    """
    threads: dict[tuple[str, str | None], list[Exchange]] = {}
    for exchange in exchanges:  # oldest first
        threads.setdefault((exchange.prompt_hash, exchange.key_hash), []).append(exchange)
    found = _Retries()
    for thread in threads.values():
        for position, exchange in enumerate(thread):
            down = rated.get(exchange.response_id)
            if down is None or down.up:
                continue
            later = [e for e in thread[position + 1 :] if e.created_at > exchange.created_at]
            up = next((rated[e.response_id] for e in later if _is_up(rated, e)), None)
            if up is None:
                if any(e.response_id not in rated for e in later):
                    found.no_pair[exchange.response_id] = "retry_not_rated"
                continue
            if _same(up.exchange.answer, exchange.answer):
                found.no_pair[exchange.response_id] = "retry_same_answer"
                continue
            record = _dpo(exchange.messages, up.exchange.answer, exchange.answer)
            found.pairs[exchange.response_id] = [Row(record, "retry_pair", exchange.response_id)]
            found.chosen.add(up.exchange.response_id)
    return found


def _is_up(rated: dict[str, _Rated], exchange: Exchange) -> bool:
    item = rated.get(exchange.response_id)
    return item is not None and item.up


def _too_few(report: ExportReport, rows: int, kept: int | None = None) -> DataError:
    since = f" since {report.since.isoformat()}" if report.since else ""
    where = f"the feedback of {report.domain}{since}"
    left_out = ", ".join(f"{k} {v}" for k, v in report.dropped.items() if v) or "nothing"
    if kept is None:
        found = f"{where} gives {rows} {report.format} row{'' if rows == 1 else 's'}"
    else:
        found = f"{kept} of the {rows} {report.format} rows from {where} pass the data checks"
    return DataError(
        f"{found}; at least {MIN_ROWS} are needed for train, validation and test splits "
        f"({report.exchanges} exchanges read, {report.rated} rated; left out: {left_out})"
    )


def export_feedback(
    store: FeedbackStore,
    domain: str,
    fmt: ExportFormat,
    out: Path,
    since: datetime | None = None,
    scrub: Guard | None = None,
    progress: Progress | None = None,
    replay: Replay | None = None,
) -> ExportResult:
    """Write a prepared dataset of `fmt` rows from a domain's feedback into `out`.

    `scrub` masks personal data again with its input policy (corrections are typed
    by people; None: no second pass). `replay` (kto only): desirable rows of the data
    prod learnt from, added to the train split (`train/replay.py`). Raises `DataError`
    when fewer than `MIN_ROWS` rows are there, before or after the data checks.
    """
    progress = progress or NullProgress()
    if replay is not None and fmt != "kto":
        raise DataError(f"replay adds unpaired desirable rows: kto only, not {fmt}")
    progress.step(f"reading the feedback of {domain}")
    rows, report = collect_rows(store, domain, fmt, since)
    if len(rows) < MIN_ROWS:
        raise _too_few(report, len(rows))
    # One odd exchange (a tool turn, an image) must not stop an export: invalid rows are
    # dropped, counted and named by response id in the data report. No paraphrases: the
    # export holds what users said and rated, row for row.
    options = PrepareOptions(out=out, format=RECORD_FORMATS[fmt], skip_invalid=True, paraphrases=0)
    # The rows are not scrubbed yet: a private folder (0700), gone when prepared.
    with tempfile.TemporaryDirectory(prefix="lorastack-feedback-") as folder:
        raw = Path(folder) / "feedback.jsonl"
        raw.write_text(
            "".join(json.dumps(row.record, ensure_ascii=False) + "\n" for row in rows),
            encoding="utf-8",
        )
        prepared = prepare_splits([raw], options, scrub, progress)
    if prepared.report.kept < MIN_ROWS:
        raise _too_few(report, len(rows), prepared.report.kept)
    _name_the_rows(prepared, raw, rows, domain)
    if replay is not None:
        report.replay = mix_replay(prepared, replay, scrub, progress)
    report.prepared = prepared.report
    extra = {EXPORT_JSON: report.to_json(), EXPORT_MD: report.to_markdown()}
    written = write_dataset(out, prepared, progress, extra)
    return ExportResult(written, report, prepared.report)


def _name_the_rows(prepared: PreparedSplits, raw: Path, rows: Sequence[Row], domain: str) -> None:
    """The data report names the temporary file's lines: name the exchanges instead."""
    source = f"feedback of {domain}"
    data = prepared.report
    data.sources = [replace(s, path=source) for s in data.sources]
    prefix = f"{raw}:"
    named: list[str] = []
    for problem in data.invalid_examples:
        line, _, rest = problem.removeprefix(prefix).partition(": ")
        if problem.startswith(prefix) and line.isdigit() and 0 < int(line) <= len(rows):
            row = rows[int(line) - 1]
            problem = f"{source}: response {row.response_id} ({row.source}): {rest}"
        named.append(problem)
    data.invalid_examples = named
    data.notes.append(f"rows exported from the {source}: see {EXPORT_MD}")
