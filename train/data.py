"""Training data preparation: a business's raw data in, clean train/validation/test splits out.

`prepare_dataset` runs the whole pipeline; each stage is a plain function too:

1. read JSONL/JSON, CSV, Parquet files and `datasets` folders (`read_rows`);
2. detect each file's record format (`detect_format`) and convert every record
   to one canonical format, reporting each problem with file, line and field
   (`convert_record`): OpenAI chat `messages`, `prompt`/`completion` or `text`
   (Alpaca becomes prompt/completion, ShareGPT becomes messages);
3. normalise whitespace (`normalize_text`), drop empty and over-long records;
4. scrub personal data with the guard's input policy (the placeholders the
   gateway will use at serving time);
5. add the brand-voice system prompt to chats that have none;
6. remove exact, near-exact and (optionally) MinHash near duplicates;
7. split deterministically, stratified by label for classification data;
8. augment the train split only (`lorastack.train.augment`);
9. write the splits and a report into a new folder, atomically.

The output folder holds `train.jsonl`, `validation.jsonl`, `test.jsonl`,
`report.json` (with the dataset's sha256 over the three splits) and `report.md`.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import random
import re
import shutil
import statistics
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict, cast

import numpy as np

from lorastack.errors import LorastackError
from lorastack.fsutil import (
    STAGING_PREFIX,
    fsync_dir,
    fsync_tree,
    remove_stale_staging,
    sha256_file,
    staging_dir,
)
from lorastack.guardrails.guard import Guard
from lorastack.guardrails.scrub import ScrubReport, scrub_record
from lorastack.progress import NullProgress, Progress
from lorastack.train.augment import augment_messages

# -- record types ------------------------------------------------------------------

Role = Literal["system", "user", "assistant"]
ROLES: tuple[Role, ...] = ("system", "user", "assistant")

InputFormat = Literal["messages", "prompt-completion", "text", "alpaca", "sharegpt"]
INPUT_FORMATS: tuple[InputFormat, ...] = (
    "messages",
    "prompt-completion",
    "text",
    "alpaca",
    "sharegpt",
)
CanonicalFormat = Literal["messages", "prompt-completion", "text"]
CANONICAL: dict[InputFormat, CanonicalFormat] = {
    "messages": "messages",
    "sharegpt": "messages",
    "prompt-completion": "prompt-completion",
    "alpaca": "prompt-completion",
    "text": "text",
}

SPLITS = ("train", "validation", "test")
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
DROP_REASONS = (
    "invalid",
    "empty",
    "too_long",
    "pii_blocked",
    "duplicate_exact",
    "duplicate_near",
    "duplicate_fuzzy",
)
MAX_PROBLEMS_SHOWN = 20
# Stratify when completions look like labels: few distinct values, each seen twice or more.
MAX_STRATIFY_LABELS = 20


class Message(TypedDict):
    role: Role
    content: str


class ChatRecord(TypedDict):
    """OpenAI-style chat: TRL's conversational language-modelling format."""

    messages: list[Message]


class PromptCompletionRecord(TypedDict):
    """Both strings, or (TRL's conversational form) both lists of messages."""

    prompt: str | list[Message]
    completion: str | list[Message]


class TextRecord(TypedDict):
    """Unsupervised domain text."""

    text: str


Record = ChatRecord | PromptCompletionRecord | TextRecord


class DataError(LorastackError):
    """The input data cannot be prepared; the message says where and why."""


class InvalidRecord(DataError):
    """One record does not match its format; `field` names the offending value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# -- locations and problems --------------------------------------------------------


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


@dataclass
class Example:
    """A valid record in canonical form, and where it came from."""

    location: Location
    record: Record


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


# -- format detection and validation -----------------------------------------------


def detect_format(record: Mapping[str, Any]) -> InputFormat | None:
    """The format a record's fields suggest, or None."""
    keys = set(record)
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if {"prompt", "completion"} <= keys:
        return "prompt-completion"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    if "text" in keys:
        return "text"
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _show(value: Any) -> str:
    """A short rendering of a bad value for a message (repr for strings, JSON otherwise)."""
    shown = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return shown if len(shown) <= 40 else shown[:37] + "..."


