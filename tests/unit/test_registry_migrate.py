"""`lorastack registry migrate`: a folder registry into the database index, losslessly."""

import json
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lorastack import fsutil
from lorastack.errors import RegistryError
from lorastack.models import ModelRecord, ModelStore
from lorastack.registry import (
    AdapterRegistry,
    FolderIndex,
    migrate_folder_registry,
    open_registry,
)
from lorastack.registry.database import DatabaseIndex
from lorastack.registry.migrate import MOVED_FILE
from lorastack.settings import load_settings
from tests.fakes import write_adapter
from tests.registries import database_registry
from tests.unit.conftest import Result

Cli = Callable[..., Result]


@pytest.fixture
def folder(
    home: Path, store: ModelStore, fake_base: ModelRecord, tmp_path: Path
) -> AdapterRegistry:
    """A folder registry with everything a domain can hold: removed versions, alias
    history, a running canary, a finished one, capture settings."""
    registry = AdapterRegistry(home / "adapters", store, max_rank=16)
    for seed in range(4):
        source = write_adapter(tmp_path / f"src-{seed}", "tiny", seed=seed)
        registry.publish(source, "coffee", description=f"round {seed}", metrics={"loss": seed})
    registry.promote("coffee", 1)
    registry.promote("coffee", 2)
    registry.promote("coffee", 4, alias="beta")
    registry.start_canary("coffee", 3, 10)
    registry.end_canary("coffee", "enough")
    registry.start_canary("coffee", 4, 25)
    registry.set_capture("coffee", True, 7)
    registry.remove("coffee", 3)
    registry.publish(write_adapter(tmp_path / "src-tea", "tiny", seed=9), "tea", promote="prod")
    return registry


@pytest.fixture
def database(store: ModelStore) -> Iterator[AdapterRegistry]:
    with database_registry(store) as registry:
        yield registry


def _same(folder: AdapterRegistry, database: AdapterRegistry) -> None:
    assert database.domains() == folder.domains() == ["coffee", "tea"]
    for domain in folder.domains():
        assert database.index(domain) == folder.index(domain)
        assert database.versions(domain) == folder.versions(domain)
        for manifest in folder.versions(domain):
            copy = database.version_dir(domain, manifest.version)
            original = folder.version_dir(domain, manifest.version)
            for name in ("adapter_config.json", "adapter_model.safetensors"):
                assert (copy / name).read_bytes() == (original / name).read_bytes()


def _backend(registry: AdapterRegistry) -> DatabaseIndex:
    assert isinstance(registry.backend, DatabaseIndex)
    return registry.backend


def test_every_domain_comes_over_whole_and_a_second_run_changes_nothing(
    folder: AdapterRegistry, database: AdapterRegistry
) -> None:
    before = fsutil.sha256_tree(folder.root)
    source = FolderIndex(folder.root)
    results = migrate_folder_registry(source, _backend(database))
    assert [(r.domain, r.versions, r.outcome) for r in results] == [
        ("coffee", 3, "copied"),
        ("tea", 1, "copied"),
    ]
    _same(folder, database)
    index = database.index("coffee")
    assert index.alias_history == {"prod": [1]} and index.last_version == 4
    assert index.canary is not None and index.canary.version == 4
    assert index.last_canary is not None and index.last_canary.reason == "enough"
    again = migrate_folder_registry(source, _backend(database))
    assert [r.outcome for r in again] == ["unchanged", "unchanged"]
    assert fsutil.sha256_tree(folder.root) == before  # the folder is only read
    # The database's own numbering goes on from the folder's.
    source_dir = database.version_dir("tea", 1)
    assert database.publish(source_dir, "coffee").version == 5


def test_a_dry_run_writes_nothing(folder: AdapterRegistry, database: AdapterRegistry) -> None:
    results = migrate_folder_registry(FolderIndex(folder.root), _backend(database), dry_run=True)
    assert [r.outcome for r in results] == ["would copy", "would copy"]
    assert database.domains() == []
    assert database.index("coffee").last_version == 0


def test_a_damaged_file_or_a_diverged_domain_is_refused_and_the_rest_goes_on(
    folder: AdapterRegistry, database: AdapterRegistry
) -> None:
    weights = folder.version_dir("tea", 1) / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes() + b"x")
    source = FolderIndex(folder.root)
    coffee, tea = migrate_folder_registry(source, _backend(database))
    assert coffee.outcome == "copied"
    assert tea.outcome == "refused" and "does not match its manifest" in tea.reason
    assert database.domains() == ["coffee"]
    database.promote("coffee", 1)  # changed in the database since
    coffee, _ = migrate_folder_registry(source, _backend(database))
    assert coffee.outcome == "refused" and "differently" in coffee.reason
    assert database.index("coffee").aliases["prod"] == 1  # left alone


