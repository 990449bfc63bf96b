"""JSON Lines files given by users: one JSON object per line, each mistake named by line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lorastack.errors import LorastackError


def read_objects(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """Each non-blank line's object with its line number; `LorastackError` for a file that
    cannot be read, a line that is not JSON, or one that is not an object."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise LorastackError(f"cannot read {path}: {error.strerror}") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise LorastackError(f"{path}:{number}: not JSON: {error.msg}") from None
        if not isinstance(record, dict):
            raise LorastackError(f"{path}:{number}: expected a JSON object")
        records.append((number, record))
    return records
