"""The registry's rules, against both indexes (folders, and the database with its blob
store); what only the folder index does is tested on it alone (`folder_registry`)."""

import json
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from lorastack import fsutil
from lorastack.errors import AdapterInvalid, AdapterNotFound, InvalidName, RegistryError
from lorastack.manifest import MANIFEST_FILE, CanaryGuard, CaptureSetting
from lorastack.models import ModelRecord, ModelStore
from lorastack.registry import AdapterRegistry, FolderIndex, open_database_index
from lorastack.settings import get_settings
from tests.fakes import write_adapter
from tests.registries import database_registry, database_settings


@pytest.fixture(params=["folder", "database"])
def registry(
    request: pytest.FixtureRequest, home: Path, store: ModelStore, fake_base: ModelRecord
) -> Iterator[AdapterRegistry]:
    if request.param == "folder":
        yield AdapterRegistry(home / "adapters", store, max_rank=16)
        return
    with database_registry(store) as registry:
        yield registry


@pytest.fixture
def folder_registry(home: Path, store: ModelStore, fake_base: ModelRecord) -> AdapterRegistry:
    return AdapterRegistry(home / "adapters", store, max_rank=16)


def _nothing_left_for(registry: AdapterRegistry, domain: str) -> bool:
    """A refused change left no trace of a domain the registry did not know."""
    if registry.domains() != [] and domain in registry.domains():
        return False
    if isinstance(registry.backend, FolderIndex):
        return not (registry.root / domain).exists()
    return registry.index(domain).last_version == 0


def _publish(registry: AdapterRegistry, tmp_path: Path, seed: int = 0, **kwargs: object) -> int:
    source = write_adapter(tmp_path / f"src-{seed}", "tiny", seed=seed)
    return registry.publish(source, "coffee", **kwargs).version  # type: ignore[arg-type]


def test_publish_copies_the_adapter_and_records_its_manifest(
    registry: AdapterRegistry, tmp_path: Path, fake_base: ModelRecord
) -> None:
    source = write_adapter(tmp_path / "src", "tiny")
    (source / "optimizer.pt").write_bytes(b"not copied")
    manifest = registry.publish(
        source,
        "coffee",
        display_name="Bean There",
        description="A neighbourhood coffee shop",
        system_prompt="You are cheerful.",
        metrics={"eval_loss": 1.25},
    )
    folder = registry.version_dir("coffee", 1)
    assert manifest.ref == "coffee@v1"
    # With the database index: a local copy, made from the blob store.
    assert sorted(p.name for p in folder.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        MANIFEST_FILE,
    ]
    assert manifest.adapter_sha256 == fsutil.sha256_file(folder / "adapter_model.safetensors")
    assert manifest.base_model.name == "tiny"
    assert manifest.base_model.checkpoint_sha256 == fake_base.checkpoint_sha256
    assert manifest.lora.rank == 8
    assert manifest.system_prompt == "You are cheerful."
    assert registry.resolve("coffee") == manifest
    assert registry.manifest("coffee", 1) == manifest


def test_invalid_adapters_and_names_never_reach_the_registry(
    registry: AdapterRegistry, tmp_path: Path
) -> None:
    with pytest.raises(AdapterInvalid):
        registry.publish(write_adapter(tmp_path / "big", "tiny", rank=32), "coffee")
    for bad in ["../x", "/abs", "a/b", "", "Coffee"]:
        with pytest.raises(InvalidName):
            registry.publish(write_adapter(tmp_path / "ok", "tiny"), bad)
    assert registry.domains() == []
    assert not (tmp_path / "x").exists()


def test_versions_increase_and_are_never_reused(registry: AdapterRegistry, tmp_path: Path) -> None:
    assert [_publish(registry, tmp_path, seed) for seed in range(3)] == [1, 2, 3]
    registry.remove("coffee", 3)
    assert _publish(registry, tmp_path, 9) == 4
    assert [m.version for m in registry.versions("coffee")] == [1, 2, 4]


def _open_like(index: str, home: Path) -> AdapterRegistry:
    """In another process: a registry on the same index as the test's, in `home`."""
    store = ModelStore(home / "models")
    if index == "folder":
        return AdapterRegistry(home / "adapters", store, max_rank=16)
    get_settings.cache_clear()
    return AdapterRegistry(open_database_index(database_settings(home=home)), store, 16)