def test_the_command_migrates_says_so_and_is_idempotent(
    cli: Cli, folder: AdapterRegistry, database: AdapterRegistry
) -> None:
    dry = cli("registry", "migrate", "--dry-run")
    assert dry.code == 0, dry.err
    assert "coffee: would copy (3 versions)" in dry.out and "nothing was written" in dry.out
    assert database.domains() == []
    first = cli("registry", "migrate")
    assert first.code == 0, first.err
    assert "coffee: copied (3 versions)" in first.out
    assert "the database index is the default" in first.out
    assert "coffee: 3 versions" in first.err  # progress, per domain, on stderr
    _same(folder, database)
    second = cli("registry", "migrate")
    assert second.code == 0
    assert "coffee: unchanged" in second.out and "nothing changed" in second.out


def test_the_command_fails_in_one_line(
    cli: Cli, folder: AdapterRegistry, database: AdapterRegistry
) -> None:
    weights = folder.version_dir("coffee", 2) / "adapter_model.safetensors"
    weights.write_bytes(b"damaged")
    result = cli("registry", "migrate")
    assert result.code == 1
    assert "coffee: refused" in result.out
    assert result.err.strip().splitlines()[-1] == "error: 1 of 2 domains not migrated: coffee"
    assert "Traceback" not in result.err
    empty = cli("registry", "migrate", "--from", str(folder.root.parent / "nowhere"))
    assert empty.code == 0 and "nothing to migrate" in empty.out


def _open_default(store: ModelStore) -> AdapterRegistry:
    """What every gateway and command opens: the settings' registry, the database index."""
    registry = open_registry(load_settings(), store)
    _backend(registry).engine.dispose()  # SQLite reconnects on use; nothing stays open
    return registry


def test_the_first_open_moves_the_home_folder_registry_in_once(
    folder: AdapterRegistry, store: ModelStore, caplog: pytest.LogCaptureFixture
) -> None:
    trees = {domain: fsutil.sha256_tree(folder.root / domain) for domain in folder.domains()}
    with caplog.at_level(logging.WARNING):
        opened = _open_default(store)
    assert "moved the folder registry" in caplog.text and "coffee: copied" in caplog.text
    _same(folder, opened)
    moved = json.loads((folder.root / MOVED_FILE).read_text())
    assert moved["domains"] == ["coffee", "tea"] and "lorastack.db" in moved["to"]
    assert {d: fsutil.sha256_tree(folder.root / d) for d in folder.domains()} == trees
    opened.promote("coffee", 4)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = _open_default(store)
    assert caplog.text == ""  # moved once: the next opens read the database only
    assert again.index("coffee").aliases["prod"] == 4
    assert folder.index("coffee").aliases["prod"] == 2  # the folder is left as it was


def test_a_folder_that_cannot_be_moved_stops_the_open_and_is_tried_again(
    folder: AdapterRegistry, store: ModelStore
) -> None:
    weights = folder.version_dir("coffee", 2) / "adapter_model.safetensors"
    intact = weights.read_bytes()
    weights.write_bytes(b"damaged")
    with pytest.raises(RegistryError) as refused:
        _open_default(store)
    message = str(refused.value)
    assert "could not be moved" in message and "coffee: refused" in message
    assert "LORASTACK_REGISTRY__INDEX=folder" in message
    assert not (folder.root / MOVED_FILE).exists()
    weights.write_bytes(intact)
    _same(folder, _open_default(store))  # tea, copied the first time, is left alone
    assert (folder.root / MOVED_FILE).is_file()


def test_processes_opening_a_home_at_once_move_it_once(
    folder: AdapterRegistry, store: ModelStore
) -> None:
    with ThreadPoolExecutor(4) as pool:
        opened = list(pool.map(lambda _: _open_default(store), range(4)))
    for registry in opened:
        _same(folder, registry)


def test_the_folder_index_after_the_move_warns_that_it_is_stale(
    folder: AdapterRegistry,
    store: ModelStore,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _open_default(store)
    monkeypatch.setenv("LORASTACK_REGISTRY__INDEX", "folder")
    with caplog.at_level(logging.WARNING):
        back = open_registry(load_settings(), store)
    assert isinstance(back.backend, FolderIndex)
    assert "was moved into the database index" in caplog.text