_MISSING = object()


def _required(record: Mapping[str, Any], key: str, fmt: InputFormat) -> Any:
    if key in record:
        return record[key]
    other = detect_format(record)
    hint = f" (this record looks like {other}, the file's records are {fmt})" if other else ""
    raise InvalidRecord(key, f"missing{hint}")


def _string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidRecord(field, f"expected a string, got {_json_type(value)}")
    return value


def _content(value: Any, field: str) -> str:
    if value is _MISSING:
        raise InvalidRecord(field, "missing")
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        # OpenAI content parts: only text can be trained on here.
        texts: list[str] = []
        for index, part in enumerate(value):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text" or not isinstance(part.get("text"), str):
                raise InvalidRecord(
                    f"{field}[{index}]", f"only text parts are supported, got {_show(part)}"
                )
            texts.append(part["text"])
        return "\n".join(texts)
    raise InvalidRecord(field, f"expected a string, got {_json_type(value)}")


_OPENAI_ROLES: dict[str, Role] = {"system": "system", "user": "user", "assistant": "assistant"}
_SHAREGPT_ROLES: dict[str, Role] = {"system": "system", "human": "user", "gpt": "assistant"}


def _messages(
    value: Any, field: str, roles: Mapping[str, Role], role_key: str, content_key: str
) -> list[Message]:
    if not isinstance(value, list):
        raise InvalidRecord(field, f"expected a list of messages, got {_json_type(value)}")
    messages: list[Message] = []
    for index, item in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(item, dict):
            raise InvalidRecord(where, f"expected an object, got {_json_type(item)}")
        if role_key not in item:
            raise InvalidRecord(f"{where}.{role_key}", "missing")
        role = item[role_key]
        if not isinstance(role, str) or role not in roles:
            raise InvalidRecord(
                f"{where}.{role_key}", f"expected one of {', '.join(roles)}, got {_show(role)}"
            )
        content = _content(item.get(content_key, _MISSING), f"{where}.{content_key}")
        messages.append({"role": roles[role], "content": content})
    return messages


def _check_system_first(messages: Sequence[Message], field: str, role_key: str) -> None:
    for index, message in enumerate(messages):
        if message["role"] == "system" and index > 0:
            # Most chat templates reject (or silently drop) a system turn elsewhere.
            raise InvalidRecord(
                f"{field}[{index}].{role_key}", "a system message may only come first"
            )


def _check_chat(
    messages: Sequence[Message], field: str, roles: Mapping[str, Role], role_key: str
) -> None:
    names = {role: name for name, role in roles.items()}

    def turn(role: Role) -> str:  # "assistant", or "assistant ('gpt')" for ShareGPT
        return role if names[role] == role else f"{role} ({names[role]!r})"

    _check_system_first(messages, field, role_key)
    present = {m["role"] for m in messages}
    for needed in ("user", "assistant"):
        if needed not in present:
            raise InvalidRecord(field, f"a chat needs at least one {turn(needed)} turn")
    last = messages[-1]["role"]
    if last != "assistant":
        raise InvalidRecord(
            f"{field}[{len(messages) - 1}].{role_key}",
            f"a chat must end with an {turn('assistant')} turn, got {_show(names[last])}",
        )


