"""A content-addressed store for adapter files: each file's bytes kept once, under their
sha256 hex digest, in a local folder, a shared filesystem (NFS) or an object store.

Blobs live under the store's root as `sha256/<first two hex>/<digest>`. Storing is
idempotent (a blob already there is not sent again) and atomic (no reader sees a partial
blob); fetching verifies the bytes against their name while it writes them, so a blob
damaged or tampered with in storage never reaches an adapter folder.

A plain path or `file://` URL is a folder (`LocalBlobStore`); any other URL (`s3://bucket/
prefix`, `gs://`, `az://`, `memory://`) goes through fsspec (`FsspecBlobStore`).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit

from lorastack.errors import BlobCorrupt, BlobNotFound, BlobStoreError
from lorastack.fsutil import atomic_file, sha256_file

__all__ = [
    "BlobStore",
    "FsspecBlobStore",
    "LocalBlobStore",
    "blob_key",
    "display_url",
    "open_blob_store",
]

_CHUNK = 1 << 20
# Object-store reads and writes go in blocks of this size: bounded memory for files of
# hundreds of MB, and above S3's 5 MiB minimum multipart part.
_BLOCK = 8 << 20
_DIGEST = re.compile(r"[0-9a-f]{64}")
# fsspec protocols served by one of lorastack's extras.
_EXTRAS = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "az": "azure",
    "abfs": "azure",
    "abfss": "azure",
    "adl": "azure",
}
# Option names whose values never appear in a message.
_SECRET_OPTION = re.compile(r"secret|password|token|key|credential|sas|connection", re.IGNORECASE)
_MESSAGE_MAX = 300


class BlobStore(Protocol):
    """Where published adapter files are kept, by content."""

    url: str
    """The store's location for display: never credentials."""

    def put(self, path: Path) -> str:
        """Store the file's bytes under their sha256 hex digest and return the digest.

        Idempotent (a blob already there is not sent again) and atomic (no reader ever
        sees a partial blob).
        """
        ...

    def has(self, digest: str) -> bool:
        """Whether a blob is stored under `digest`."""
        ...

    def fetch(self, digest: str, dest: Path) -> None:
        """Write the blob to `dest` atomically, verifying its sha256 while writing.

        `BlobNotFound` if absent; `BlobCorrupt` (and nothing at `dest`) if its bytes do
        not hash to `digest`.
        """
        ...


def blob_key(digest: str) -> str:
    """The blob's path under a store's root; refuses anything but 64 lowercase hex digits,
    so that a digest from a manifest can never point outside the store."""
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise BlobStoreError(f"not a sha256 hex digest: {str(digest)[:80]!r}")
    return f"sha256/{digest[:2]}/{digest}"


def display_url(url: str) -> str:
    """`url` without user, password or query string (an Azure SAS token lives there)."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def open_blob_store(url: str, options: Mapping[str, Any] | None = None) -> BlobStore:
    """The store at `url`: a plain path or `file://` URL is a folder; anything else goes to
    fsspec with `options` (credentials, `endpoint_url`...), e.g. `s3://bucket/adapters`.

    `BlobStoreError` if the protocol's fsspec package is not installed (the message says
    which extra to install) or the store cannot be opened.
    """
    if "://" not in url:
        return LocalBlobStore(Path(url))
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalBlobStore(Path(unquote(parts.path)))
    return FsspecBlobStore.open(url, options or {})


class _DigestMismatch(Exception):
    """The copied bytes do not hash to the blob's name (internal to `_copy_verified`)."""


def _copy_verified(source: IO[bytes], dest: Path, digest: str) -> bool:
    """Write `source` to `dest` (temp file beside it, fsync, rename) if its bytes hash to
    `digest`; False, with nothing left at `dest`, if they do not."""
    try:
        with atomic_file(dest) as out:
            if _copy_hashing(source, out) != digest:
                raise _DigestMismatch
    except _DigestMismatch:
        return False
    return True


def _copy_hashing(source: IO[bytes], out: IO[bytes]) -> str:
    """Copy `source` to `out` in chunks; the sha256 hex digest of what was copied."""
    hasher = hashlib.sha256()
    while chunk := source.read(_CHUNK):
        hasher.update(chunk)
        out.write(chunk)
    return hasher.hexdigest()


