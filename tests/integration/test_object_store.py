"""The blob store on S3, through s3fs, against moto's standalone server.

moto is an emulator of AWS S3, not a real S3-compatible server: none (MinIO, SeaweedFS,
Garage) installs on these machines. It speaks the same protocol (multipart uploads, SigV4
signatures checked against its IAM users), which is what the store relies on.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path

import pytest

from lorastack.blobs import FsspecBlobStore, blob_key, open_blob_store
from lorastack.errors import BlobCorrupt, BlobNotFound, BlobStoreError
from tests.s3_server import S3Server, s3_server  # noqa: F401
from tests.servers import free_port

pytestmark = pytest.mark.integration

_SIZE = 10 << 20  # above the 8 MiB block: a multipart upload


@pytest.fixture
def prefix(s3_server: S3Server) -> str:  # noqa: F811
    return f"s3://{s3_server.bucket}/adapters-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "adapter_model.safetensors"
    with path.open("wb") as handle:
        for _ in range(_SIZE >> 20):
            handle.write(os.urandom(1 << 20))
    return path


def test_put_and_fetch_a_large_file(
    s3_server: S3Server,  # noqa: F811
    prefix: str,
    big_file: Path,
    tmp_path: Path,
) -> None:
    store = open_blob_store(prefix, s3_server.options())
    digest = store.put(big_file)
    assert digest == hashlib.sha256(big_file.read_bytes()).hexdigest()

    stored = s3_server.client().head_object(
        Bucket=s3_server.bucket, Key=f"{prefix.split('/', 3)[3]}/{blob_key(digest)}"
    )
    assert stored["ContentLength"] == _SIZE

    # Another machine: a store opened separately, fetching into its own folder.
    elsewhere = open_blob_store(prefix, s3_server.options())
    assert elsewhere.has(digest)
    dest = tmp_path / "elsewhere" / "v1" / "adapter_model.safetensors"
    elsewhere.fetch(digest, dest)
    assert dest.read_bytes() == big_file.read_bytes()
    assert store.put(big_file) == digest  # already there


def test_missing_digest(s3_server: S3Server, prefix: str, tmp_path: Path) -> None:  # noqa: F811
    store = open_blob_store(prefix, s3_server.options())
    digest = hashlib.sha256(b"never stored").hexdigest()
    assert not store.has(digest)
    with pytest.raises(BlobNotFound, match=digest):
        store.fetch(digest, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_blob_tampered_in_the_bucket_is_refused(
    s3_server: S3Server,  # noqa: F811
    prefix: str,
    tmp_path: Path,
) -> None:
    source = tmp_path / "adapter_config.json"
    source.write_bytes(b'{"r": 8, "lora_alpha": 16}')
    store = open_blob_store(prefix, s3_server.options())
    digest = store.put(source)
    assert isinstance(store, FsspecBlobStore)
    s3_server.client().put_object(
        Bucket=s3_server.bucket,
        Key=f"{store.root.split('/', 1)[1]}/{blob_key(digest)}",
        Body=b'{"r": 64, "lora_alpha": 1}',
    )

    dest = tmp_path / "out" / "adapter_config.json"
    with pytest.raises(BlobCorrupt, match=digest):
        open_blob_store(prefix, s3_server.options()).fetch(digest, dest)
    assert list(dest.parent.iterdir()) == []


def test_wrong_credentials_are_a_clean_error(
    s3_server: S3Server,  # noqa: F811
    prefix: str,
    tmp_path: Path,
) -> None:
    source = tmp_path / "f"
    source.write_bytes(b"data")
    options = s3_server.options(key="AKIAWRONGKEY", secret="wrong-secret-value")
    store = open_blob_store(prefix, options)

    with pytest.raises(BlobStoreError) as caught:
        store.put(source)
    message = str(caught.value)
    assert message.startswith(f"blob store {prefix}: cannot store ")
    assert "\n" not in message
    assert "wrong-secret-value" not in message
    assert not isinstance(caught.value, BlobNotFound)
    with pytest.raises(BlobStoreError):
        store.has(hashlib.sha256(b"data").hexdigest())


def test_wrong_endpoint_is_a_clean_error(
    s3_server: S3Server,  # noqa: F811
    prefix: str,
    tmp_path: Path,
) -> None:
    source = tmp_path / "f"
    source.write_bytes(b"data")
    client_kwargs = {"endpoint_url": f"http://127.0.0.1:{free_port()}", "region_name": "us-east-1"}
    store = open_blob_store(prefix, s3_server.options(client_kwargs=client_kwargs))

    started = time.monotonic()
    with pytest.raises(BlobStoreError) as caught:
        store.put(source)
    assert time.monotonic() - started < 20
    message = str(caught.value)
    assert message.startswith(f"blob store {prefix}: cannot store ")
    assert "\n" not in message
    assert s3_server.secret not in message