def convert_record(value: Any, fmt: InputFormat) -> Record:
    """`value` (a parsed JSON object or table row) in canonical form.

    Alpaca records become prompt/completion, ShareGPT ones become messages.
    Fields other than the format's own are left out, so that every record of
    a dataset has the same shape. Raises `InvalidRecord` naming the field.
    """
    if not isinstance(value, dict):
        raise InvalidRecord("record", f"expected a JSON object, got {_json_type(value)}")
    if fmt == "messages":
        messages = _messages(
            _required(value, "messages", fmt), "messages", _OPENAI_ROLES, "role", "content"
        )
        _check_chat(messages, "messages", _OPENAI_ROLES, "role")
        return {"messages": messages}
    if fmt == "sharegpt":
        turns = _messages(
            _required(value, "conversations", fmt),
            "conversations",
            _SHAREGPT_ROLES,
            "from",
            "value",
        )
        _check_chat(turns, "conversations", _SHAREGPT_ROLES, "from")
        return {"messages": turns}
    if fmt == "prompt-completion":
        return _prompt_completion(value)
    if fmt == "alpaca":
        instruction = _string(_required(value, "instruction", fmt), "instruction")
        extra = value.get("input")
        extra = "" if extra is None else _string(extra, "input")
        output = _string(_required(value, "output", fmt), "output")
        prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        return {"prompt": prompt, "completion": output}
    return {"text": _string(_required(value, "text", fmt), "text")}


def _prompt_completion(value: Mapping[str, Any]) -> PromptCompletionRecord:
    prompt = _required(value, "prompt", "prompt-completion")
    completion = _required(value, "completion", "prompt-completion")
    if isinstance(prompt, str):
        if not isinstance(completion, str):
            raise InvalidRecord(
                "completion", f"expected a string like the prompt, got {_json_type(completion)}"
            )
        return {"prompt": prompt, "completion": completion}
    if not isinstance(prompt, list):
        raise InvalidRecord(
            "prompt", f"expected a string or a list of messages, got {_json_type(prompt)}"
        )
    prompt_messages = _messages(prompt, "prompt", _OPENAI_ROLES, "role", "content")
    if not isinstance(completion, list):
        raise InvalidRecord(
            "completion",
            f"expected a list of messages like the prompt, got {_json_type(completion)}",
        )
    completion_messages = _messages(completion, "completion", _OPENAI_ROLES, "role", "content")
    _check_system_first(prompt_messages, "prompt", "role")
    if not any(m["role"] == "user" for m in prompt_messages):
        raise InvalidRecord("prompt", "needs at least one user turn")
    if not completion_messages:
        raise InvalidRecord("completion", "needs at least one assistant turn")
    for index, message in enumerate(completion_messages):
        if message["role"] != "assistant":
            raise InvalidRecord(
                f"completion[{index}].role", f"expected 'assistant', got {_show(message['role'])}"
            )
    return {"prompt": prompt_messages, "completion": completion_messages}


# -- record helpers ------------------------------------------------------------------


def record_format(record: Record) -> CanonicalFormat:
    if "messages" in record:
        return "messages"
    if "text" in record:
        return "text"
    return "prompt-completion"


def _map_messages(messages: Sequence[Message], transform: Callable[[str], str]) -> list[Message]:
    return [{"role": m["role"], "content": transform(m["content"])} for m in messages]


def map_texts(record: Record, transform: Callable[[str], str]) -> Record:
    """A copy of `record` with `transform` applied to every text it holds."""
    kind = record_format(record)
    if kind == "messages":
        return {"messages": _map_messages(cast(ChatRecord, record)["messages"], transform)}
    if kind == "text":
        return {"text": transform(cast(TextRecord, record)["text"])}
    pair = cast(PromptCompletionRecord, record)
    prompt, completion = pair["prompt"], pair["completion"]
    return {
        "prompt": transform(prompt)
        if isinstance(prompt, str)
        else _map_messages(prompt, transform),
        "completion": transform(completion)
        if isinstance(completion, str)
        else _map_messages(completion, transform),
    }


