"""Reading raw training data: JSONL/JSON, CSV/TSV, Parquet files and `datasets` folders.

`read_rows` returns every record as parsed, each with where it came from, or
why it could not be parsed; nothing is validated here (see `convert`).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lorastack.progress import NullProgress, Progress
from lorastack.train.data.records import DataError


@dataclass(frozen=True)
class Location:
    """Where a record came from: a 1-based line (JSONL), a 1-based data row (CSV,
    header not counted) or a 0-based index (JSON array, Parquet, `datasets`)."""

    source: str
    number: int
    kind: Literal["line", "row", "index"] = "line"

    def __str__(self) -> str:
        if self.kind == "line":
            return f"{self.source}:{self.number}"
        return f"{self.source}:{self.kind} {self.number}"


@dataclass(frozen=True)
class Problem:
    """A record that cannot be used: where it is, which field, and why."""

    location: Location
    message: str
    field: str = ""

    def __str__(self) -> str:
        if self.field:
            return f"{self.location}: {self.field}: {self.message}"
        return f"{self.location}: {self.message}"


@dataclass
class Row:
    """One raw record as read, or why it could not be parsed."""

    location: Location
    value: Any = None
    problem: str | None = None


# -- reading -----------------------------------------------------------------------

_JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
_CSV_SUFFIXES = (".csv", ".tsv")
_PARQUET_SUFFIXES = (".parquet", ".pq")
# CSV columns holding JSON lists (chat records in a spreadsheet).
_JSON_COLUMNS = ("messages", "conversations")
# Python's csv refuses fields over 128 KiB by default; long documents are legitimate.
_CSV_FIELD_LIMIT = 64 * 1024 * 1024


def _read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 text (bad byte at offset {error.start})") from None
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    return text.removeprefix("\ufeff")


def _read_json_lines(path: Path, progress: Progress) -> list[Row]:
    text = _read_text(path)
    source = str(path)
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
        # A JSON array of records (what many exporters write), not JSON lines.
        try:
            items = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{error.lineno}: not valid JSON: {error.msg}") from None
        progress.step(f"reading {path.name}", total=len(items))
        progress.advance(len(items))
        return [Row(Location(source, index, "index"), item) for index, item in enumerate(items)]
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and other line breaks.
    lines = text.split("\n")
    progress.step(f"reading {path.name}", total=len(lines))
    rows: list[Row] = []
    for number, line in enumerate(lines, start=1):
        progress.advance(1)
        if not line.strip():
            continue
        location = Location(source, number)
        try:
            rows.append(Row(location, json.loads(line)))
        except json.JSONDecodeError as error:
            rows.append(
                Row(location, problem=f"not valid JSON: {error.msg} (column {error.colno})")
            )
    return rows


def _read_csv(path: Path, progress: Progress) -> list[Row]:
    text = _read_text(path)
    csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    source = str(path)
    try:
        header = [name.strip() for name in next(reader, [])]
        rows: list[Row] = []
        progress.step(f"reading {path.name}")
        for number, cells in enumerate(reader, start=1):
            progress.advance(1)
            if not any(cell.strip() for cell in cells):
                continue
            location = Location(source, number, "row")
            if len(cells) != len(header):
                rows.append(
                    Row(location, problem=f"expected {len(header)} columns, got {len(cells)}")
                )
                continue
            record: dict[str, Any] = dict(zip(header, cells, strict=True))
            for column in _JSON_COLUMNS:
                if isinstance(record.get(column), str) and record[column].strip():
                    try:
                        record[column] = json.loads(record[column])
                    except json.JSONDecodeError as error:
                        rows.append(Row(location, problem=f"{column}: not valid JSON: {error.msg}"))
                        break
            else:
                rows.append(Row(location, record))
    except csv.Error as error:
        raise DataError(f"{path}: line {reader.line_num}: {error}") from None
    return rows


def _read_parquet(path: Path, progress: Progress) -> list[Row]:
    import pyarrow.parquet as pq  # heavy; only when a Parquet file is given

    try:
        items = pq.read_table(path).to_pylist()
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {path} as Parquet: {error}") from None
    progress.step(f"reading {path.name}", total=len(items))
    progress.advance(len(items))
    source = str(path)
    return [Row(Location(source, index, "index"), item) for index, item in enumerate(items)]


def _read_saved_dataset(path: Path, progress: Progress) -> list[Row]:
    import datasets  # slow to import; only when a `datasets` folder is given

    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as error:
        raise DataError(
            f"{path} is a folder but not a dataset saved with `save_to_disk` ({error})"
        ) from None
    parts: list[tuple[str, Any]]
    if isinstance(loaded, datasets.DatasetDict):
        # Every split of a saved DatasetDict is input: we make our own splits.
        parts = [(f"{path}[{name}]", loaded[name]) for name in loaded]
    else:
        parts = [(str(path), loaded)]
    rows: list[Row] = []
    for source, dataset in parts:
        progress.step(f"reading {Path(source).name}", total=len(dataset))
        for index, item in enumerate(dataset):
            progress.advance(1)
            rows.append(Row(Location(source, index, "index"), item))
    return rows


def read_rows(path: Path, progress: Progress | None = None) -> list[Row]:
    """The raw records of one file or `datasets` folder, each with its location."""
    progress = progress or NullProgress()
    if not path.exists():
        raise DataError(f"cannot read {path}: no such file or folder")
    if path.is_dir():
        return _read_saved_dataset(path, progress)
    suffix = path.suffix.lower()
    if suffix in _JSON_SUFFIXES:
        return _read_json_lines(path, progress)
    if suffix in _CSV_SUFFIXES:
        return _read_csv(path, progress)
    if suffix in _PARQUET_SUFFIXES:
        return _read_parquet(path, progress)
    raise DataError(
        f"cannot read {path}: unknown file type {suffix or '(none)'!r} "
        "(expected .jsonl, .json, .csv, .tsv, .parquet or a `datasets` folder)"
    )
