"""lorastack's vLLM LoRA resolver on a real registry in tmp, without a vLLM server."""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lorastack import fsutil
from lorastack.models import METADATA_FILE, ModelRecord, ModelStore
from lorastack.registry import AdapterRegistry
from tests.fakes import write_adapter, write_base_checkpoint

pytest.importorskip("vllm")
from vllm.exceptions import VLLMNotFoundError, VLLMValidationError
from vllm.lora.request import LoRARequest
from vllm.lora.resolver import LoRAResolverRegistry

from lorastack.serve import lora_resolver
from lorastack.serve.adapter_cache import AdapterCache
from lorastack.serve.lora_resolver import AdapterRefused, RegistryResolver

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"


@pytest.fixture
def cache(registry: AdapterRegistry, tmp_path: Path) -> AdapterCache:
    return AdapterCache(registry, tmp_path / "cache")


@pytest.fixture
def resolver(cache: AdapterCache) -> RegistryResolver:
    return RegistryResolver(cache)


@pytest.fixture
def served(fake_base: ModelRecord) -> str:
    """What vLLM passes as `base_model_name`: the server's `--model`, a checkpoint path."""
    return str(fake_base.path)


def _publish(registry: AdapterRegistry, tmp_path: Path, seed: int, **kwargs: object) -> int:
    source = write_adapter(tmp_path / f"src-{seed}", "tiny", seed=seed)
    return registry.publish(source, "coffee", **kwargs).version  # type: ignore[arg-type]


def _resolve(resolver: RegistryResolver, served: str, name: str) -> LoRARequest | None:
    return asyncio.run(resolver.resolve_lora(served, name))


def _cache_entries(cache: AdapterCache) -> list[str]:
    if not cache.root.is_dir():
        return []
    return sorted(p.name for p in cache.root.iterdir() if p.is_dir())


def test_a_version_resolves_to_a_checked_copy_in_the_cache(
    registry: AdapterRegistry, resolver: RegistryResolver, served: str, tmp_path: Path
) -> None:
    _publish(registry, tmp_path, seed=0, promote="prod")
    manifest = registry.manifest("coffee", 1)

    request = _resolve(resolver, served, "coffee@v1")

    assert request is not None
    assert request.lora_name == "coffee@v1"
    assert request.lora_int_id >= 1
    path = Path(request.lora_path)
    assert path.parent == resolver.cache.root
    assert path.name.startswith(manifest.adapter_sha256)
    assert sorted(p.name for p in path.iterdir()) == [CONFIG, WEIGHTS]
    assert fsutil.sha256_file(path / WEIGHTS) == manifest.adapter_sha256
    published = registry.version_dir("coffee", 1)
    assert (path / CONFIG).read_bytes() == (published / CONFIG).read_bytes()
    # `coffee@1` is the same version under another name: the same cached folder.
    again = _resolve(resolver, served, "coffee@1")
    assert again is not None and again.lora_name == "coffee@1"
    assert again.lora_path == request.lora_path
    assert _cache_entries(resolver.cache) == [path.name]


@pytest.mark.parametrize("name", ["coffee", "coffee@prod", "coffee@staging"])
def test_an_alias_is_refused_with_a_message_that_says_to_name_a_version(
    registry: AdapterRegistry, resolver: RegistryResolver, served: str, tmp_path: Path, name: str
) -> None:
    _publish(registry, tmp_path, seed=0, promote="prod")

    with pytest.raises(VLLMValidationError) as refused:
        _resolve(resolver, served, name)

    message = str(refused.value)
    assert f"`{name}` names an alias" in message
    assert "Name a version instead (`coffee@vN`)" in message
    if name != "coffee@staging":  # no such alias: nothing it points to
        assert "it points to coffee@v1 now" in message
    assert refused.value.parameter == "model"
    assert _cache_entries(resolver.cache) == []


