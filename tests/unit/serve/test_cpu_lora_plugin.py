"""The plugin goes into vLLM only where it was written for, and says so once where it stays out."""

from __future__ import annotations

import logging

import pytest

from lorastack.serve.cpu_lora import plugin

vllm = pytest.importorskip("vllm")
from vllm.platforms import current_platform  # noqa: E402


@pytest.fixture
def platform_class(monkeypatch: pytest.MonkeyPatch) -> type:
    """vLLM's platform class, with its own `get_punica_wrapper` restored afterwards."""
    cls = type(current_platform)
    monkeypatch.setattr(cls, "get_punica_wrapper", cls.__dict__["get_punica_wrapper"])
    return cls


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == plugin.logger.name]


def test_on_the_cpu_build_it_was_written_for_it_swaps_the_wrapper_in(
    platform_class: type, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(plugin.SWITCH, raising=False)
    monkeypatch.setattr(vllm, "__version__", "0.32.0")
    monkeypatch.setattr(platform_class, "is_cpu", lambda self: True)
    with caplog.at_level(logging.INFO, logger=plugin.logger.name):
        plugin.register()
    assert current_platform.get_punica_wrapper() == plugin.WRAPPER
    assert len(_lines(caplog)) == 1 and "on" in _lines(caplog)[0]


@pytest.mark.parametrize(
    ("switch", "version", "is_cpu", "why"),
    [
        (None, "0.33.0", True, "written for vLLM 0.32.x, this is vLLM 0.33.0"),
        (None, "0.32.0", False, "CPU platform only"),
        ("vllm", "0.32.0", True, "asks for vLLM's own LoRA ops"),
        ("fast", "0.32.0", True, "neither"),
    ],
    ids=["other-vllm", "other-platform", "turned-off", "unknown-switch"],
)
def test_anywhere_else_it_stays_out_and_logs_one_line(
    platform_class: type,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    switch: str | None,
    version: str,
    is_cpu: bool,
    why: str,
) -> None:
    before = current_platform.get_punica_wrapper()
    if switch is None:
        monkeypatch.delenv(plugin.SWITCH, raising=False)
    else:
        monkeypatch.setenv(plugin.SWITCH, switch)
    monkeypatch.setattr(vllm, "__version__", version)
    monkeypatch.setattr(platform_class, "is_cpu", lambda self: is_cpu)
    with caplog.at_level(logging.INFO, logger=plugin.logger.name):
        plugin.register()
    assert current_platform.get_punica_wrapper() == before
    lines = _lines(caplog)
    assert len(lines) == 1
    assert "off" in lines[0] and why in lines[0]


def test_the_entry_point_vllm_loads_is_this_register() -> None:
    from importlib.metadata import entry_points

    points = {p.name: p.value for p in entry_points(group="vllm.general_plugins")}
    assert points["lorastack_cpu_lora"] == "lorastack.serve.cpu_lora.plugin:register"


class _Platform:
    """vLLM 0.32's CPU platform in the one respect the compile switch changes."""

    @classmethod
    def check_and_update_config(cls, vllm_config: object) -> None:
        vllm_config.compilation_config.mode = 2  # type: ignore[attr-defined]
        if vllm_config.lora_config is not None:  # type: ignore[attr-defined]
            vllm_config.compilation_config.mode = 0  # type: ignore[attr-defined]


def _config() -> object:
    from types import SimpleNamespace

    return SimpleNamespace(lora_config=object(), compilation_config=SimpleNamespace(mode=3))


def test_the_compile_switch_keeps_compilation_with_lora_on() -> None:
    untouched = _config()
    _Platform.check_and_update_config(untouched)
    assert untouched.compilation_config.mode == 0  # type: ignore[attr-defined]

    class Platform(_Platform):
        pass

    plugin.keep_compilation_with_lora(Platform)
    plugin.keep_compilation_with_lora(Platform)  # a second register() in the process
    config = _config()
    lora = config.lora_config  # type: ignore[attr-defined]
    Platform.check_and_update_config(config)
    assert config.compilation_config.mode == 2  # type: ignore[attr-defined]
    assert config.lora_config is lora  # type: ignore[attr-defined]


def test_vllms_cpu_platform_reads_lora_config_only_to_turn_compilation_off() -> None:
    """Hiding `lora_config` from the check changes nothing else on the vLLM pinned; a vLLM
    that reads it for more fails here, not in an engine."""
    import inspect

    from vllm.platforms.cpu import CpuPlatform

    source = inspect.getsource(CpuPlatform.check_and_update_config)
    assert source.count("lora_config") == 1
    assert "if vllm_config.lora_config is not None:\n" in source
    assert "compilation_config.mode = CompilationMode.NONE" in source
