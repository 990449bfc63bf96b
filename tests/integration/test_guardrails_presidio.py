"""The guardrails with real Presidio and the bundled spaCy pipeline."""

import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lorastack.guardrails.detector import shared_analyzer
from lorastack.guardrails.entities import BUILTIN_ENTITIES, Direction
from lorastack.guardrails.evaluation import LabelledExample, evaluate
from lorastack.guardrails.guard import Guard
from lorastack.guardrails.policy import default_policy
from lorastack.guardrails.vault import Vault

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EVERY_TYPE = (
    "I'm Jane Porter from Leeds. Mail jane.porter@example.com or call +44 20 7946 0958. "
    "Card 4111 1111 1111 1111, IBAN GB82 WEST 1234 5698 7654 32, SSN 536-22-8416, "
    "my IP is 203.0.113.7."
)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    shared_analyzer.cache_clear()
    yield
    shared_analyzer.cache_clear()


def test_every_builtin_entity_is_found_with_no_network(no_network: None) -> None:
    result = Guard(default_policy()).scan(EVERY_TYPE, Direction.INPUT)
    assert {f.type for f in result.findings} == set(BUILTIN_ENTITIES)
    for value in ("Jane Porter", "jane.porter@example.com", "4111", "GB82", "536-22", "203.0"):
        assert value not in result.redacted


def test_obfuscated_values_are_masked_at_their_original_spans() -> None:
    text = (
        "write to jane dot doe at example dot com or j.doe＠example.org, "
        "card 4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1"
    )
    result = Guard(default_policy()).scan(text, Direction.INPUT)
    assert result.redacted == (
        "write to <EMAIL_ADDRESS_1> or <EMAIL_ADDRESS_2>, card <CREDIT_CARD_1>"
    )


def test_shipped_evaluation_set_meets_its_bar() -> None:
    lines = (ROOT / "guardrails/data/pii_eval.jsonl").read_text(encoding="utf-8").splitlines()
    examples = [LabelledExample.from_record(json.loads(line)) for line in lines]
    assert len(examples) >= 300
    report = evaluate(Guard(default_policy()), examples).to_dict()
    assert set(report["entities"]) >= set(BUILTIN_ENTITIES)
    assert report["leak_rate"] <= 0.03
    assert report["overall"]["f2"] >= 0.93
    assert report["negatives_changed_rate"] <= 0.08
    for name in BUILTIN_ENTITIES:
        assert report["entities"][name]["recall"] >= 0.8, name


ANSWERS = [
    "Of course <PERSON_1>! Olusegun Adeyemi from our Leeds team will call you on "
    "+44 20 7946 0958 and confirm by email to olu.adeyemi@example.com.",
    "The refund went to card 4111 1111 1111 1111 and IBAN GB82 WEST 1234 5698 7654 32; "
    "Siobhán O'Brien approved it.",
]
RAW = (
    "Olusegun",
    "Adeyemi",
    "7946 0958",
    "olu.adeyemi@example.com",
    "4111 1111",
    "GB82 WEST",
    "Siobhán",
    "O'Brien",
)
TAG = re.compile(r"<[A-Z][A-Z0-9_]*>")


@pytest.mark.parametrize("answer", ANSWERS)
def test_streamed_answers_never_leak_at_any_split_point(answer: str) -> None:
    guard = Guard(default_policy())
    vault = Vault()
    guard.protect_messages([{"role": "user", "content": "I'm Jane Porter"}], vault)
    chunkings = [[answer[:i], answer[i:]] for i in range(1, len(answer))] + [list(answer)]
    for chunks in chunkings:
        redactor = guard.stream(vault)
        emitted = [redactor.feed(chunk) for chunk in chunks] + [redactor.finish()]
        output = "".join(emitted)
        for value in RAW:
            assert value not in output, (chunks, output)
        for piece in emitted:
            assert piece.count("<") == len(TAG.findall(piece)) == piece.count(">")
        if "<PERSON_1>" in answer:
            assert output.startswith("Of course Jane Porter!")


def test_guard_scan_command_reads_stdin_and_writes_json_lines() -> None:
    lines = [json.dumps({"text": EVERY_TYPE}), "{broken", json.dumps({"text": "Order #A123"})]
    process = subprocess.run(
        [sys.executable, "-m", "lorastack.cli", "guard", "scan"],
        input="\n".join(lines),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    answers = [json.loads(line) for line in process.stdout.splitlines()]
    assert len(answers) == 3
    first = answers[0]
    assert {e["type"] for e in first["entities"]} == set(BUILTIN_ENTITIES)
    for entity in first["entities"]:
        assert entity["action"] == "mask"
        assert EVERY_TYPE[entity["start"] : entity["end"]] not in first["redacted"]
    assert answers[1]["line"] == 2
    assert answers[2]["redacted"] == "Order #A123"
    assert "Traceback" not in process.stderr