def _publish_in_process(args: tuple[str, str, str, int]) -> list[int]:
    index, home, src_root, seed = args
    registry = _open_like(index, Path(home))
    source = write_adapter(Path(src_root) / f"w{seed}", "tiny", seed=seed)
    return [registry.publish(source, "coffee").version for _ in range(5)]


def test_concurrent_publishers_get_distinct_complete_versions(
    registry: AdapterRegistry, home: Path, tmp_path: Path
) -> None:
    index = "folder" if isinstance(registry.backend, FolderIndex) else "database"
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        work = [(index, str(home), str(tmp_path), seed) for seed in (1, 2)]
        results = list(pool.map(_publish_in_process, work))
    assert sorted(results[0] + results[1]) == list(range(1, 11))
    for manifest in registry.versions("coffee"):
        weights = registry.version_dir("coffee", manifest.version) / "adapter_model.safetensors"
        # Each version is whole: its manifest describes exactly its weights.
        assert fsutil.sha256_file(weights) == manifest.adapter_sha256
    assert registry.index("coffee").last_version == 10
    assert not list(home.glob("**/.staging-*"))


def test_a_crash_during_publish_leaves_no_version(
    folder_registry: AdapterRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(_: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(fsutil, "fsync_tree", crash)
    with pytest.raises(OSError, match="disk full"):
        _publish(folder_registry, tmp_path)
    folder = folder_registry.root / "coffee"
    assert folder_registry.domains() == []
    assert not list(folder.glob("v*"))
    assert not list(folder.glob(".staging-*"))


def test_staging_left_by_a_dead_process_is_cleaned_up(
    folder_registry: AdapterRegistry, tmp_path: Path
) -> None:
    folder = folder_registry.root / "coffee"
    dead = folder / ".staging-999999999-abc"
    alive = folder / f".staging-{os.getpid()}-def"
    dead.mkdir(parents=True)
    alive.mkdir()
    _publish(folder_registry, tmp_path)
    assert not dead.exists()
    assert alive.exists()


def test_resolve_prefers_prod_then_latest(registry: AdapterRegistry, tmp_path: Path) -> None:
    for seed in range(3):
        _publish(registry, tmp_path, seed)
    assert registry.resolve("coffee").version == 3
    registry.promote("coffee", 2)
    assert registry.resolve("coffee").version == 2
    assert registry.resolve("coffee@prod").version == 2
    assert registry.resolve("coffee@1").version == 1
    assert registry.resolve("coffee@v3").version == 3
    with pytest.raises(AdapterNotFound, match="no alias 'canary'"):
        registry.resolve("coffee@canary")
    with pytest.raises(AdapterNotFound, match="coffee@v7 does not exist"):
        registry.resolve("coffee@7")
    with pytest.raises(AdapterNotFound, match="no adapter is published for domain 'tea'"):
        registry.resolve("tea")


def test_publish_can_promote_in_the_same_step(registry: AdapterRegistry, tmp_path: Path) -> None:
    _publish(registry, tmp_path, 0, promote="prod")
    _publish(registry, tmp_path, 1)
    assert registry.index("coffee").aliases == {"prod": 1}
    _publish(registry, tmp_path, 2, promote="prod")
    assert registry.index("coffee").aliases == {"prod": 3}


def test_promote_and_rollback_walk_the_alias_history(
    registry: AdapterRegistry, tmp_path: Path
) -> None:
    for seed in range(3):
        _publish(registry, tmp_path, seed)
    registry.promote("coffee", 1)
    registry.promote("coffee", 3)
    registry.promote("coffee", 3)  # no-op: not recorded twice
    registry.promote("coffee", 2, alias="canary")
    assert registry.index("coffee").aliases == {"prod": 3, "canary": 2}
    assert registry.rollback("coffee").aliases["prod"] == 1
    with pytest.raises(RegistryError, match="no earlier version to roll back to"):
        registry.rollback("coffee")
    with pytest.raises(RegistryError, match="has no alias 'beta'"):
        registry.rollback("coffee", "beta")
    with pytest.raises(AdapterNotFound):
        registry.promote("coffee", 9)


def test_rollback_skips_removed_versions(registry: AdapterRegistry, tmp_path: Path) -> None:
    for seed in range(3):
        _publish(registry, tmp_path, seed)
    for version in (1, 2, 3):
        registry.promote("coffee", version)
    registry.remove("coffee", 2)
    assert registry.rollback("coffee").aliases["prod"] == 1


def test_remove_is_refused_while_an_alias_points_to_the_version(
    registry: AdapterRegistry, tmp_path: Path
) -> None:
    _publish(registry, tmp_path, 0, promote="prod")
    with pytest.raises(RegistryError, match="in use by alias prod"):
        registry.remove("coffee", 1)
    assert registry.version_dir("coffee", 1).is_dir()
    with pytest.raises(AdapterNotFound):
        registry.remove("coffee", 5)


def test_list_summarises_domains(registry: AdapterRegistry, tmp_path: Path) -> None:
    _publish(registry, tmp_path, 0)
    _publish(registry, tmp_path, 1, display_name="Bean There")
    if isinstance(registry.backend, FolderIndex):
        (registry.root / ".staging-1-x").mkdir()
    (summary,) = registry.list()
    assert summary.index.domain == "coffee"
    assert [m.version for m in summary.versions] == [1, 2]
    assert summary.latest.display_name == "Bean There"


# -- canaries ---------------------------------------------------------------------------


def _canary_domain(registry: AdapterRegistry, tmp_path: Path, versions: int = 3) -> None:
    for seed in range(versions):
        _publish(registry, tmp_path, seed)
    registry.promote("coffee", 1)


def test_a_canary_needs_a_version_beside_prod(registry: AdapterRegistry, tmp_path: Path) -> None:
    _publish(registry, tmp_path, 0)
    _publish(registry, tmp_path, 1)
    with pytest.raises(RegistryError, match="no 'prod' version"):
        registry.start_canary("coffee", 2, 10)
    registry.promote("coffee", 1)
    with pytest.raises(RegistryError, match="already prod"):
        registry.start_canary("coffee", 1, 10)
    with pytest.raises(AdapterNotFound):
        registry.start_canary("coffee", 9, 10)
    with pytest.raises(AdapterNotFound):
        registry.start_canary("tea", 1, 10)
    assert _nothing_left_for(registry, "tea")  # a refused canary leaves no folder behind
    for weight in (0, -1, 100.5, float("nan"), float("inf")):
        with pytest.raises(RegistryError, match="percentage"):
            registry.start_canary("coffee", 2, weight)
    index = registry.start_canary("coffee", 2, 10, CanaryGuard(min_answers=5))
    assert index.canary is not None
    assert (index.canary.version, index.canary.weight) == (2, 10)
    assert index.canary.guard == CanaryGuard(min_answers=5)
    assert registry.index("coffee").canary == index.canary  # written
    assert registry.resolve("coffee").version == 1  # the registry's own resolve: prod


def test_a_new_canary_replaces_the_running_one(registry: AdapterRegistry, tmp_path: Path) -> None:
    _canary_domain(registry, tmp_path)
    registry.start_canary("coffee", 2, 10)
    again = registry.start_canary("coffee", 2, 50)  # a new weight: no end recorded
    assert again.canary is not None and again.canary.weight == 50 and again.last_canary is None
    other = registry.start_canary("coffee", 3, 5)
    assert other.canary is not None and other.canary.version == 3
    assert other.last_canary is not None
    assert (other.last_canary.version, other.last_canary.outcome) == (2, "stopped")
    assert "replaced by a canary of v3" in other.last_canary.reason


def test_ending_a_canary(registry: AdapterRegistry, tmp_path: Path) -> None:
    _canary_domain(registry, tmp_path)
    with pytest.raises(RegistryError, match="no canary running"):
        registry.end_canary("coffee")
    with pytest.raises(AdapterNotFound):
        registry.end_canary("tea")
    registry.start_canary("coffee", 2, 10)
    with pytest.raises(RegistryError, match="is now v2, not v3"):
        registry.end_canary("coffee", "worse", automatic=True, version=3)
    index = registry.end_canary("coffee", "worse", automatic=True, version=2)
    assert index.canary is None and index.aliases == {"prod": 1}
    assert index.last_canary is not None
    assert (index.last_canary.outcome, index.last_canary.reason) == ("auto-stopped", "worse")
    registry.start_canary("coffee", 2, 10)
    ended = registry.end_canary("coffee", "enough").last_canary
    assert ended is not None and ended.outcome == "stopped"


def test_promoting_the_canary_ends_it_as_promoted(
    registry: AdapterRegistry, tmp_path: Path
) -> None:
    _canary_domain(registry, tmp_path)
    registry.start_canary("coffee", 2, 10)
    registry.promote("coffee", 3, alias="beta")  # another alias: the canary goes on
    assert registry.index("coffee").canary is not None
    index = registry.promote("coffee", 2)
    assert index.aliases["prod"] == 2 and index.canary is None
    assert index.last_canary is not None
    assert (index.last_canary.version, index.last_canary.outcome) == (2, "promoted")
    # Prod moved to another version than the canary's: the canary stops, not "promoted".
    registry.start_canary("coffee", 1, 10)
    index = registry.promote("coffee", 3)
    assert index.last_canary is not None
    assert (index.last_canary.version, index.last_canary.outcome) == (1, "stopped")
    assert index.last_canary.reason == "prod moved to v3"


def test_rolling_back_prod_during_a_canary_ends_the_canary(
    registry: AdapterRegistry, tmp_path: Path
) -> None:
    _canary_domain(registry, tmp_path)
    registry.promote("coffee", 2)
    registry.start_canary("coffee", 3, 10)
    index = registry.rollback("coffee")
    assert index.aliases["prod"] == 2  # prod stays
    assert index.canary is None
    assert index.last_canary is not None and index.last_canary.outcome == "rolled back"
    assert registry.rollback("coffee").aliases["prod"] == 1  # then a normal rollback


def test_the_canary_version_cannot_be_removed(registry: AdapterRegistry, tmp_path: Path) -> None:
    _canary_domain(registry, tmp_path)
    registry.start_canary("coffee", 2, 10)
    with pytest.raises(RegistryError, match="in use by alias canary"):
        registry.remove("coffee", 2)
    registry.remove("coffee", 3)
    registry.end_canary("coffee")
    registry.remove("coffee", 2)
    assert [m.version for m in registry.versions("coffee")] == [1]


def test_capture_is_off_until_set_and_kept_across_publishes(
    registry: AdapterRegistry, tmp_path: Path
) -> None:
    _publish(registry, tmp_path, 0)
    assert registry.index("coffee").capture is None  # off
    index = registry.set_capture("coffee", True)
    assert index.capture == CaptureSetting(enabled=True, retention_days=30)
    assert registry.set_capture("coffee", retention_days=7).capture == CaptureSetting(
        enabled=True, retention_days=7
    )
    _publish(registry, tmp_path, 1)  # a new version leaves the setting as it is
    assert registry.index("coffee").capture == CaptureSetting(enabled=True, retention_days=7)
    _publish(registry, tmp_path, 2, capture=False)
    assert registry.index("coffee").capture == CaptureSetting(enabled=False, retention_days=7)
    assert registry.index("coffee").last_version == 3


def test_capture_mistakes_are_refused_before_anything_is_written(
    registry: AdapterRegistry, tmp_path: Path
) -> None:
    with pytest.raises(RegistryError, match="retention_days"):
        _publish(registry, tmp_path, 0, capture=True, retention_days=0)
    assert registry.domains() == []
    with pytest.raises(AdapterNotFound):
        registry.set_capture("tea", True)
    assert _nothing_left_for(registry, "tea")
    _publish(registry, tmp_path, 0, capture=True, retention_days=90)
    assert registry.index("coffee").capture == CaptureSetting(enabled=True, retention_days=90)
    for days in (0, -1, 3651):
        with pytest.raises(RegistryError, match="retention_days"):
            registry.set_capture("coffee", True, days)
    assert registry.index("coffee").capture == CaptureSetting(enabled=True, retention_days=90)


def test_a_domain_json_written_before_capture_still_loads(
    folder_registry: AdapterRegistry, tmp_path: Path
) -> None:
    _publish(folder_registry, tmp_path, 0)
    path = folder_registry.root / "coffee" / "domain.json"
    old = {  # as an older lorastack wrote it: no `capture`
        "schema_version": 1,
        "domain": "coffee",
        "last_version": 1,
        "aliases": {"prod": 1},
        "alias_history": {},
        "canary": None,
        "last_canary": None,
    }
    path.write_text(json.dumps(old))
    index = folder_registry.index("coffee")
    assert index.capture is None and index.aliases == {"prod": 1}
    assert folder_registry.set_capture("coffee", True).aliases == {"prod": 1}