def test_after_a_promote_each_version_name_keeps_its_own_weights(
    registry: AdapterRegistry, resolver: RegistryResolver, served: str, tmp_path: Path
) -> None:
    _publish(registry, tmp_path, seed=0, promote="prod")
    first = _resolve(resolver, served, "coffee@v1")
    _publish(registry, tmp_path, seed=1, promote="prod")

    second = _resolve(resolver, served, "coffee@v2")
    first_again = _resolve(resolver, served, "coffee@v1")

    assert first is not None and second is not None and first_again is not None
    assert first_again.lora_path == first.lora_path != second.lora_path
    for request, version in ((first, 1), (second, 2)):
        weights = fsutil.sha256_file(Path(request.lora_path) / WEIGHTS)
        assert weights == registry.manifest("coffee", version).adapter_sha256


def test_tampered_weights_are_refused_and_never_cached(
    registry: AdapterRegistry, resolver: RegistryResolver, served: str, tmp_path: Path
) -> None:
    _publish(registry, tmp_path, seed=0)
    weights = registry.version_dir("coffee", 1) / WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))

    with pytest.raises(AdapterRefused) as refused:
        _resolve(resolver, served, "coffee@v1")

    assert refused.value.http_status == 500
    assert refused.value.message == (
        "`coffee@v1` cannot be served: coffee@v1: adapter weights do not match the published hash"
    )
    assert _cache_entries(resolver.cache) == []
    assert list(resolver.cache.root.glob(f"{fsutil.STAGING_PREFIX}*")) == []


def test_a_config_changed_since_publishing_is_refused(
    registry: AdapterRegistry, resolver: RegistryResolver, served: str, tmp_path: Path
) -> None:
    _publish(registry, tmp_path, seed=0)
    config_path = registry.version_dir("coffee", 1) / CONFIG
    config = json.loads(config_path.read_text())
    config["lora_alpha"] = 64
    config_path.write_text(json.dumps(config))

    with pytest.raises(AdapterRefused) as refused:
        _resolve(resolver, served, "coffee@v1")

    assert "adapter_config.json declares" in refused.value.message
    assert "'alpha': 64" in refused.value.message
    assert _cache_entries(resolver.cache) == []


def test_an_adapter_trained_on_another_base_model_is_refused(
    registry: AdapterRegistry, resolver: RegistryResolver, store: ModelStore, tmp_path: Path
) -> None:
    _publish(registry, tmp_path, seed=0)
    other = store.add(write_base_checkpoint(tmp_path / "other-checkpoint"), "other")

    with pytest.raises(VLLMValidationError) as refused:
        _resolve(resolver, str(other.path), "coffee@v1")
    assert "`coffee@v1` was trained on base model tiny, but this server runs other" in str(
        refused.value
    )

    # A model the store does not hold cannot be checked against the manifest: refused too.
    with pytest.raises(VLLMValidationError) as unknown:
        _resolve(resolver, str(tmp_path / "somewhere-else"), "coffee@v1")
    assert "not a base model in lorastack's model store" in str(unknown.value)
    assert _cache_entries(resolver.cache) == []


def test_the_same_base_model_name_with_other_weights_is_refused(
    registry: AdapterRegistry,
    resolver: RegistryResolver,
    served: str,
    store: ModelStore,
    tmp_path: Path,
) -> None:
    _publish(registry, tmp_path, seed=0)
    # The model store's `tiny` now records other weights than the adapter was trained on.
    record_path = store.root / "tiny" / METADATA_FILE
    record = json.loads(record_path.read_text())
    record["checkpoint_sha256"] = "0" * 64
    record_path.write_text(json.dumps(record))

    with pytest.raises(VLLMValidationError) as refused:
        _resolve(resolver, served, "coffee@v1")
    assert "trained on other weights of tiny than this server runs" in str(refused.value)


