"""Writing a prepared dataset: the splits and reports appear in their folder whole, or not.

The folder is the one `lorastack train` reads and a run copies (`lorastack.train.run`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

from lorastack.fsutil import (
    STAGING_PREFIX,
    fsync_dir,
    fsync_tree,
    remove_stale_staging,
    staging_dir,
)
from lorastack.progress import NullProgress, Progress
from lorastack.train.data.records import DataError, Record
from lorastack.train.data.report import PreparedSplits
from lorastack.train.run import REPORT_JSON, REPORT_MD, dataset_sha256, split_file


def _write_jsonl(path: Path, records: Iterable[Record]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False))
            handle.write("\n")


def _looks_prepared(folder: Path) -> bool:
    return (folder / REPORT_JSON).is_file() or not any(folder.iterdir())


def write_dataset(
    out: Path,
    prepared: PreparedSplits,
    progress: Progress | None = None,
    extra: Mapping[str, str] | None = None,
) -> Path:
    """Write the splits and the report into `out`, which appears complete or not at all.

    Everything is written into a hidden staging folder next to `out` and
    renamed into place; a previous dataset in `out` is replaced in the same
    way. A folder that is not a prepared dataset is never overwritten.
    `extra` maps more file names to their text (another report, written with
    the rest, so that it can never describe a different dataset).
    """
    progress = progress or NullProgress()
    if out.exists() and (not out.is_dir() or not _looks_prepared(out)):
        raise DataError(f"{out} exists and is not a prepared dataset; choose another --out folder")
    parent = out.parent
    remove_stale_staging(parent)  # leftovers of runs that were killed mid-write
    splits = prepared.by_name()
    own = {REPORT_JSON, REPORT_MD, *(split_file(name) for name in splits)}
    for name in extra or {}:
        if Path(name).name != name or name.startswith(".") or name in own:
            raise DataError(f"cannot write an extra file named {name!r} into a dataset")
    progress.step(f"writing {out}", total=sum(len(records) for records in splits.values()))
    with staging_dir(parent) as staging:
        for name, records in splits.items():
            _write_jsonl(staging / split_file(name), records)
            progress.advance(len(records))
        prepared.report.sha256 = dataset_sha256(staging)
        report = json.dumps(prepared.report.to_dict(), indent=2, sort_keys=True, ensure_ascii=False)
        (staging / REPORT_JSON).write_text(report + "\n", encoding="utf-8")
        (staging / REPORT_MD).write_text(prepared.report.to_markdown(), encoding="utf-8")
        for name, text in (extra or {}).items():
            (staging / name).write_text(text, encoding="utf-8")
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
