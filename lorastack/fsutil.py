"""Crash-safe file operations and content hashes.

Every folder lorastack hands to another component (a base checkpoint, a
published adapter) appears by one `rename` after its content is on disk, so a
crash leaves either nothing or a complete folder, never a half one that looks
valid.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

_CHUNK = 1 << 20
STAGING_PREFIX = ".staging-"


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    """Hex sha256 of one file, read in chunks; `on_bytes` reports progress."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return digest.hexdigest()


def sha256_tree(root: Path, exclude: frozenset[str] = frozenset()) -> str:
    """Hex sha256 over a folder: every file's relative path and content hash, sorted.

    Files named in `exclude` (at any depth) are left out, e.g. a metadata file
    that itself records the hash.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name not in exclude):
        relative = path.relative_to(root).as_posix()
        digest.update(f"{relative}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every file and folder under `root` to disk."""
    for path in root.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        fsync_dir(folder)


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace `path` with `data` as JSON; readers see the old or the new file, whole."""
    with atomic_file(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, default=str)
        handle.write("\n")


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO[Any]]:
    """A file to write that replaces `path` whole when the block ends (fsynced, renamed in);
    readers see the old or the new file. An exception in the block leaves `path` as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the file from a service user
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


@contextlib.contextmanager
def staging_dir(parent: Path) -> Iterator[Path]:
    """A fresh hidden folder under `parent`, removed on exit unless renamed away."""
    parent.mkdir(parents=True, exist_ok=True)
    path = parent / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex}"
    path.mkdir()
    try:
        yield path
    finally:
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(parent: Path) -> None:
    """Delete staging folders whose creating process is gone (it crashed mid-write)."""
    if not parent.is_dir():
        return
    for path in parent.glob(f"{STAGING_PREFIX}*"):
        pid_text = path.name.removeprefix(STAGING_PREFIX).split("-", 1)[0]
        if not pid_text.isdigit() or not _process_alive(int(pid_text)):
            shutil.rmtree(path, ignore_errors=True)


def remove_tree_atomic(path: Path) -> None:
    """Make `path` vanish in one rename, then delete its content."""
    graveyard = path.with_name(f"{STAGING_PREFIX}{os.getpid()}-removed-{uuid.uuid4().hex}")
    path.rename(graveyard)
    fsync_dir(path.parent)
    shutil.rmtree(graveyard, ignore_errors=True)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock held across processes and threads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