def test_unknown_names_are_left_to_other_resolvers_and_unknown_versions_are_404(
    registry: AdapterRegistry, resolver: RegistryResolver, served: str, tmp_path: Path
) -> None:
    _publish(registry, tmp_path, seed=0)

    for not_ours in ["tea@v1", "tea", "Org/Some-LoRA", "../coffee@v1"]:
        assert _resolve(resolver, served, not_ours) is None
    with pytest.raises(VLLMNotFoundError) as missing:
        _resolve(resolver, served, "coffee@v9")
    assert str(missing.value) == "coffee@v9 does not exist in the lorastack registry"


def test_concurrent_resolutions_of_one_version_copy_it_once(
    registry: AdapterRegistry, cache: AdapterCache, served: str, tmp_path: Path
) -> None:
    _publish(registry, tmp_path, seed=0)
    names = ["coffee@v1", "coffee@1"] * 4

    with ThreadPoolExecutor(len(names)) as pool:
        found = list(pool.map(lambda name: cache.get(name, served), names))

    assert all(f is not None for f in found)
    assert sum(f.copied for f in found if f is not None) == 1
    assert len({f.path for f in found if f is not None}) == 1
    assert len(_cache_entries(cache)) == 1


def test_a_cached_copy_that_changed_is_copied_again(
    registry: AdapterRegistry, cache: AdapterCache, served: str, tmp_path: Path
) -> None:
    _publish(registry, tmp_path, seed=0)
    first = cache.get("coffee@v1", served)
    assert first is not None and first.copied
    (first.path / WEIGHTS).write_bytes(b"damaged")

    again = cache.get("coffee@v1", served)

    assert again is not None and again.copied and again.path == first.path
    assert fsutil.sha256_file(again.path / WEIGHTS) == first.manifest.adapter_sha256


@pytest.fixture
def resolvers(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """vLLM's process-wide resolver registry, empty and restored afterwards."""
    empty: dict[str, object] = {}
    monkeypatch.setattr(LoRAResolverRegistry, "resolvers", empty)
    return empty


def test_the_plugin_does_nothing_unless_the_environment_asks(
    resolvers: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(lora_resolver.HOME_ENV, raising=False)
    lora_resolver.register()
    assert resolvers == {}


def test_the_plugin_registers_the_resolver_on_the_home_it_is_given(
    resolvers: dict[str, object],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    registry: AdapterRegistry,
    home: Path,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv(lora_resolver.HOME_ENV, str(home))
    monkeypatch.setenv(lora_resolver.CACHE_ENV, str(tmp_path / "vllm-cache"))
    monkeypatch.delenv(lora_resolver.RUNTIME_LORA_ENV, raising=False)
    with caplog.at_level(logging.INFO, logger=lora_resolver.logger.name):
        lora_resolver.register()
    lines = [r.getMessage() for r in caplog.records if r.name == lora_resolver.logger.name]
    assert "lorastack's LoRA resolver serves domain versions" in lines[0]
    assert "vLLM will not consult lorastack's LoRA resolver" in lines[1]
    resolver = resolvers[lora_resolver.RESOLVER_NAME]
    assert isinstance(resolver, RegistryResolver)
    assert str(home / "lorastack.db") in resolver.cache.registry.backend.description
    assert resolver.cache.root == tmp_path / "vllm-cache"

    monkeypatch.setenv(lora_resolver.HOME_ENV, str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="not a folder"):
        lora_resolver.register()


def test_the_cache_defaults_to_the_users_cache_folder(tmp_path: Path) -> None:
    config = lora_resolver.ResolverConfig.from_env(
        {lora_resolver.HOME_ENV: str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    )
    assert config is not None
    assert config.cache_dir == tmp_path / "xdg" / "lorastack" / "vllm-adapters"


def test_the_entry_point_vllm_loads_is_this_register() -> None:
    from importlib.metadata import entry_points

    points = {p.name: p.value for p in entry_points(group="vllm.general_plugins")}
    assert points["lorastack_registry"] == "lorastack.serve.lora_resolver:register"
