"""`lorastack guard` and `lorastack data scrub`, with the regex fake for detection."""

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("fake_pii_detector")


def test_guard_scan_answers_every_line_and_survives_bad_ones(cli) -> None:  # type: ignore[no-untyped-def]
    stdin = "\n".join(
        [
            json.dumps({"text": "I'm Jane Porter, jane@example.com"}),
            "not json",
            json.dumps({"txt": "wrong field"}),
            "",
            json.dumps({"text": "nothing here"}),
        ]
    )
    result = cli("guard", "scan", stdin=stdin)
    assert result.code == 0
    lines = [json.loads(line) for line in result.out.splitlines()]
    assert lines[0] == {
        "text": "I'm Jane Porter, jane@example.com",
        "redacted": "I'm <PERSON_1>, <EMAIL_ADDRESS_1>",
        "entities": [
            {"type": "PERSON", "start": 4, "end": 15, "score": 0.85, "action": "mask"},
            {"type": "EMAIL_ADDRESS", "start": 17, "end": 33, "score": 0.9, "action": "mask"},
        ],
    }
    assert lines[1]["line"] == 2 and lines[1]["error"].startswith("not JSON")
    assert lines[2] == {"error": 'expected an object with a "text" string', "line": 3}
    assert lines[3]["redacted"] == "nothing here"
    assert len(lines) == 4


