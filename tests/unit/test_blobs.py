"""The content-addressed blob store: a local folder and fsspec's in-memory filesystem
behave alike (round trip, idempotence, verification on fetch, refusals)."""

from __future__ import annotations

import hashlib
import importlib.util
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import fsspec
import pytest

from lorastack import blobs
from lorastack.blobs import (
    BlobStore,
    FsspecBlobStore,
    LocalBlobStore,
    blob_key,
    display_url,
    open_blob_store,
)
from lorastack.errors import BlobCorrupt, BlobNotFound, BlobStoreError, RegistryError


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "local":
        yield open_blob_store(str(tmp_path / "blobs"))
        return
    # fsspec's memory filesystem is one process-wide store: a fresh root per test.
    root = f"memory://blobs-{uuid.uuid4().hex}"
    yield open_blob_store(root)
    fs, path = fsspec.url_to_fs(root)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def _tamper(store: BlobStore, digest: str, data: bytes) -> None:
    """Overwrite the stored blob behind the store's back."""
    if isinstance(store, LocalBlobStore):
        (store.root / blob_key(digest)).write_bytes(data)
    else:
        assert isinstance(store, FsspecBlobStore)
        store.fs.pipe_file(f"{store.root}/{blob_key(digest)}", data)


def test_round_trip(store: BlobStore, tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000  # > one read chunk
    digest = store.put(_write(tmp_path / "in" / "adapter_model.safetensors", data))

    assert digest == hashlib.sha256(data).hexdigest()
    assert store.has(digest)
    dest = tmp_path / "out" / "deeper" / "adapter_model.safetensors"
    store.fetch(digest, dest)
    assert dest.read_bytes() == data
    assert dest.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no temp file left


def test_layout_is_sha256_prefix_digest(tmp_path: Path) -> None:
    store = open_blob_store(f"file://{tmp_path / 'blobs'}")
    assert isinstance(store, LocalBlobStore)
    digest = store.put(_write(tmp_path / "f", b"hello"))
    assert (tmp_path / "blobs" / "sha256" / digest[:2] / digest).read_bytes() == b"hello"


def test_put_is_idempotent(
    store: BlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _write(tmp_path / "f", b"same bytes")
    digest = store.put(source)

    def no_copy(*args: object, **kwargs: object) -> bool:
        raise AssertionError("a blob already stored was written again")

    monkeypatch.setattr(blobs, "_copy_verified", no_copy)
    if isinstance(store, FsspecBlobStore):
        monkeypatch.setattr(store.fs, "open", no_copy)
    assert store.put(_write(tmp_path / "g", b"same bytes")) == digest


def test_put_replaces_a_truncated_blob(store: BlobStore, tmp_path: Path) -> None:
    source = _write(tmp_path / "f", b"0123456789")
    digest = store.put(source)
    _tamper(store, digest, b"01234")

    assert store.put(source) == digest
    store.fetch(digest, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == b"0123456789"


def test_tampered_blob_is_refused(store: BlobStore, tmp_path: Path) -> None:
    digest = store.put(_write(tmp_path / "f", b"the real adapter"))
    _tamper(store, digest, b"another adapter!")  # same size: put would not notice
    dest = tmp_path / "out" / "adapter.safetensors"

    with pytest.raises(BlobCorrupt, match=digest):
        store.fetch(digest, dest)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # the temp file is gone too


def test_tampered_blob_leaves_an_existing_file_alone(store: BlobStore, tmp_path: Path) -> None:
    digest = store.put(_write(tmp_path / "f", b"the real adapter"))
    _tamper(store, digest, b"evil")
    dest = _write(tmp_path / "out" / "adapter.safetensors", b"previous")

    with pytest.raises(BlobCorrupt):
        store.fetch(digest, dest)
    assert dest.read_bytes() == b"previous"


def test_missing_blob(store: BlobStore, tmp_path: Path) -> None:
    digest = hashlib.sha256(b"never stored").hexdigest()
    assert not store.has(digest)
    with pytest.raises(BlobNotFound, match=digest):
        store.fetch(digest, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "digest",
    [
        "../" * 10 + "etc/passwd",
        "a" * 63,
        "A" * 64,
        "g" * 64,
        "a" * 64 + "/../x",
        "/" + "a" * 63,
        "",
    ],
)
def test_bad_digest_is_refused(store: BlobStore, tmp_path: Path, digest: str) -> None:
    with pytest.raises(BlobStoreError, match="not a sha256 hex digest"):
        store.has(digest)
    with pytest.raises(BlobStoreError, match="not a sha256 hex digest"):
        store.fetch(digest, tmp_path / "out")


def test_concurrent_puts_of_the_same_file(store: BlobStore, tmp_path: Path) -> None:
    data = b"x" * (3 << 20)
    source = _write(tmp_path / "f", data)
    barrier = threading.Barrier(8)
    digests: list[str] = []
    errors: list[BaseException] = []

    def put() -> None:
        barrier.wait()
        try:
            digests.append(store.put(source))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=put) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert set(digests) == {hashlib.sha256(data).hexdigest()}
    store.fetch(digests[0], tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data
    if isinstance(store, LocalBlobStore):
        folder = store.root / "sha256" / digests[0][:2]
        assert [p.name for p in folder.iterdir()] == [digests[0]]  # no temp file left


def test_a_file_changing_while_stored_is_refused(
    store: BlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _write(tmp_path / "f", b"version one")
    real_sha = blobs.sha256_file

    def hash_then_change(path: Path) -> str:
        digest = real_sha(path)
        path.write_bytes(b"version two")
        return digest

    monkeypatch.setattr(blobs, "sha256_file", hash_then_change)
    with pytest.raises(BlobStoreError, match="changed while it was stored"):
        store.put(source)
    assert not store.has(hashlib.sha256(b"version one").hexdigest())


def test_unreadable_source_is_a_store_error(store: BlobStore, tmp_path: Path) -> None:
    with pytest.raises(BlobStoreError, match=r"missing\.bin"):
        store.put(tmp_path / "missing.bin")


def test_local_write_failure_is_one_line(tmp_path: Path) -> None:
    root = _write(tmp_path / "not-a-folder", b"")  # a file where the store's folder should be
    store = open_blob_store(str(root))
    with pytest.raises(BlobStoreError) as caught:
        store.put(_write(tmp_path / "f", b"data"))
    assert str(root) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_errors_are_registry_errors() -> None:
    assert issubclass(BlobStoreError, RegistryError)
    assert issubclass(BlobNotFound, BlobStoreError)
    assert issubclass(BlobCorrupt, BlobStoreError)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("/srv/blobs", LocalBlobStore),
        ("relative/blobs", LocalBlobStore),
        ("file:///srv/blobs", LocalBlobStore),
        ("memory://blobs", FsspecBlobStore),
    ],
)
def test_open_picks_the_store(url: str, kind: type) -> None:
    assert isinstance(open_blob_store(url), kind)


def test_file_url_is_a_folder(tmp_path: Path) -> None:
    store = open_blob_store(f"file://{tmp_path}/with%20space")
    assert isinstance(store, LocalBlobStore)
    assert store.root == tmp_path / "with space"


@pytest.fixture
def hide_backend(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Make fsspec fail to import a protocol's implementation, as when it is not installed."""

    def hide(protocol: str) -> None:
        real = fsspec.url_to_fs

        def url_to_fs(url: str, **options: object) -> object:
            if url.startswith(f"{protocol}://"):
                raise ImportError(f"Install the package for {protocol}")
            return real(url, **options)

        monkeypatch.setattr(fsspec, "url_to_fs", url_to_fs)

    return hide


@pytest.mark.parametrize(
    ("url", "extra"),
    [("s3://bucket/adapters", "s3"), ("gs://bucket/adapters", "gcs"), ("az://c/adapters", "azure")],
)
def test_missing_backend_names_the_extra(
    hide_backend: Callable[[str], None], url: str, extra: str
) -> None:
    hide_backend(url.split("://")[0])
    with pytest.raises(BlobStoreError) as caught:
        open_blob_store(url)
    assert f"pip install 'lorastack[{extra}]'" in str(caught.value)
    assert url in str(caught.value)


def test_missing_backend_without_an_extra_says_what_fsspec_says(
    hide_backend: Callable[[str], None],
) -> None:
    hide_backend("sftp")
    with pytest.raises(BlobStoreError, match=r"sftp://.*paramiko"):
        open_blob_store("sftp://host/blobs")


@pytest.mark.skipif(importlib.util.find_spec("gcsfs") is not None, reason="gcsfs is installed here")
def test_really_missing_gcsfs() -> None:
    with pytest.raises(BlobStoreError, match=r"pip install 'lorastack\[gcs\]'"):
        open_blob_store("gs://bucket/adapters")


def test_unknown_protocol() -> None:
    with pytest.raises(BlobStoreError, match=r"nope://bucket.*Protocol not known"):
        open_blob_store("nope://bucket/blobs")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("s3://AKIA123:s3cr3t@bucket/adapters", "s3://bucket/adapters"),
        ("https://user:pw@host:8443/blobs?sig=abc", "https://host:8443/blobs"),
        ("az://container/adapters?sv=2024&sig=secret", "az://container/adapters"),
        ("/plain/path", "/plain/path"),
    ],
)
def test_display_url_strips_credentials(url: str, shown: str) -> None:
    assert display_url(url) == shown


def test_store_url_has_no_credentials() -> None:
    store = open_blob_store("memory://alice:s3cr3t@blobs-creds/adapters")
    assert "s3cr3t" not in store.url
    assert "alice" not in store.url
    assert store.url == "memory://blobs-creds/adapters"


def test_backend_errors_never_echo_secret_options(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(url: str, **options: object) -> object:
        raise RuntimeError(f"bad config {options}\nsecond line")

    monkeypatch.setattr(fsspec, "url_to_fs", failing)
    options = {"key": "AKIAEXAMPLE", "client_kwargs": {"aws_secret_access_key": "hunter22"}}
    with pytest.raises(BlobStoreError) as caught:
        open_blob_store("s3://user:pw@bucket/adapters", options)
    message = str(caught.value)
    assert "hunter22" not in message
    assert "AKIAEXAMPLE" not in message
    assert ":pw@" not in message
    assert "\n" not in message
    assert message.startswith("blob store s3://bucket/adapters: cannot open: RuntimeError")


def test_backend_failure_is_one_line(tmp_path: Path) -> None:
    store = open_blob_store(f"memory://blobs-{uuid.uuid4().hex}")
    assert isinstance(store, FsspecBlobStore)

    class Broken:
        def invalidate_cache(self, path: str | None = None) -> None:
            pass

        def info(self, path: str) -> dict[str, object]:
            raise ConnectionError("connection refused\n  at some frame")

    store.fs = Broken()
    digest = hashlib.sha256(b"x").hexdigest()
    with pytest.raises(BlobStoreError) as caught:
        store.has(digest)
    assert str(caught.value) == (
        f"blob store {store.url}: cannot look up {digest}: ConnectionError: connection refused"
    )
