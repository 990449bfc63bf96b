"""What the database index does beyond the rules test_registry.py checks on both indexes:
writers in several processes, local copies made from the blob store, the settings."""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lorastack import fsutil
from lorastack.blobs import blob_key
from lorastack.db import make_engine
from lorastack.errors import (
    AdapterNotFound,
    BlobCorrupt,
    BlobNotFound,
    RegistryError,
    RegistryUnavailable,
)
from lorastack.models import ModelRecord, ModelStore
from lorastack.registry import AdapterRegistry, FolderIndex, open_registry
from lorastack.registry import core as registry_core
from lorastack.registry.database import DatabaseIndex, _RegistrySessions
from lorastack.serve.errors import to_gateway_error
from lorastack.settings import load_settings
from tests.fakes import write_adapter
from tests.registries import database_registry
from tests.servers import free_port
from tests.unit.conftest import Result

WEIGHTS = "adapter_model.safetensors"


@pytest.fixture
def registry(store: ModelStore, fake_base: ModelRecord) -> Iterator[AdapterRegistry]:
    with database_registry(store) as registry:
        yield registry


def _publish(registry: AdapterRegistry, tmp_path: Path, seed: int = 0, **kwargs: object) -> int:
    source = write_adapter(tmp_path / f"src-{seed}", "tiny", seed=seed)
    return registry.publish(source, "coffee", **kwargs).version  # type: ignore[arg-type]


def _backend(registry: AdapterRegistry) -> DatabaseIndex:
    assert isinstance(registry.backend, DatabaseIndex)
    return registry.backend


def test_a_promote_is_seen_by_another_registry_on_the_same_database_at_once(
    registry: AdapterRegistry, store: ModelStore, tmp_path: Path
) -> None:
    _publish(registry, tmp_path, 0, promote="prod")
    _publish(registry, tmp_path, 1)
    with database_registry(store) as other:  # another gateway's
        assert other.resolve("coffee").version == 1
        registry.promote("coffee", 2)
        assert other.resolve("coffee").version == 2
        other.rollback("coffee")
        assert registry.resolve("coffee").version == 1


def test_the_adapter_files_live_in_the_blob_store_and_are_copied_on_first_use(
    registry: AdapterRegistry, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _publish(registry, tmp_path, 0)
    manifest = registry.manifest("coffee", 1)
    assert (home / "blobs" / blob_key(manifest.adapter_sha256)).is_file()
    assert not (home / "adapters").exists()  # nothing of the folder index
    folder = registry.version_dir("coffee", 1)
    assert folder == home / "cache" / "adapters" / "coffee" / "v1"
    assert fsutil.sha256_file(folder / WEIGHTS) == manifest.adapter_sha256

    def refuse(*_: object) -> None:
        raise AssertionError("fetched again")

    monkeypatch.setattr(_backend(registry).blobs, "fetch", refuse)
    assert registry.version_dir("coffee", 1) == folder  # this process checked it already
    with database_registry(registry.models) as other:  # another process: checks, no fetch
        assert other.version_dir("coffee", 1) == folder
    with pytest.raises(AdapterNotFound, match="coffee@v2 does not exist"):
        registry.version_dir("coffee", 2)


def test_a_cached_copy_that_is_not_the_version_is_made_again(
    registry: AdapterRegistry, store: ModelStore, tmp_path: Path
) -> None:
    _publish(registry, tmp_path, 0)
    folder = registry.version_dir("coffee", 1)
    (folder / "adapter_config.json").write_text("{}")
    with database_registry(store) as other:
        again = other.version_dir("coffee", 1)
    assert again == folder
    assert (again / "adapter_config.json").read_text() != "{}"
    assert not list(folder.parent.glob(".staging-*"))


def test_a_tampered_blob_is_refused_and_nothing_is_cached(
    registry: AdapterRegistry, home: Path, tmp_path: Path
) -> None:
    _publish(registry, tmp_path, 0)
    blob = home / "blobs" / blob_key(registry.manifest("coffee", 1).adapter_sha256)
    blob.write_bytes(blob.read_bytes()[:-1] + b"!")
    with pytest.raises(BlobCorrupt):
        registry.version_dir("coffee", 1)
    blob.unlink()
    with pytest.raises(BlobNotFound):
        registry.version_dir("coffee", 1)
    cache = home / "cache" / "adapters" / "coffee"
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []


def test_a_failed_publish_leaves_nothing_in_the_index(
    registry: AdapterRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*_: object) -> None:
        raise OSError("the machine went away")

    monkeypatch.setattr(registry_core, "_point_alias", crash)
    with pytest.raises(OSError, match="went away"):
        _publish(registry, tmp_path, 0, promote="prod")
    assert registry.domains() == []
    assert registry.index("coffee").last_version == 0
    monkeypatch.undo()
    assert _publish(registry, tmp_path, 0, promote="prod") == 1


def test_the_settings_choose_the_index(
    store: ModelStore, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = open_registry(load_settings(), store)
    backend = _backend(default)
    try:
        assert backend.cache_dir == home / "cache" / "adapters"
        assert str(home / "lorastack.db") in backend.description
        assert str(home / "blobs") in backend.description
    finally:
        backend.engine.dispose()
    monkeypatch.setenv("LORASTACK_REGISTRY__STORE", f"file://{tmp_path / 'shared-blobs'}")
    monkeypatch.setenv("LORASTACK_REGISTRY__CACHE_DIR", str(tmp_path / "local-cache"))
    database = open_registry(load_settings(), store)
    backend = _backend(database)
    try:
        assert backend.cache_dir == tmp_path / "local-cache"
        assert str(tmp_path / "shared-blobs") in backend.description
        with pytest.raises(RegistryError, match="no folder"):
            _ = database.root
    finally:
        backend.engine.dispose()
    monkeypatch.setenv("LORASTACK_REGISTRY__INDEX", "folder")
    folder = open_registry(load_settings(), store)
    assert isinstance(folder.backend, FolderIndex) and folder.root == home / "adapters"


def test_the_commands_use_the_database_index_by_default(
    cli: Callable[..., Result], registry: AdapterRegistry, tmp_path: Path
) -> None:
    source = write_adapter(tmp_path / "src", "tiny")
    for _ in range(2):
        published = cli("adapters", "publish", str(source), "--domain", "coffee")
        assert published.code == 0, published.err
    assert published.last_line == "coffee@v2"
    promoted = cli("adapters", "promote", "coffee", "1")
    assert promoted.code == 0, promoted.err
    assert registry.index("coffee").aliases == {"prod": 1}  # in the database
    assert not (registry.models.root.parent / "adapters").exists()


def test_a_database_that_fails_is_the_registry_unavailable_a_503(
    registry: AdapterRegistry, tmp_path: Path
) -> None:
    _publish(registry, tmp_path, promote="prod")
    # The index's database goes away (a server nobody listens on): every read and write.
    unreachable = make_engine(f"postgresql+psycopg://lorastack@127.0.0.1:{free_port()}/gone")
    _backend(registry)._sessions = _RegistrySessions(unreachable)
    for operation in (lambda: registry.resolve("coffee"), lambda: registry.promote("coffee", 1)):
        with pytest.raises(RegistryUnavailable, match="the registry's index: database") as failed:
            operation()
        mapped = to_gateway_error(failed.value)
        assert (mapped.status, mapped.code) == (503, "registry_unavailable")
        assert str(mapped) == "the adapter registry is unavailable; try again"
    unreachable.dispose()
