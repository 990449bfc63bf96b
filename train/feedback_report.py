"""What a feedback export did: `export.json` for machines, `export.md` for people.

Written beside the prepared dataset's own report (`report.json`, `report.md`), which says
what the data checks then did with the rows: this one says where the rows came from and
which feedback gave none, and why.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from lorastack.train.data import DataReport
from lorastack.train.data.records import CanonicalFormat

EXPORT_JSON = "export.json"
EXPORT_MD = "export.md"

Source = Literal["upvoted_answer", "downvoted_answer", "correction", "retry_pair"]
SOURCES: dict[Source, str] = {
    "upvoted_answer": "an up-voted answer",
    "downvoted_answer": "a down-voted answer",
    "correction": "a user's correction",
    "retry_pair": "an up-voted retry over the down-voted answer before it",
}

# What was left out, and what each count counts. Every format reports the first three.
REASONS: dict[str, str] = {
    "no_rating": "exchanges nobody rated",
    "superseded_rating": "ratings replaced by a later rating of the same exchange",
    "correction_same_as_answer": "corrections equal to the answer (whitespace aside)",
    "no_correction_or_retry": "rated exchanges with neither a correction nor a retry pair",
    "retry_not_rated": "down-voted exchanges whose later retries nobody rated",
    "retry_same_answer": "down-voted exchanges whose up-voted retry gave the same answer",
    "down_vote_without_correction": "down-voted exchanges without a correction",
}
_FORMAT_REASONS: dict[str, tuple[str, ...]] = {
    "kto": (),
    "dpo": ("no_correction_or_retry", "retry_not_rated", "retry_same_answer"),
    "sft": ("down_vote_without_correction",),
}


@dataclass(frozen=True)
class ReplaySource:
    """Where a KTO export's replay rows come from: the data prod learnt from, as read."""

    version: str | None = None
    """`DOMAIN@vN` whose training data it is; None: none was found."""
    path: str | None = None
    dataset_sha256: str | None = None
    read: int = 0
    """Records of that data's train split read (never its validation or test split)."""
    not_answers: int = 0
    """Records that are not chats ending in an answer."""
    breaking_rules: int = 0
    """Answers left out for breaking one of prod's brand rules."""


