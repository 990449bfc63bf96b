from pathlib import Path

import pytest

from lorastack.errors import SettingsError
from lorastack.settings import get_settings, load_settings


def test_defaults_are_local_and_safe(home: Path) -> None:
    settings = load_settings()
    assert settings.home == home
    assert settings.models_dir == home / "models"
    assert settings.adapters_dir == home / "adapters"
    assert settings.runs_dir == home / "runs"
    assert settings.max_lora_rank == 16
    assert settings.gateway.host == "127.0.0.1"
    assert settings.engine.host == "127.0.0.1"


def test_environment_overrides_nested_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORASTACK_ENGINE__PORT", "9100")
    monkeypatch.setenv("LORASTACK_MAX_LORA_RANK", "32")
    monkeypatch.setenv("LORASTACK_ENGINE__EXTRA_ARGS", '["--seed", "1"]')
    settings = load_settings()
    assert settings.engine.port == 9100
    assert settings.max_lora_rank == 32
    assert settings.engine.extra_args == ["--seed", "1"]


def test_publish_tolerances_default_and_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defaults = load_settings().publish
    assert (defaults.loss_tolerance, defaults.rate_tolerance) == (0.02, 0.05)
    monkeypatch.setenv("LORASTACK_PUBLISH__LOSS_TOLERANCE", "0.1")
    monkeypatch.setenv("LORASTACK_PUBLISH__RATE_TOLERANCE", "0")
    publish = load_settings().publish
    assert (publish.loss_tolerance, publish.rate_tolerance) == (0.1, 0.0)


def test_home_expands_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("LORASTACK_HOME", "~/state")
    assert load_settings().home == tmp_path / "state"


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_config_file_is_read_and_environment_wins(
    suffix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / f"lorastack{suffix}"
    if suffix == ".yaml":
        config.write_text("max_lora_rank: 64\nengine:\n  port: 9200\n  max_loras: 3\n")
    else:
        config.write_text("max_lora_rank = 64\n[engine]\nport = 9200\nmax_loras = 3\n")
    monkeypatch.setenv("LORASTACK_CONFIG", str(config))
    monkeypatch.setenv("LORASTACK_ENGINE__PORT", "9300")
    settings = load_settings()
    assert settings.max_lora_rank == 64
    assert settings.engine.max_loras == 3
    assert settings.engine.port == 9300


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("LORASTACK_MAX_LORA_RANK", "7", "LORASTACK_MAX_LORA_RANK: must be one of 1, 8, 16"),
        ("LORASTACK_ENGINE__PORT", "70000", "LORASTACK_ENGINE__PORT: port must be between"),
        ("LORASTACK_ENGINE__PORT", "abc", "LORASTACK_ENGINE__PORT"),
        ("LORASTACK_ENGINE__GPU_MEMORY_UTILIZATION", "1.5", "must be in (0, 1]"),
        ("LORASTACK_ENGINE__MAX_CPU_LORAS", "1", "max_cpu_loras (1) must be at least max_loras"),
        ("LORASTACK_GATEWAY__ADMIN_KEY", "short", "admin_key must be at least 16"),
        ("LORASTACK_PUBLISH__LOSS_TOLERANCE", "-0.1", "LORASTACK_PUBLISH__LOSS_TOLERANCE"),
        ("LORASTACK_PUBLISH__RATE_TOLERANCE", "2", "less than or equal to 1"),
    ],
)
def test_bad_values_fail_fast_naming_the_variable(
    variable: str, value: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert message in str(raised.value)
    assert "Traceback" not in str(raised.value)


def test_public_bind_is_allowed_with_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORASTACK_GATEWAY__HOST", "0.0.0.0")
    monkeypatch.setenv("LORASTACK_GATEWAY__API_KEYS", '["k1"]')
    assert load_settings().gateway.host == "0.0.0.0"


def test_home_that_is_a_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "not-a-folder"
    file.write_text("")
    monkeypatch.setenv("LORASTACK_HOME", str(file))
    with pytest.raises(SettingsError, match="is not a folder"):
        load_settings()


def test_unknown_config_keys_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("max_lora_rnak: 8\n")
    monkeypatch.setenv("LORASTACK_CONFIG", str(config))
    with pytest.raises(SettingsError, match="MAX_LORA_RNAK: unknown setting"):
        load_settings()


@pytest.mark.parametrize("name", ["missing.yaml", "settings.ini"])
def test_bad_config_file_paths(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / name
    if name.endswith(".ini"):
        path.write_text("")
    monkeypatch.setenv("LORASTACK_CONFIG", str(path))
    with pytest.raises(SettingsError, match="LORASTACK_CONFIG"):
        load_settings()


def test_settings_are_read_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_settings()
    monkeypatch.setenv("LORASTACK_MAX_LORA_RANK", "64")
    assert get_settings() is first