def test_guard_scan_uses_the_domain_policy(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    (home / "policies").mkdir(parents=True)
    (home / "policies" / "bank.yaml").write_text("entities: {PERSON: {input: redact}}\n")
    stdin = json.dumps({"text": "I'm Jane Porter"})
    assert "<PERSON>" in cli("guard", "scan", "--domain", "bank", stdin=stdin).out
    assert "<PERSON_1>" in cli("guard", "scan", "--domain", "coffee", stdin=stdin).out


def test_guard_scan_reports_a_bad_policy(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    policy = tmp_path / "p.yaml"
    policy.write_text("defaults: {input: shred}\n")
    result = cli("guard", "scan", "--policy", str(policy))
    assert result.code == 1
    assert "defaults.input" in result.err


def test_guard_eval_scores_each_entity(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "eval.jsonl"
    records = [
        {"text": "I'm Jane Porter", "spans": [{"start": 4, "end": 15, "type": "PERSON"}]},
        {
            "text": "mail bob@example.com",
            "spans": [{"start": 5, "end": 20, "type": "EMAIL_ADDRESS"}],
        },
        {
            "text": "call +1 415 555 0132",
            "spans": [{"start": 5, "end": 20, "type": "PHONE_NUMBER"}],
        },
        {"text": "I'm Sam Nobody", "spans": [{"start": 4, "end": 14, "type": "PERSON"}]},
        {"text": "José García ordered", "spans": []},
    ]
    data.write_text("\n".join(json.dumps(r) for r in records))
    report = json.loads(cli("guard", "eval", str(data), "--json").out)
    assert report["entities"]["PERSON"] == {
        "precision": 0.5,
        "recall": 0.5,
        "f2": 0.5,
        "support": 2,
        "false_positives": 1,
    }
    assert report["entities"]["EMAIL_ADDRESS"]["recall"] == 1.0
    assert report["leaked_values"] == 1  # "Sam Nobody" was missed
    assert report["leak_rate"] == 0.25
    assert report["negatives_changed_rate"] == 1.0
    table = cli("guard", "eval", str(data)).out
    assert "PERSON" in table and "leak rate: 25.00%" in table


def test_guard_eval_names_the_bad_line(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "eval.jsonl"
    data.write_text('{"text": "ok", "spans": []}\n{"text": "x", "spans": [{"start": 0}]}\n')
    result = cli("guard", "eval", str(data))
    assert result.code == 1
    assert f"{data}:2:" in result.err


def test_data_scrub_keeps_every_record_shape(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source, target = tmp_path / "train.jsonl", tmp_path / "clean.jsonl"
    records = [
        {
            "messages": [
                {"role": "user", "content": "I'm Jane Porter"},
                {"role": "assistant", "content": "Hi Jane Porter!"},
            ],
            "label": 1,
        },
        {"prompt": "Email jane@example.com", "completion": "billing"},
        {
            "prompt": [{"role": "user", "content": "card 4111 1111 1111 1111"}],
            "completion": [{"role": "assistant", "content": "ok"}],
        },
        {"text": "Nothing personal."},
        {"conversations": [{"from": "human", "value": "I'm José García"}]},
    ]
    source.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    result = cli("data", "scrub", str(source), str(target))
    assert result.code == 0, result.err
    cleaned = [json.loads(line) for line in target.read_text().splitlines()]
    assert cleaned == [
        {
            "messages": [
                {"role": "user", "content": "I'm <PERSON_1>"},
                {"role": "assistant", "content": "Hi <PERSON_1>!"},
            ],
            "label": 1,
        },
        {"prompt": "Email <EMAIL_ADDRESS_1>", "completion": "billing"},
        {
            "prompt": [{"role": "user", "content": "card <CREDIT_CARD_1>"}],
            "completion": [{"role": "assistant", "content": "ok"}],
        },
        {"text": "Nothing personal."},
        {"conversations": [{"from": "human", "value": "I'm <PERSON_1>"}]},
    ]
    report = json.loads(Path(result.last_line).read_text())
    assert report == {
        "records": 5,
        "records_changed": 4,
        "records_dropped": 0,
        "entities": {"CREDIT_CARD": 1, "EMAIL_ADDRESS": 1, "PERSON": 3},
        "blocked": {},
        "vocabulary": [],
    }


def test_data_scrub_keeps_the_business_s_own_names_unless_told_not_to(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(f'{{"text": "Boat {n} leaves Leeds."}}\n' for n in range(6)))
    kept = cli("data", "scrub", str(source), str(tmp_path / "kept.jsonl"))
    assert kept.code == 0, kept.err
    assert "kept as the business's own names" in kept.err and "Leeds" in kept.err
    assert (tmp_path / "kept.jsonl").read_text() == source.read_text()
    assert json.loads(Path(kept.last_line).read_text())["vocabulary"] == ["Leeds"]

    masked = cli("data", "scrub", str(source), str(tmp_path / "m.jsonl"), "--no-vocabulary")
    assert "Boat 0 leaves <LOCATION_1>." in (tmp_path / "m.jsonl").read_text()
    assert "Leeds" not in masked.err


def test_data_scrub_drops_blocked_records(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    policy = tmp_path / "p.yaml"
    policy.write_text("entities: {CREDIT_CARD: {input: block}}\n")
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text('{"text": "card 4111 1111 1111 1111"}\n{"text": "fine"}\n')
    result = cli("data", "scrub", str(source), str(target), "--policy", str(policy))
    assert target.read_text() == '{"text": "fine"}\n'
    assert json.loads(Path(result.last_line).read_text())["records_dropped"] == 1


def test_data_scrub_refuses_bad_input(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "ok"}\n[1, 2]\n')
    result = cli("data", "scrub", str(source), str(tmp_path / "out.jsonl"))
    assert result.code == 1
    assert f"{source}:2: expected a JSON object" in result.err
    assert not (tmp_path / "out.jsonl").exists()
    missing = cli("data", "scrub", str(tmp_path / "nope.jsonl"), str(tmp_path / "o.jsonl"))
    assert missing.code == 1 and "cannot read" in missing.err


def test_the_commands_guards_share_the_process_detector(fake_pii_detector: object) -> None:
    from lorastack.cli.context import guard_for

    assert guard_for("coffee").detector is fake_pii_detector
    assert guard_for(None).detector is fake_pii_detector


def test_guard_eval_injection_reports_each_split(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("guard", "eval-injection", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert set(report["splits"]) == {"dev", "holdout"}
    assert report["overall"]["positives"] == 80 and report["overall"]["negatives"] == 150
    table = cli("guard", "eval-injection").out
    assert "holdout" in table and "missed by category" in table


def test_guard_eval_leaks_counts_detections_and_false_positives(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prompt = "You are the cheerful barista of Bean There and you love oat milk."
    data = tmp_path / "leaks.jsonl"
    rows = [
        {"system_prompt": prompt, "answer": prompt.upper(), "leaked": True},
        {"system_prompt": prompt, "answer": "We love oat milk too!", "leaked": False},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = json.loads(cli("guard", "eval-leaks", str(data), "--json").out)
    assert (report["true_pos"], report["false_pos"], report["detection_rate"]) == (1, 0, 1.0)
    assert "detected" in cli("guard", "eval-leaks").out
    data.write_text('{"answer": "x"}\n')
    bad = cli("guard", "eval-leaks", str(data))
    assert bad.code == 1 and "system_prompt" in bad.err