def record_turns(record: Record) -> list[tuple[str, str]]:
    """(role, text) for every text of a record; prompt/completion strings use those names."""
    kind = record_format(record)
    if kind == "messages":
        return [(m["role"], m["content"]) for m in cast(ChatRecord, record)["messages"]]
    if kind == "text":
        return [("text", cast(TextRecord, record)["text"])]
    pair = cast(PromptCompletionRecord, record)
    turns: list[tuple[str, str]] = []
    for name in ("prompt", "completion"):
        part = pair["prompt"] if name == "prompt" else pair["completion"]
        if isinstance(part, str):
            turns.append((name, part))
        else:
            turns.extend((m["role"], m["content"]) for m in part)
    return turns


def record_chars(record: Record) -> int:
    """Characters of text in a record (roles and JSON syntax not counted)."""
    return sum(len(text) for _, text in record_turns(record))


def _without_empty_system(record: Record) -> Record:
    def keep(messages: list[Message]) -> list[Message]:
        return [m for m in messages if m["role"] != "system" or m["content"]]

    kind = record_format(record)
    if kind == "messages":
        return {"messages": keep(cast(ChatRecord, record)["messages"])}
    if kind == "prompt-completion":
        pair = cast(PromptCompletionRecord, record)
        if isinstance(pair["prompt"], list):
            return {"prompt": keep(pair["prompt"]), "completion": pair["completion"]}
    return record


def is_empty(record: Record) -> bool:
    """True when any text a model would learn from or answer to is empty."""
    return any(not text for role, text in record_turns(record) if role != "system")


def add_system_prompt(record: Record, system_prompt: str) -> Record:
    """Chats (and conversational prompts) without a system message get `system_prompt` first."""
    system: Message = {"role": "system", "content": system_prompt}
    kind = record_format(record)
    if kind == "messages":
        messages = cast(ChatRecord, record)["messages"]
        if messages and messages[0]["role"] != "system":
            return {"messages": [system, *messages]}
    elif kind == "prompt-completion":
        pair = cast(PromptCompletionRecord, record)
        prompt = pair["prompt"]
        if isinstance(prompt, list) and prompt and prompt[0]["role"] != "system":
            return {"prompt": [system, *prompt], "completion": pair["completion"]}
    return record


def _is_conversational(record: Record) -> bool:
    """A prompt/completion record made of message lists (one shape per dataset)."""
    return record_format(record) == "prompt-completion" and isinstance(
        cast(PromptCompletionRecord, record)["prompt"], list
    )


def record_label(record: Record) -> str | None:
    """The completion as a label (prompt/completion records only)."""
    if record_format(record) != "prompt-completion":
        return None
    completion = cast(PromptCompletionRecord, record)["completion"]
    if isinstance(completion, str):
        return completion
    return "\n".join(m["content"] for m in completion)


# -- cleaning ----------------------------------------------------------------------

_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_LINE_BREAKS = str.maketrans({"\r": "\n", "\u2028": "\n", "\u2029": "\n", "\x85": "\n"})


def normalize_text(text: str) -> str:
    """NFC; spaces and tabs collapsed; lines stripped; at most one blank line in a row."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n")).translate(_LINE_BREAKS)
    lines = [_HORIZONTAL_SPACE.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


# -- duplicates --------------------------------------------------------------------

_NOT_WORD = re.compile(r"[^\w\s]|_")


def _loose(text: str) -> str:
    """Case, punctuation, symbols and whitespace ignored: trivial edits give the same key."""
    return " ".join(_NOT_WORD.sub("", text.casefold()).split())


def exact_key(record: Record) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False)


def near_key(record: Record) -> str:
    return "\x1f".join(f"{role}\x1e{_loose(text)}" for role, text in record_turns(record))


_SHINGLE_WORDS = 3
_PERMUTATIONS = 64
_BANDS = 16  # 16 bands of 4 rows: pairs from Jaccard ~0.5 up become candidates
_PRIME = np.uint64(4294967291)  # largest prime below 2**32
# Fixed (not the user's seed): candidates are verified exactly, so the seed cannot matter.
_PARAMS = np.random.default_rng(20240917).integers(1, 2**31 - 1, size=(2, _PERMUTATIONS))
_A = _PARAMS[0].astype(np.uint64)
_B = _PARAMS[1].astype(np.uint64)


def shingles(record: Record) -> frozenset[str]:
    """Word 3-grams of a record's loose text, each turn tagged with its role."""
    words: list[str] = []
    for role, text in record_turns(record):
        words.append(f"<{role}>")
        words.extend(_loose(text).split())
    if len(words) <= _SHINGLE_WORDS:
        return frozenset([" ".join(words)])
    return frozenset(
        " ".join(words[i : i + _SHINGLE_WORDS]) for i in range(len(words) - _SHINGLE_WORDS + 1)
    )


