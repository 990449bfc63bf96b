"""The `lorastack` command line, run in-process through its real entry point."""

import json
from pathlib import Path

import pytest

from lorastack.models import ModelRecord
from tests.fakes import write_adapter, write_base_checkpoint


def test_publish_prints_the_reference_last(cli, tmp_path: Path, fake_base: ModelRecord) -> None:  # type: ignore[no-untyped-def]
    adapter = write_adapter(tmp_path / "a", "tiny")
    prompt = tmp_path / "voice.txt"
    prompt.write_text("Be cheerful.\n")
    first = cli(
        "adapters",
        "publish",
        str(adapter),
        "--domain",
        "coffee",
        "--system-prompt-file",
        str(prompt),
        "--display-name",
        "Bean There",
    )
    assert first.code == 0, first.err
    assert first.last_line == "coffee@v1"
    second = cli("adapters", "publish", str(adapter), "--domain", "coffee", "--promote")
    assert second.last_line == "coffee@v2"
    shown = json.loads(cli("adapters", "show", "coffee@1").out)
    assert shown["system_prompt"] == "Be cheerful."
    assert shown["display_name"] == "Bean There"
    assert shown["aliases"] == []
    assert json.loads(cli("adapters", "show", "coffee").out)["aliases"] == ["prod"]
    listed = json.loads(cli("adapters", "list", "--json").out)
    assert listed[0]["domain"] == "coffee"
    assert listed[0]["aliases"] == {"prod": 2}
    assert [v["version"] for v in listed[0]["versions"]] == [1, 2]
    table = cli("adapters", "list").out
    assert "coffee" in table and "prod->v2" in table


def test_promote_rollback_and_rm(cli, tmp_path: Path, fake_base: ModelRecord) -> None:  # type: ignore[no-untyped-def]
    adapter = write_adapter(tmp_path / "a", "tiny")
    for _ in range(2):
        cli("adapters", "publish", str(adapter), "--domain", "coffee")
    assert cli("adapters", "promote", "coffee", "1").out.strip() == "coffee@prod -> v1"
    assert cli("adapters", "promote", "coffee", "v2").out.strip() == "coffee@prod -> v2"
    refused = cli("adapters", "rm", "coffee@2")
    assert refused.code == 1
    assert refused.err.strip() == (
        "error: coffee@v2 is in use by alias prod; promote another version first"
    )
    assert cli("adapters", "rollback", "coffee").out.strip() == "coffee@prod -> v1"
    assert cli("adapters", "rm", "coffee@2").out.strip() == "removed coffee@v2"
    assert cli("adapters", "rm", "coffee").code == 1


def test_validate_exits_1_with_a_one_line_reason(
    cli, tmp_path: Path, fake_base: ModelRecord
) -> None:  # type: ignore[no-untyped-def]
    good = cli("adapters", "validate", str(write_adapter(tmp_path / "good", "tiny")))
    assert good.code == 0
    assert good.out.startswith("ok: LoRA r=8 alpha=16 on tiny")
    bad = cli("adapters", "validate", str(write_adapter(tmp_path / "bad", "tiny", use_dora=True)))
    assert bad.code == 1
    assert bad.err == "error: use_dora is true; vLLM cannot serve DoRA adapters\n"
    assert "Traceback" not in bad.err


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("adapters", "show", "../etc"), 1, "is not a plain name"),
        (("adapters", "show", "nothing"), 1, "no adapter is published for domain 'nothing'"),
        (("adapters", "promote", "coffee", "latest"), 2, "is not a version number"),
        (("adapters", "bogus"), 2, "No such command"),
        (("model", "add", "/nonexistent", "--name", "x"), 1, "no config.json"),
    ],
)
def test_user_mistakes_get_clear_errors(
    cli, args: tuple[str, ...], code: int, message: str
) -> None:  # type: ignore[no-untyped-def]
    result = cli(*args)
    assert result.code == code
    assert message in result.err
    assert "Traceback" not in result.err


def test_bad_settings_exit_2(cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("LORASTACK_MAX_LORA_RANK", "3")
    result = cli("adapters", "list")
    assert result.code == 2
    assert "LORASTACK_MAX_LORA_RANK: must be one of" in result.err


def test_config_option_reads_a_settings_file(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LORASTACK_HOME")
    monkeypatch.setenv("LORASTACK_CONFIG", "")  # --config sets it; restored after the test
    config = tmp_path / "settings.yaml"
    config.write_text(f"home: {tmp_path / 'elsewhere'}\n")
    checkpoint = write_base_checkpoint(tmp_path / "ckpt")
    result = cli("--config", str(config), "model", "add", str(checkpoint), "--name", "mine")
    assert result.code == 0, result.err
    assert (tmp_path / "elsewhere" / "models" / "mine").is_dir()
    listed = json.loads(cli("--config", str(config), "model", "list", "--json").out)
    assert [m["name"] for m in listed] == ["mine"]


def test_model_pull_prints_the_checkpoint_path_last(
    cli,
    monkeypatch: pytest.MonkeyPatch,
    bundled_model: ModelRecord,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setenv("LORASTACK_HOME", str(bundled_model.path.parent.parent))
    result = cli("model", "pull")
    assert result.code == 0
    assert result.last_line == str(bundled_model.path)
    assert "already provisioned" in result.err
