"""Replay: answers from the data prod learnt from, mixed into a KTO export against forgetting.

KTO from prod on users' thumbs learns what the thumbs say and drifts from what prod knew:
on the held-out harborline brand (`lorastack eval-improve`, docs/training.md) the rated
rule rose from 77% to 100% while fact recall on reworded questions fell from 66% to 55%,
and the quality gate refused the candidate. Replaying old data while learning new data is
the standard remedy for such forgetting in continual learning; KTO makes it simple,
because it takes unpaired rows: the reference answers prod was trained on are good
answers, so they join the export's train split as desirable rows (`label: true`).

Measured, it did not help there: from one start, with the same ratings and settings,
recall fell 11.6 points with one replay row per feedback row and 4.7 without (a run's
recall moves by 2.3 points a fact). So it is off by default (`DEFAULT_REPLAY_SHARE`), an
option (`lorastack improve --replay SHARE`) to measure on other data.

- The data is the prepared dataset the evaluation checks forgetting on
  (`preference_eval.find_original`: found by the dataset hash of the version prod
  descends from), and only its train split: its test split is where forgetting is
  measured, and its validation split what that training stopped on.
- A chat gives the row "its turns before the last answer -> that answer". Answers that
  break one of prod's brand rules are left out: a desirable row must be one the gateway
  would pass, and a rule the users' thumbs teach must not be taught the other way.
- The rows then go through the data checks (`prepare_splits`: validation, normalisation,
  scrubbing again, deduplication) like the feedback; rows with the prompt and answer of
  a feedback row (of any split) are dropped: users' ratings win, and the held-out
  feedback stays held out.
- `share` replay rows per feedback row of the train split (at most what is there),
  drawn with `seed`, then the train split shuffled with it: the same feedback and data
  give the same dataset.

What went in is recorded in the export's `export.json` / `export.md` and in the data
report's notes (which a run copies with the splits). DPO trains on pairs and gets no
replay rows.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from lorastack.guardrails.guard import Guard
from lorastack.manifest import AdapterManifest
from lorastack.progress import NullProgress, Progress
from lorastack.registry import AdapterRegistry
from lorastack.rules import BrandRule
from lorastack.train.data import DataError, PreparedSplits, PrepareOptions, prepare_splits
from lorastack.train.data.records import Record
from lorastack.train.feedback_report import ReplayReport, ReplaySource
from lorastack.train.preference_eval import find_original
from lorastack.train.run import load_splits

DEFAULT_REPLAY_SHARE = 0.0
"""Replay rows per feedback row of the train split: none by default, as one per feedback
row lost more fact recall than none on harborline (docs/training.md, replay)."""
DEFAULT_REPLAY_SEED = 42
"""The draw of the replay rows and the shuffle of the mixed train split."""


@dataclass(frozen=True)
class ReplayOptions:
    """How much of prod's data a KTO export replays (`share` 1: one row per feedback row)."""

    share: float = DEFAULT_REPLAY_SHARE
    """Replay rows per feedback row of the train split; 0: none."""
    seed: int = DEFAULT_REPLAY_SEED

    def __post_init__(self) -> None:
        if not math.isfinite(self.share) or self.share < 0:
            raise DataError(f"replay share must be 0 or more, got {self.share}")


@dataclass(frozen=True)
class Replay:
    """The rows prod's data offers for replay, where they come from, and how many to use."""

    options: ReplayOptions
    rows: list[dict[str, Any]] = field(default_factory=list)
    """Desirable KTO rows, in the order of the train split."""
    source: ReplaySource = field(default_factory=ReplaySource)
    unavailable: str = ""
    """Why there are no rows: the data was not found, or is not chats."""
    system_prompt: str = ""
    """prod's brand voice: added to prompts without a system message, as the feedback's
    prompts have it (and training would add it)."""

    def report(self) -> ReplayReport:
        """The report of this replay before any row is mixed in."""
        return ReplayReport(
            self.options.share, self.options.seed, self.source, unavailable=self.unavailable
        )


