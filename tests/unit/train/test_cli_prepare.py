"""`lorastack data prepare`, in-process, with the regex fake for PII detection."""

import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.usefixtures("fake_pii_detector")

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "data"


def _chat(user: str, assistant: str) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": user},
            {"role": "assistant", "content": assistant},
        ]
    }


def _write(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _texts(out: Path) -> str:
    return "".join(
        (out / f"{split}.jsonl").read_text() for split in ("train", "validation", "test")
    )


def test_prepare_prints_the_folder_last_and_scrubs_by_default(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "dataset"
    result = cli("data", "prepare", str(EXAMPLES / "tiny-chat.jsonl"), "--out", str(out))
    assert result.code == 0, result.err
    assert result.last_line == str(out)
    assert sorted(p.name for p in out.iterdir()) == [
        "report.json",
        "report.md",
        "test.jsonl",
        "train.jsonl",
        "validation.jsonl",
    ]
    text = _texts(out)
    assert "jane.porter@example.com" not in text and "Jane Porter" not in text
    assert "<EMAIL_ADDRESS_1>" in text and "<PERSON_1>" in text
    report = json.loads((out / "report.json").read_text())
    assert report["pii"]["entities"] == {"EMAIL_ADDRESS": 2, "PERSON": 2}
    assert report["records"] == {"read": 25, "kept": 22}
    assert report["duplicates_removed"] == 3
    assert "kept 22 of 25 records" in result.err


def test_no_scrub_keeps_the_data_as_it_is(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "dataset"
    source = str(EXAMPLES / "tiny-chat.jsonl")
    result = cli("data", "prepare", source, "--out", str(out), "--no-scrub")
    assert result.code == 0, result.err
    assert "jane.porter@example.com" in _texts(out)
    assert json.loads((out / "report.json").read_text())["pii"]["scrubbed"] is False


def test_prepare_takes_every_option(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    voice = tmp_path / "voice.txt"
    voice.write_text("You are Bean There's barista. Be warm and brief.\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text("entities: {EMAIL_ADDRESS: {input: redact}}\n")
    out = tmp_path / "dataset"
    result = cli(
        "data",
        "prepare",
        str(EXAMPLES / "tiny-chat.jsonl"),
        str(EXAMPLES / "tiny-sharegpt.jsonl"),
        "--out",
        str(out),
        "--split",
        "70,15,15",
        "--seed",
        "3",
        "--max-chars",
        "220",
        "--near-dup-threshold",
        "0.9",
        "--policy",
        str(policy),
        "--system-prompt-file",
        str(voice),
        "--augment",
        "1",
        "--paraphrases",
        "2",
    )
    assert result.code == 0, result.err
    report = json.loads((out / "report.json").read_text())
    assert report["options"]["paraphrases"] == 2
    assert report["options"]["split"] == pytest.approx([0.7, 0.15, 0.15])
    assert report["options"]["seed"] == 3
    assert report["options"]["system_prompt"] == "You are Bean There's barista. Be warm and brief."
    assert report["augmented"]["total"] == report["splits"]["train"] * 3 // 4  # 1 + 2 + 1
    assert report["augmented"]["kinds"]["paraphrase"] == report["splits"]["train"] // 2
    assert report["dropped"]["too_long"] == 2
    assert "<EMAIL_ADDRESS>" in _texts(out)


def test_prepare_csv_with_forced_format_and_stratification(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "tickets"
    source = str(EXAMPLES / "tiny-tickets.csv")
    result = cli("data", "prepare", source, "-o", str(out), "--format", "prompt-completion")
    assert result.code == 0, result.err
    report = json.loads((out / "report.json").read_text())
    assert report["stratified"] is True
    assert report["format"] == "prompt-completion"
    unstratified = cli("data", "prepare", source, "-o", str(tmp_path / "u"), "--no-stratify")
    assert json.loads((tmp_path / "u" / "report.json").read_text())["stratified"] is False
    assert unstratified.code == 0


def test_invalid_records_exit_1_with_a_readable_list(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = {"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "hey"}]}
    source = _write(tmp_path / "chats.jsonl", [_chat("a", "b"), _chat("c", "d"), bad])
    out = tmp_path / "dataset"
    result = cli("data", "prepare", str(source), "--out", str(out))
    assert result.code == 1
    assert "Traceback" not in result.err
    assert "\nerror: 1 record is invalid (drop them with --skip-invalid):\n" in result.err
    assert (
        f"{source}:3: messages[1].role: expected one of system, user, assistant, got 'bot'"
        in result.err
    )
    assert result.out == ""
    assert not out.exists()
    skipped = cli("data", "prepare", str(source), "--out", str(out), "--skip-invalid")
    assert skipped.code == 0, skipped.err
    assert json.loads((out / "report.json").read_text())["dropped"]["invalid"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--split", "0.5,0.5"], "expected three numbers"),
        (["--split", "0.5,0.1,0.1"], "must add up to 1"),
        (["--near-dup-threshold", "1.5"], "near_dup_threshold"),
    ],
)
def test_bad_options_exit_1_without_a_traceback(
    cli, tmp_path: Path, args: list[str], message: str
) -> None:  # type: ignore[no-untyped-def]
    source = _write(tmp_path / "in.jsonl", [_chat("a", "b")])
    result = cli("data", "prepare", str(source), "--out", str(tmp_path / "o"), *args)
    assert result.code == 1 and message in result.err and "Traceback" not in result.err


def test_missing_mixed_and_usage_errors(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = str(tmp_path / "o")
    missing = cli("data", "prepare", str(tmp_path / "nope.jsonl"), "--out", out)
    assert missing.code == 1 and "cannot read" in missing.err
    texts = _write(tmp_path / "t.jsonl", [{"text": "hello"}])
    chats = _write(tmp_path / "c.jsonl", [_chat("a", "b")])
    mixed = cli("data", "prepare", str(texts), str(chats), "--out", out)
    assert mixed.code == 1 and "cannot mix record formats" in mixed.err
    bad_format = cli("data", "prepare", str(texts), "--out", out, "--format", "xml")
    assert bad_format.code == 2 and "'xml' is not one of" in bad_format.err
    both = cli(
        "data", "prepare", str(chats), "--out", out, "--system-prompt", "x",
        "--system-prompt-file", str(texts),
    )  # fmt: skip
    assert both.code == 2 and "not both" in both.err
    no_out = cli("data", "prepare", str(chats))
    assert no_out.code == 2


def test_same_seed_gives_byte_identical_folders(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = str(EXAMPLES / "tiny-chat.jsonl")
    for name in ("a", "b"):
        result = cli("data", "prepare", source, "--out", str(tmp_path / name), "--augment", "2")
        assert result.code == 0, result.err
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl", "report.json", "report.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_scrub_command_still_works(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text('{"text": "I am Jane Porter"}\n')
    result = cli("data", "scrub", str(source), str(target))
    assert result.code == 0, result.err
    assert target.read_text() == '{"text": "I am <PERSON_1>"}\n'