def _one_line(exc: BaseException, hide: tuple[str, ...] = ()) -> str:
    """The exception as one short line, with credentials in URLs and `hide` removed."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = re.sub(r"([a-z][a-z0-9+.-]*://)[^/\s@]+@", r"\1", text, flags=re.IGNORECASE)
    for secret in hide:
        text = text.replace(secret, "***")
    if len(text) > _MESSAGE_MAX:
        text = text[:_MESSAGE_MAX] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def _one_line_errors(
    url: str,
    action: str,
    catch: type[BaseException] | tuple[type[BaseException], ...],
    hide: tuple[str, ...] = (),
) -> Iterator[None]:
    """`catch` (not already a `BlobStoreError`) as one `BlobStoreError` line naming the store."""
    try:
        yield
    except BlobStoreError:
        raise
    except catch as exc:
        raise BlobStoreError(f"blob store {url}: {action}: {_one_line(exc, hide)}") from exc


def _fetch(url: str, open_blob: Callable[[], IO[bytes]], digest: str, dest: Path) -> None:
    """Copy the blob `open_blob` opens to `dest`, verified (`BlobNotFound`, `BlobCorrupt`)."""
    try:
        source = open_blob()
    except FileNotFoundError:
        raise BlobNotFound(f"blob store {url}: no blob {digest}") from None
    with source:
        verified = _copy_verified(source, dest, digest)
    if not verified:
        raise BlobCorrupt(f"blob store {url}: blob {digest} does not match its digest")


class LocalBlobStore:
    """Blobs in a folder on a local or shared filesystem (NFS): each appears by one rename
    of a fsynced temp file in its own folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def __repr__(self) -> str:
        return f"LocalBlobStore({self.url!r})"

    def _path(self, digest: str) -> Path:
        return self.root / blob_key(digest)

    def _errors(self, action: str) -> contextlib.AbstractContextManager[None]:
        return _one_line_errors(self.url, action, OSError)

    def put(self, path: Path) -> str:
        with self._errors(f"cannot store {path}"):
            digest = sha256_file(path)
            target = self._path(digest)
            if target.is_file() and target.stat().st_size == path.stat().st_size:
                return digest
            with path.open("rb") as source:
                stored = _copy_verified(source, target, digest)
        if not stored:
            raise BlobStoreError(f"blob store {self.url}: {path} changed while it was stored")
        return digest

    def has(self, digest: str) -> bool:
        path = self._path(digest)
        with self._errors(f"cannot look up {digest}"):
            return path.is_file()

    def fetch(self, digest: str, dest: Path) -> None:
        path = self._path(digest)
        with self._errors(f"cannot fetch {digest} to {dest}"):
            _fetch(self.url, lambda: path.open("rb"), digest, dest)


class FsspecBlobStore:
    """Blobs in any fsspec filesystem; meant for object stores (S3, GCS, Azure), where an
    upload to its final key appears whole or not at all."""

    def __init__(self, fs: Any, root: str, url: str, hide: tuple[str, ...] = ()) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.url = display_url(url)
        self._hide = hide

    def __repr__(self) -> str:
        return f"FsspecBlobStore({self.url!r})"

    @classmethod
    def open(cls, url: str, options: Mapping[str, Any]) -> FsspecBlobStore:
        """The store at `url` through `fsspec.url_to_fs(url, **options)`."""
        import fsspec

        shown = display_url(url)
        protocol = urlsplit(url).scheme
        hide = _secret_values(options) + _url_secrets(url)
        try:
            fs, root = fsspec.url_to_fs(url, **options)
        except ImportError as exc:
            extra = _EXTRAS.get(protocol)
            hint = f"pip install 'lorastack[{extra}]'" if extra else _fsspec_hint(protocol)
            raise BlobStoreError(
                f"blob store {shown}: no fsspec backend for {protocol}:// is installed: {hint}"
            ) from exc
        except Exception as exc:
            raise BlobStoreError(
                f"blob store {shown}: cannot open: {_one_line(exc, hide)}"
            ) from exc
        return cls(fs, root, url, hide)

    def _key(self, digest: str) -> str:
        return f"{self.root}/{blob_key(digest)}"

    def _errors(self, action: str) -> contextlib.AbstractContextManager[None]:
        # Backends raise their own types (botocore, aiohttp, google-auth, azure-core) beside
        # OSError: every one becomes one line naming the store.
        return _one_line_errors(self.url, action, Exception, self._hide)

    def _size(self, key: str) -> int | None:
        """The stored object's size, or None if there is none."""
        # A listing cached by the filesystem instance (fsspec shares instances) may predate
        # another writer's upload.
        self.fs.invalidate_cache(key)
        try:
            info = self.fs.info(key)
        except FileNotFoundError:
            return None
        size = info.get("size")
        return int(size) if size is not None else 0

    def put(self, path: Path) -> str:
        with self._errors(f"cannot read {path}"):
            digest = sha256_file(path)
            size = path.stat().st_size
        key = self._key(digest)
        with self._errors(f"cannot store {digest}"):
            if self._size(key) == size:
                return digest
            with path.open("rb") as source, self.fs.open(key, "wb", block_size=_BLOCK) as out:
                copied = _copy_hashing(source, out)
            if copied != digest:
                # The upload is committed on close; a blob that does not match its name
                # is refused by every fetch, and removed here.
                self.fs.rm_file(key)
                raise BlobStoreError(f"blob store {self.url}: {path} changed while it was stored")
        return digest

    def has(self, digest: str) -> bool:
        key = self._key(digest)
        with self._errors(f"cannot look up {digest}"):
            return self._size(key) is not None

    def fetch(self, digest: str, dest: Path) -> None:
        key = self._key(digest)
        with self._errors(f"cannot fetch {digest} to {dest}"):
            self.fs.invalidate_cache(key)
            _fetch(self.url, lambda: self.fs.open(key, "rb", block_size=_BLOCK), digest, dest)


def _secret_values(options: Mapping[str, Any]) -> tuple[str, ...]:
    """The string values of secret-looking options, at any depth (`client_kwargs`...)."""
    found: list[str] = []
    for name, value in options.items():
        if isinstance(value, Mapping):
            found.extend(_secret_values(value))
        elif isinstance(value, str) and value and _SECRET_OPTION.search(str(name)):
            found.append(value)
    return tuple(found)


def _url_secrets(url: str) -> tuple[str, ...]:
    parts = urlsplit(url)
    return tuple(s for s in (parts.username, parts.password, parts.query) if s)


def _fsspec_hint(protocol: str) -> str:
    from fsspec.registry import known_implementations

    known = known_implementations.get(protocol, {})
    return str(known.get("err") or f"install the fsspec implementation of {protocol}://")
