"""What preparing a dataset produced: the splits, and the report written beside them.

`report.json` is for machines (the dataset's sha256 included), `report.md`
for people: what was read, dropped (and why), kept, split and augmented.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorastack.guardrails.scrub import ScrubReport
from lorastack.train.data.records import CanonicalFormat, InputFormat, Record
from lorastack.train.run import SPLITS, split_file

DROP_REASONS = (
    "invalid",
    "empty",
    "too_long",
    "pii_blocked",
    "duplicate_exact",
    "duplicate_near",
    "duplicate_fuzzy",
)


@dataclass(frozen=True)
class SourceSummary:
    """One input file: its format and how many of its records were read and invalid."""

    path: str
    format: InputFormat | None
    records: int
    """Records read (valid or not)."""
    invalid: int


@dataclass
class DataReport:
    """What `prepare_dataset` read, dropped, kept and wrote."""

    format: CanonicalFormat
    sources: list[SourceSummary]
    read: int
    kept: int
    dropped: dict[str, int]
    splits: dict[str, int]
    augmented: int
    augmented_kinds: dict[str, int]
    stratified: bool
    labels: dict[str, dict[str, int]]
    length_chars: dict[str, float]
    scrub: ScrubReport | None
    policy: str | None
    options: dict[str, Any]
    invalid_examples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sha256: str = ""

    @property
    def duplicates_removed(self) -> int:
        return sum(v for k, v in self.dropped.items() if k.startswith("duplicate_"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "sources": [
                {"path": s.path, "format": s.format, "records": s.records, "invalid": s.invalid}
                for s in self.sources
            ],
            "records": {"read": self.read, "kept": self.kept},
            "dropped": dict(self.dropped),
            "duplicates_removed": self.duplicates_removed,
            "splits": dict(self.splits),
            "augmented": {"total": self.augmented, "kinds": dict(self.augmented_kinds)},
            "stratified": self.stratified,
            "labels": self.labels,
            "length_chars": self.length_chars,
            "pii": {
                "scrubbed": self.scrub is not None,
                "policy": self.policy,
                **(self.scrub.to_dict() if self.scrub is not None else {}),
            },
            "options": self.options,
            "invalid_examples": self.invalid_examples,
            "notes": self.notes,
            "dataset": {"sha256": self.sha256, "files": [split_file(s) for s in SPLITS]},
        }

    def to_markdown(self) -> str:
        lines = [
            "# Dataset report",
            "",
            f"Format: **{self.format}**. Records read: {self.read}, kept: {self.kept}.",
            "",
            "| split | records |",
            "|---|---|",
            *(f"| {name} | {self.splits[name]} |" for name in SPLITS),
        ]
        if self.augmented:
            kinds = ", ".join(f"{k} {v}" for k, v in self.augmented_kinds.items())
            lines += ["", f"Train includes {self.augmented} augmented examples ({kinds})."]
        lines += ["", "## Dropped", "", "| reason | records |", "|---|---|"]
        lines += [f"| {reason} | {count} |" for reason, count in self.dropped.items()]
        lines += ["", f"Duplicates removed: {self.duplicates_removed}."]
        if self.stratified:
            lines += ["", "## Labels (stratified split)", "", "| label | " + " | ".join(SPLITS)]
            lines[-1] += " |"
            lines.append("|---|---|---|---|")
            names = sorted({label for counts in self.labels.values() for label in counts})
            for label in names:
                cells = " | ".join(str(self.labels[s].get(label, 0)) for s in SPLITS)
                lines.append(f"| {_md(label)} | {cells} |")
        stats = self.length_chars
        lines += [
            "",
            "## Length (characters)",
            "",
            f"min {stats['min']:g}, median {stats['median']:g}, max {stats['max']:g}",
            "",
            "## Personal data",
            "",
        ]
        if self.scrub is None:
            lines.append("Not scrubbed (`--no-scrub`).")
        else:
            found = ", ".join(f"{k} {v}" for k, v in sorted(self.scrub.entities.items()))
            lines.append(
                f"Policy `{self.policy}`: {self.scrub.records_changed} records changed, "
                f"{self.scrub.records_dropped} blocked; found: {found or 'nothing'}."
            )
            if self.scrub.vocabulary:
                kept = ", ".join(f"`{name}`" for name in self.scrub.vocabulary)
                lines.append(
                    "Kept as the business's own names (found in many records, so no one "
                    f"customer's data; `--no-vocabulary` masks them): {kept}."
                )
        lines += [
            "",
            "## Sources",
            "",
            "| file | format | records | invalid |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {_md(s.path)} | {s.format or '-'} | {s.records} | {s.invalid} |"
            for s in self.sources
        ]
        if self.invalid_examples:
            lines += ["", "## Invalid records (first ones)", ""]
            lines += [f"- `{problem}`" for problem in self.invalid_examples]
        if self.notes:
            lines += ["", "## Notes", ""]
            lines += [f"- {note}" for note in self.notes]
        lines += ["", f"Dataset sha256 (train, validation, test): `{self.sha256}`", ""]
        return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


@dataclass(frozen=True)
class PrepareResult:
    """A prepared dataset folder and its report."""

    out: Path
    report: DataReport

    @property
    def sha256(self) -> str:
        return self.report.sha256


@dataclass
class PreparedSplits:
    """The three splits in memory, before anything is written."""

    train: list[Record]
    validation: list[Record]
    test: list[Record]
    report: DataReport

    def by_name(self) -> dict[str, list[Record]]:
        return {"train": self.train, "validation": self.validation, "test": self.test}