@dataclass
class ReplayReport:
    """What a KTO export replayed of the data prod learnt from (`train/replay.py`)."""

    share: float
    """Replay rows asked for per feedback row of the train split."""
    seed: int
    source: ReplaySource = field(default_factory=ReplaySource)
    dropped_by_checks: dict[str, int] = field(default_factory=dict)
    feedback_duplicates: int = 0
    """Rows left out for the prompt and answer of a feedback row."""
    wanted: int = 0
    added: int = 0
    """Desirable rows added to the train split."""
    unavailable: str = ""
    """Why nothing could be replayed."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "share": self.share,
            "seed": self.seed,
            "version": self.source.version,
            "path": self.source.path,
            "dataset_sha256": self.source.dataset_sha256,
            "read": self.source.read,
            "left_out": {
                "not_answers": self.source.not_answers,
                "breaking_rules": self.source.breaking_rules,
                "data_checks": dict(self.dropped_by_checks),
                "feedback_duplicates": self.feedback_duplicates,
            },
            "wanted": self.wanted,
            "added": self.added,
            "unavailable": self.unavailable or None,
        }

    def note(self) -> str:
        """One line for the data report."""
        if not self.added:
            why = self.unavailable or f"share {self.share:g}"
            return f"replay: no rows of the data prod learnt from were added ({why})"
        source = self.source
        return (
            f"replay: {self.added} desirable rows from the train split of {source.version}'s "
            f"data ({(source.dataset_sha256 or '')[:12]}) added to the train split "
            f"(share {self.share:g}, seed {self.seed}); see export.md"
        )

    def to_markdown(self) -> list[str]:
        lines, source = ["", "## Replay", ""], self.source
        if source.version is None:
            return [*lines, f"Nothing replayed: {self.unavailable}."]
        checks = ", ".join(f"{k} {v}" for k, v in self.dropped_by_checks.items()) or "none"
        lines += [
            f"Desirable rows from the train split of the data **{source.version}** learnt "
            f"from (`{source.path}`, sha256 {(source.dataset_sha256 or '')[:12]}), "
            f"{self.share:g} per feedback row of the train split, drawn with seed "
            f"{self.seed}: **{self.added}** added to the train split only (wanted "
            f"{self.wanted}).",
            "",
            f"Read {source.read}; left out: {source.not_answers} not ending in an answer, "
            f"{source.breaking_rules} breaking a brand rule, {self.feedback_duplicates} equal "
            f"to a feedback row; data checks dropped: {checks}.",
        ]
        if self.unavailable:
            lines += ["", f"Nothing replayed: {self.unavailable}."]
        return lines


@dataclass
class ExportReport:
    """Counts of one export, from the store to the rows handed to the data checks."""

    domain: str
    format: str
    """kto, dpo or sft."""
    record_format: CanonicalFormat
    since: datetime | None
    exchanges: int = 0
    """Exchanges read (rated or not)."""
    rated: int = 0
    ratings: int = 0
    votes: Counter[str] = field(default_factory=Counter)
    """The latest vote of each rated exchange: `up` and `down`."""
    corrections: int = 0
    """Latest ratings with a correction."""
    rows: Counter[str] = field(default_factory=Counter)
    """Rows by source (`SOURCES`)."""
    labels: Counter[str] = field(default_factory=Counter)
    """KTO rows by label (`true`, `false`)."""
    dropped: dict[str, int] = field(default_factory=dict)
    prepared: DataReport | None = None
    """What the data checks then did (set once they ran)."""
    replay: ReplayReport | None = None
    """kto: what was replayed of the data prod learnt from; None: replay was off."""

    def __post_init__(self) -> None:
        names = ("no_rating", "superseded_rating", "correction_same_as_answer")
        self.dropped = {name: 0 for name in (*names, *_FORMAT_REASONS[self.format])}

    def drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "domain": self.domain,
            "format": self.format,
            "record_format": self.record_format,
            "since": self.since.isoformat() if self.since else None,
            "exchanges": {"read": self.exchanges, "rated": self.rated},
            "ratings": {
                "total": self.ratings,
                "latest": {"up": self.votes["up"], "down": self.votes["down"]},
                "corrections": self.corrections,
            },
            "rows": {"total": sum(self.rows.values()), **dict(sorted(self.rows.items()))},
            "dropped": dict(self.dropped),
        }
        if self.format == "kto":
            data["labels"] = {"true": self.labels["true"], "false": self.labels["false"]}
        if self.prepared is not None:
            data["prepared"] = {
                "kept": self.prepared.kept,
                "dropped": {k: v for k, v in self.prepared.dropped.items() if v},
                "splits": dict(self.prepared.splits),
            }
        if self.replay is not None:
            data["replay"] = self.replay.to_dict()
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    def to_markdown(self) -> str:
        window = f"captured since {self.since.isoformat()}" if self.since else "captured"
        lines = [
            "# Feedback export",
            "",
            f"Domain **{self.domain}**, format **{self.format}** (`{self.record_format}` "
            f"records), from every exchange {window}.",
            "",
            f"Exchanges read: {self.exchanges}, rated: {self.rated} ({self.ratings} ratings). "
            f"Latest votes: {self.votes['up']} up, {self.votes['down']} down; "
            f"corrections: {self.corrections}.",
            "",
            "## Rows",
            "",
            "| source | rows |",
            "|---|---|",
            *(
                f"| {SOURCES[source]} | {self.rows[source]} |"
                for source in SOURCES
                if self.rows[source]
            ),
            f"| total | {sum(self.rows.values())} |",
        ]
        if self.format == "kto":
            lines += [
                "",
                f"Labels: {self.labels['true']} desirable (`true`), "
                f"{self.labels['false']} undesirable (`false`).",
            ]
        lines += ["", "## Left out", "", "| reason | count | of |", "|---|---|---|"]
        lines += [
            f"| {reason} | {count} | {REASONS.get(reason, '')} |"
            for reason, count in self.dropped.items()
        ]
        if self.prepared is not None:
            checks = self.prepared
            dropped = ", ".join(f"{k} {v}" for k, v in checks.dropped.items() if v) or "none"
            splits = ", ".join(f"{k} {v}" for k, v in checks.splits.items())
            lines += [
                "",
                "## Data checks",
                "",
                f"Kept {checks.kept} of {checks.read} rows ({splits}); dropped: {dropped}. "
                "The details are in `report.md`.",
            ]
        if self.replay is not None:
            lines += self.replay.to_markdown()
        return "\n".join(lines) + "\n"