def _minhash(items: Iterable[str]) -> np.ndarray[Any, np.dtype[np.uint64]]:
    # blake2b, not hash(): Python's string hash changes from one process to the next.
    hashes = np.array(
        [
            int.from_bytes(hashlib.blake2b(item.encode(), digest_size=4).digest(), "little")
            for item in items
        ],
        dtype=np.uint64,
    )
    # a < 2**31 and hash < 2**32, so a * hash + b stays below 2**64.
    values = (_A[:, None] * hashes[None, :] + _B[:, None]) % _PRIME
    return cast(np.ndarray[Any, np.dtype[np.uint64]], values.min(axis=1))


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def fuzzy_duplicates(records: Sequence[Record], threshold: float) -> list[bool]:
    """For each record, whether an earlier kept one has word-shingle Jaccard >= threshold.

    MinHash with banded locality-sensitive hashing finds candidate pairs
    without comparing every pair; each candidate is then checked exactly.
    """
    rows = _PERMUTATIONS // _BANDS
    buckets: list[dict[bytes, list[int]]] = [{} for _ in range(_BANDS)]
    sets: list[frozenset[str]] = []
    duplicate: list[bool] = []
    for index, record in enumerate(records):
        items = shingles(record)
        sets.append(items)
        signature = _minhash(sorted(items))
        keys = [signature[band * rows : (band + 1) * rows].tobytes() for band in range(_BANDS)]
        candidates = sorted(
            {other for band, key in enumerate(keys) for other in buckets[band].get(key, [])}
        )
        if any(_jaccard(items, sets[other]) >= threshold for other in candidates):
            duplicate.append(True)
            continue
        duplicate.append(False)
        for band, key in enumerate(keys):
            buckets[band].setdefault(key, []).append(index)
    return duplicate


# -- splitting ---------------------------------------------------------------------


def parse_split(text: str) -> tuple[float, float, float]:
    """ "0.8,0.1,0.1" (or percentages, "80,10,10") as three fractions summing to 1."""
    try:
        parts = [float(part) for part in text.split(",")]
    except ValueError:
        raise DataError(f"split {text!r}: expected three numbers like 0.8,0.1,0.1") from None
    if len(parts) != 3:
        raise DataError(f"split {text!r}: expected three numbers (train, validation, test)")
    total = sum(parts)
    if math.isclose(total, 100, abs_tol=1e-6):
        parts = [part / 100 for part in parts]
    train, validation, test = parts
    return (train, validation, test)


def _check_fractions(fractions: tuple[float, float, float]) -> None:
    if any(not math.isfinite(f) or f < 0 for f in fractions):
        raise DataError(f"split {fractions}: fractions must be non-negative numbers")
    if not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise DataError(f"split {fractions}: fractions must add up to 1")
    if fractions[0] <= 0:
        raise DataError("split: the train fraction must be above 0")


