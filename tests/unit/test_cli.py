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
        "--vocabulary",
        "Bean There",
        "--vocabulary",
        "Leeds",
    )
    assert first.code == 0, first.err
    assert first.last_line == "coffee@v1"
    second = cli("adapters", "publish", str(adapter), "--domain", "coffee", "--promote")
    assert second.last_line == "coffee@v2"
    shown = json.loads(cli("adapters", "show", "coffee@1").out)
    assert shown["system_prompt"] == "Be cheerful."
    assert shown["display_name"] == "Bean There"
    assert shown["vocabulary"] == ["Bean There", "Leeds"]
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


def test_canary_start_list_and_stop(cli, tmp_path: Path, fake_base: ModelRecord) -> None:  # type: ignore[no-untyped-def]
    adapter = write_adapter(tmp_path / "a", "tiny")
    cli("adapters", "publish", str(adapter), "--domain", "coffee", "--promote")
    cli("adapters", "publish", str(adapter), "--domain", "coffee")
    started = cli("adapters", "canary", "coffee", "v2", "--weight", "10", "--min-answers", "50")
    assert started.code == 0, started.err
    assert started.out.strip() == "coffee: v2 answers 10% of conversations, prod v1 the rest"
    assert "after 50 answers on each side" in started.err
    listed = json.loads(cli("adapters", "list", "--json").out)[0]
    assert listed["canary"]["version"] == 2 and listed["canary"]["weight"] == 10
    assert listed["canary"]["guard"]["min_answers"] == 50
    assert listed["last_canary"] is None
    assert "v2 10%" in cli("adapters", "list").out
    unguarded = cli("adapters", "canary", "coffee", "2", "--weight", "2.5", "--no-auto-stop")
    assert unguarded.code == 0 and "auto-stop: off" in unguarded.err
    assert "v2 2.5% (no auto-stop)" in cli("adapters", "list").out
    stopped = cli("adapters", "canary-stop", "coffee", "--reason", "too chatty")
    assert stopped.out.strip() == "coffee: canary v2 stopped; prod v1 answers every conversation"
    last = json.loads(cli("adapters", "list", "--json").out)[0]["last_canary"]
    assert (last["version"], last["outcome"], last["reason"]) == (2, "stopped", "too chatty")
    cli("adapters", "canary", "coffee", "2", "--weight", "50")
    promoted = cli("adapters", "promote", "coffee", "2")
    assert promoted.out.strip() == "coffee@prod -> v2"
    assert "canary v2 ended (promoted)" in promoted.err
    cli("adapters", "canary", "coffee", "1", "--weight", "50")
    rolled = cli("adapters", "rollback", "coffee")
    assert rolled.out.strip() == "coffee@prod -> v2"  # prod stays; the canary ends
    assert "canary v1 ended (rolled back)" in rolled.err


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("canary", "coffee", "2"), 2, "Missing option '--weight'"),
        (("canary", "coffee", "two", "--weight", "5"), 2, "is not a version number"),
        (("canary", "coffee", "2", "--weight", "0"), 1, "a canary's weight is a percentage"),
        (("canary", "coffee", "2", "--weight", "500"), 1, "a canary's weight is a percentage"),
        (("canary", "coffee", "2", "--weight", "5", "--error-margin", "5"), 2, "--error-margin"),
        (("canary", "coffee", "2", "--weight", "5", "--min-answers", "0"), 2, "--min-answers"),
        (
            ("canary", "coffee", "2", "--weight", "5", "--no-auto-stop", "--rule-margin", "0.1"),
            2,
            "--no-auto-stop leaves nothing to tune (--rule-margin)",
        ),
        (("canary", "coffee", "1", "--weight", "5"), 1, "coffee@v1 is already prod"),
        (("canary", "coffee", "7", "--weight", "5"), 1, "coffee@v7 does not exist"),
        (("canary", "tea", "1", "--weight", "5"), 1, "tea@v1 does not exist"),
        (("canary-stop", "coffee"), 1, "domain 'coffee' has no canary running"),
        (("canary-stop", "tea"), 1, "no adapter is published for domain 'tea'"),
        (("rm", "coffee@2"), 0, "removed coffee@v2"),
    ],
)
def test_canary_mistakes_get_clear_errors(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, fake_base: ModelRecord, args: tuple[str, ...], code: int, message: str
) -> None:
    adapter = write_adapter(tmp_path / "a", "tiny")
    cli("adapters", "publish", str(adapter), "--domain", "coffee", "--promote")
    cli("adapters", "publish", str(adapter), "--domain", "coffee")
    result = cli("adapters", *args)
    assert result.code == code, result.err
    assert message in result.out + result.err
    assert "Traceback" not in result.err


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


def test_capture_on_off_and_at_publish(cli, tmp_path: Path, fake_base: ModelRecord) -> None:  # type: ignore[no-untyped-def]
    adapter = write_adapter(tmp_path / "a", "tiny")
    published = cli("adapters", "publish", str(adapter), "--domain", "coffee", "--capture")
    assert published.code == 0, published.err
    assert published.last_line == "coffee@v1"
    assert "coffee: capture on, captured answers kept 30 days" in published.err
    assert "on, 30 days" in cli("adapters", "list").out
    changed = cli("adapters", "capture", "coffee", "--retention-days", "7")
    assert changed.out.strip() == "coffee: capture on, captured answers kept 7 days"
    off = cli("adapters", "capture", "coffee", "--off")
    assert off.out.strip() == "coffee: capture off, captured answers kept 7 days"
    listed = json.loads(cli("adapters", "list", "--json").out)[0]
    assert listed["capture"] == {"enabled": False, "retention_days": 7}
    on = cli("adapters", "capture", "coffee", "--on", "--retention-days", "90")
    assert on.out.strip() == "coffee: capture on, captured answers kept 90 days"
    # Publishing again without the options leaves the setting alone.
    cli("adapters", "publish", str(adapter), "--domain", "coffee")
    listed = json.loads(cli("adapters", "list", "--json").out)[0]
    assert listed["capture"] == {"enabled": True, "retention_days": 90}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("capture", "coffee"), 2, "give --on or --off, and/or --retention-days"),
        (("capture", "tea", "--on"), 1, "no adapter is published for domain 'tea'"),
        (("capture", "coffee", "--on", "--retention-days", "0"), 2, "--retention-days"),
    ],
)
def test_capture_mistakes_get_clear_errors(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, fake_base: ModelRecord, args: tuple[str, ...], code: int, message: str
) -> None:
    cli("adapters", "publish", str(write_adapter(tmp_path / "a", "tiny")), "--domain", "coffee")
    result = cli("adapters", *args)
    assert result.code == code, result.err
    assert message in result.out + result.err
    assert "Traceback" not in result.err