def replay_rows(
    records: list[dict[str, Any]], rules: list[BrandRule]
) -> tuple[list[dict[str, Any]], int, int]:
    """Desirable KTO rows from chat records: the turns before the last answer, and it.

    Returns the rows, how many records are not chats ending in an answer, and how many
    answers break one of `rules`.
    """
    rows: list[dict[str, Any]] = []
    not_answers = breaking = 0
    for record in records:
        messages = record.get("messages")
        if (
            not isinstance(messages, list)
            or len(messages) < 2
            or not isinstance(messages[-1], dict)
            or messages[-1].get("role") != "assistant"
            or not isinstance(messages[-1].get("content"), str)
        ):
            not_answers += 1
            continue
        answer = messages[-1]
        if not all(rule.passes(answer["content"]) for rule in rules):
            breaking += 1
            continue
        completion = [{"role": "assistant", "content": answer["content"]}]
        rows.append({"prompt": messages[:-1], "completion": completion, "label": True})
    return rows, not_answers, breaking


def load_replay(
    start: AdapterManifest,
    registry: AdapterRegistry,
    runs_dir: Path,
    options: ReplayOptions | None = None,
) -> Replay:
    """The replay rows of the data `start` (prod) learnt from, checked by its rules.

    The data is looked for as `lorastack eval` looks for it; when it is not there, or is
    not chats, the replay holds no rows and says why (the loop goes on without it).
    """
    options = options or ReplayOptions()
    original, where, reason = find_original(start, registry, runs_dir)
    if original is None or where is None:
        return Replay(options, unavailable=reason)
    split = load_splits(where)["train"]
    rows, not_answers, breaking = replay_rows(split, list(start.rules))
    source = ReplaySource(
        version=f"{original.domain}@v{original.version}",
        path=str(where),
        dataset_sha256=original.dataset_sha256,
        read=len(split),
        not_answers=not_answers,
        breaking_rules=breaking,
    )
    return Replay(
        options,
        rows,
        source,
        system_prompt=start.system_prompt,
        unavailable=""
        if rows
        else f"no chat of its train split ends in an answer that follows {start.domain}'s rules",
    )


def _pair_key(record: Record | dict[str, Any]) -> str:
    """A row's prompt and answer, whatever its label."""
    row = cast(dict[str, Any], record)
    return json.dumps([row.get("prompt"), row.get("completion")], sort_keys=True)


def mix_replay(
    prepared: PreparedSplits,
    replay: Replay,
    scrub: Guard | None = None,
    progress: Progress | None = None,
) -> ReplayReport:
    """Add `replay`'s rows to the train split of a prepared KTO export, in place.

    The rows go through the data checks first (`scrub` as for the feedback); the mixed
    train split is shuffled with the replay's seed. Returns what went in.
    """
    progress = progress or NullProgress()
    report = replay.report()
    feedback_train = len(prepared.train)
    report.wanted = min(round(replay.options.share * feedback_train), len(replay.rows))
    if not report.wanted:
        return report
    progress.step(f"checking {len(replay.rows)} replay rows of {replay.source.version}'s data")
    with tempfile.TemporaryDirectory(prefix="lorastack-replay-") as folder:
        raw = Path(folder) / "replay.jsonl"
        raw.write_text(
            "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in replay.rows),
            encoding="utf-8",
        )
        options = PrepareOptions(
            out=Path(folder) / "prepared",
            format="unpaired-preference",
            split=(1.0, 0.0, 0.0),
            seed=replay.options.seed,
            skip_invalid=True,
            stratify=False,
            system_prompt=replay.system_prompt or None,
            paraphrases=0,
        )
        try:
            checked = prepare_splits([raw], options, scrub, progress)
        except DataError as error:  # every row dropped: replay nothing, say why
            report.unavailable = f"no replay row passed the data checks: {error}"
            return report
    report.dropped_by_checks = {k: v for k, v in checked.report.dropped.items() if v}
    feedback = {_pair_key(r) for split in prepared.by_name().values() for r in split}
    eligible = [r for r in checked.train if _pair_key(r) not in feedback]
    report.feedback_duplicates = len(checked.train) - len(eligible)
    draw = random.Random(replay.options.seed)
    chosen = draw.sample(eligible, min(report.wanted, len(eligible)))
    report.added = len(chosen)
    # Shuffled together: KTO's KL term compares each answer with the other prompts of its
    # batch, and each batch should hold both feedback and replay rows.
    mixed = [*prepared.train, *chosen]
    draw.shuffle(mixed)
    prepared.train = mixed
    data = prepared.report
    data.splits = {**data.splits, "train": len(mixed)}
    data.notes.append(report.note())
    return report