def split_sizes(count: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Train, validation and test sizes for `count` records.

    Train is never empty; with 3 records or more, validation and test get at
    least one each when their fraction is above 0, so a tiny dataset still has
    something to evaluate on.
    """
    _, validation_fraction, test_fraction = fractions
    validation = math.floor(count * validation_fraction + 0.5)
    test = math.floor(count * test_fraction + 0.5)
    if count >= 3:
        validation = max(validation, 1 if validation_fraction > 0 else 0)
        test = max(test, 1 if test_fraction > 0 else 0)
    while count - validation - test < 1 and (validation or test):
        if test >= validation:
            test -= 1
        else:
            validation -= 1
    return count - validation - test, validation, test


def stratify_labels(records: Sequence[Record]) -> list[str] | None:
    """Each record's label when the data is classification-like, else None.

    Classification-like: prompt/completion records whose completions take at
    most `MAX_STRATIFY_LABELS` distinct values, each at least twice.
    """
    labels = [record_label(record) for record in records]
    if not labels or any(label is None for label in labels):
        return None
    counts = Counter(cast(list[str], labels))
    if len(counts) > MAX_STRATIFY_LABELS or min(counts.values()) < 2:
        return None
    return cast(list[str], labels)


def split_indices(
    count: int,
    fractions: tuple[float, float, float],
    seed: int,
    labels: Sequence[str] | None = None,
) -> tuple[list[int], list[int], list[int]]:
    """Deterministic train/validation/test positions of `count` records.

    With labels, each label's records are shuffled and spread evenly over one
    ordering (record j of n gets position (j + 0.5) / n), so every slice of it
    holds each label in proportion; validation and test are the first slices.
    """
    rng = random.Random(seed)
    _, validation_size, test_size = split_sizes(count, fractions)
    if labels is None:
        order = list(range(count))
        rng.shuffle(order)
    else:
        groups: dict[str, list[int]] = {}
        for index, label in enumerate(labels):
            groups.setdefault(label, []).append(index)
        keyed: list[tuple[float, float, int]] = []
        for label in sorted(groups):
            members = groups[label]
            rng.shuffle(members)
            tiebreak = rng.random()  # labels at the same position take turns at random
            keyed.extend(
                ((j + 0.5) / len(members), tiebreak, index) for j, index in enumerate(members)
            )
        order = [index for *_, index in sorted(keyed)]
    validation = order[:validation_size]
    test = order[validation_size : validation_size + test_size]
    train = order[validation_size + test_size :]
    for part in (train, validation, test):
        rng.shuffle(part)
    return train, validation, test


# -- options, report, result ----------------------------------------------------------


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
    """Up to this many augmented variants per train chat."""

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in INPUT_FORMATS:
            raise DataError(f"format {self.format!r}: expected one of {', '.join(INPUT_FORMATS)}")
        _check_fractions(self.split)
        if self.max_chars < 1:
            raise DataError("max_chars must be at least 1")
        if self.augment < 0:
            raise DataError("augment must be 0 or more")
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
        }


@dataclass(frozen=True)
class SourceSummary:
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
            "dataset": {"sha256": self.sha256, "files": [f"{s}.jsonl" for s in SPLITS]},
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
        "expected messages, prompt+completion, text, instruction+output (Alpaca) or "
        "conversations (ShareGPT); pass --format to force one"
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
                kind = _json_type(row.value)
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
        if record_format(example.record) == "prompt-completion":
            shapes.setdefault(_is_conversational(example.record), example.location)
    if len(shapes) > 1:
        raise DataError(
            "cannot mix plain prompt/completion strings "
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
        record = _without_empty_system(map_texts(example.record, normalize_text))
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
        for example in cleaned:
            progress.advance(1)
            result = scrub_record(dict(example.record), guard, scrub_report)
            if result is None:
                dropped["pii_blocked"] += 1
            else:
                scrubbed.append(Example(example.location, cast(Record, result)))
        cleaned = scrubbed

    system_prompt = normalize_text(options.system_prompt) if options.system_prompt else None
    if system_prompt:
        # Chats and TRL's conversational prompts have a place for it; plain strings do not.
        if fmt == "messages" or (cleaned and _is_conversational(cleaned[0].record)):
            cleaned = [
                Example(e.location, add_system_prompt(e.record, system_prompt)) for e in cleaned
            ]
        else:
            notes.append(f"the system prompt applies to chat records only; ignored for {fmt}")

    progress.step("removing duplicates", total=len(cleaned))
    kept = _deduplicate(cleaned, options.near_dup_threshold, dropped)
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
    if options.augment:
        if fmt == "messages":
            train, augmented, kinds = _augment(train, options, system_prompt)
        else:
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


def _deduplicate(
    examples: Sequence[Example], threshold: float | None, dropped: Counter[str]
) -> list[Example]:
    """Keep the first of each group of duplicates, in input order."""
    exact: set[str] = set()
    near: set[str] = set()
    kept: list[Example] = []
    for example in examples:
        key = exact_key(example.record)
        if key in exact:
            dropped["duplicate_exact"] += 1
            continue
        exact.add(key)
        loose = near_key(example.record)
        if loose in near:
            dropped["duplicate_near"] += 1
            continue
        near.add(loose)
        kept.append(example)
    if threshold is not None:
        flags = fuzzy_duplicates([e.record for e in kept], threshold)
        dropped["duplicate_fuzzy"] += sum(flags)
        kept = [e for e, duplicate in zip(kept, flags, strict=True) if not duplicate]
    return kept


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
        for variant in augment_messages(messages, options.augment, rng, system_prompt):
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


# -- writing -------------------------------------------------------------------------


def dataset_sha256(folder: Path) -> str:
    """Hex sha256 over the three split files of a prepared dataset.

    The same value as `lorastack.fsutil.sha256_tree(folder, exclude=...)` over
    a folder holding only the split files, so a manifest can recompute it.
    """
    digest = hashlib.sha256()
    for name in sorted(f"{split}.jsonl" for split in SPLITS):
        digest.update(f"{name}\0{sha256_file(folder / name)}\n".encode())
    return digest.hexdigest()


def _write_jsonl(path: Path, records: Iterable[Record]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False))
            handle.write("\n")


def _looks_prepared(folder: Path) -> bool:
    return (folder / REPORT_JSON).is_file() or not any(folder.iterdir())


def write_dataset(out: Path, prepared: PreparedSplits, progress: Progress | None = None) -> Path:
    """Write the splits and the report into `out`, which appears complete or not at all.

    Everything is written into a hidden staging folder next to `out` and
    renamed into place; a previous dataset in `out` is replaced in the same
    way. A folder that is not a prepared dataset is never overwritten.
    """
    progress = progress or NullProgress()
    if out.exists() and (not out.is_dir() or not _looks_prepared(out)):
        raise DataError(f"{out} exists and is not a prepared dataset; choose another --out folder")
    parent = out.parent
    remove_stale_staging(parent)  # leftovers of runs that were killed mid-write
    splits = prepared.by_name()
    progress.step(f"writing {out}", total=sum(len(records) for records in splits.values()))
    with staging_dir(parent) as staging:
        for name, records in splits.items():
            _write_jsonl(staging / f"{name}.jsonl", records)
            progress.advance(len(records))
        prepared.report.sha256 = dataset_sha256(staging)
        report = json.dumps(prepared.report.to_dict(), indent=2, sort_keys=True, ensure_ascii=False)
        (staging / REPORT_JSON).write_text(report + "\n", encoding="utf-8")
        (staging / REPORT_MD).write_text(prepared.report.to_markdown(), encoding="utf-8")
        fsync_tree(staging)
        _swap_into_place(staging, out)
    return out


def _swap_into_place(staging: Path, out: Path) -> None:
    old: Path | None = None
    if out.exists():
        old = out.with_name(f"{STAGING_PREFIX}{os.getpid()}-replaced-{uuid.uuid4().hex}")
        out.rename(old)
    try:
        staging.rename(out)
    except OSError:
        if old is not None:  # put the previous dataset back
            with contextlib.suppress(OSError):
                old.rename(out)
        raise
    fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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


def read_jsonl_records(path: Path) -> list[dict[str, Any]]:
    """The records of one prepared split file."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
