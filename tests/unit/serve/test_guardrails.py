"""Personal data through the gateway: masked on the way in, safe on the way out."""

import os
import time
from pathlib import Path
from typing import Any

import pytest

from lorastack.guardrails.policy import PolicyStore
from lorastack.guardrails.screening import ScreeningPool
from lorastack.serve import guarding
from lorastack.serve.metrics import Metrics
from tests.fakes import RegexDetector
from tests.unit.serve.conftest import Running

USER = "Hi, I'm Jane Porter, jane@example.com. Card 4111 1111 1111 1111."


def test_the_engine_never_sees_the_prompts_personal_data(gw: Running) -> None:
    response = gw.chat("coffee-shop", USER)
    assert response.status_code == 200
    sent = gw.fake.completion_requests[-1].body["messages"][-1]["content"]
    assert sent == "Hi, I'm <PERSON_1>, <EMAIL_ADDRESS_1>. Card <CREDIT_CARD_1>."
    # The echo carries the placeholders back; the user sees their own values restored.
    answer = response.json()["choices"][0]["message"]["content"]
    assert "Jane Porter" in answer and "jane@example.com" in answer
    assert response.headers["x-lorastack-pii-masked"] == "3"


def test_earlier_turns_are_masked_too(gw: Running) -> None:
    body = {
        "model": "tiny",
        "messages": [
            {"role": "user", "content": "I'm Jane Porter"},
            {"role": "assistant", "content": "Hello Jane Porter!"},
            {"role": "user", "content": "What is my name?"},
        ],
    }
    gw.client.post("/v1/chat/completions", json=body)
    sent = gw.fake.completion_requests[-1].body["messages"]
    assert [m["content"] for m in sent] == [
        "I'm <PERSON_1>",
        "Hello <PERSON_1>!",
        "What is my name?",
    ]


def test_personal_data_the_model_writes_is_redacted_streamed_or_not(gw: Running) -> None:
    pieces = ["Ask Jo", "sé Gar", "cía at +44 20 ", "7946 0958 or ", "olu@exa", "mple.org."]
    gw.fake.enqueue(pieces)
    whole = gw.chat("tiny", "who?").json()["choices"][0]["message"]["content"]
    assert whole == "Ask <PERSON> at <PHONE_NUMBER> or <EMAIL_ADDRESS>."
    gw.fake.enqueue(pieces)
    streamed = gw.chat("tiny", "who?", stream=True).text
    assert "José" not in streamed and "7946" not in streamed and "olu@" not in streamed
    assert streamed.count("<PERSON>") == 1


def test_a_blocked_entity_is_a_400_naming_types_only(gw: Running, home: Path) -> None:
    (home / "policies").mkdir(parents=True, exist_ok=True)
    (home / "policies" / "coffee-shop.yaml").write_text("entities: {CREDIT_CARD: {input: block}}\n")
    response = gw.chat("coffee-shop", USER)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "pii_blocked"
    assert "CREDIT_CARD" in error["message"]
    assert "4111" not in response.text and "Jane" not in response.text
    assert gw.fake.completion_requests == []
    # Other domains keep the default policy.
    assert gw.chat("ledger-desk", USER).status_code == 200


def test_the_deployments_default_policy_covers_the_base_model_and_domains_without_one(
    start_gateway: Any, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default = tmp_path / "company-default.yaml"
    default.write_text("entities: {CREDIT_CARD: {input: block}}\n")
    monkeypatch.setenv("LORASTACK_GUARD_POLICY", str(default))
    (home / "policies").mkdir(parents=True, exist_ok=True)
    (home / "policies" / "coffee-shop.yaml").write_text("name: own\n")
    gw = start_gateway()
    assert gw.chat("tiny", USER).status_code == 400
    assert gw.chat("ledger-desk", USER).status_code == 400
    assert gw.chat("coffee-shop", USER).status_code == 200  # its own file wins
    # Edited on disk: the next request follows it.
    default.write_text("name: relaxed\n")
    os.utime(default, (time.time() + 5, time.time() + 5))  # a new mtime even on a coarse clock
    assert gw.chat("tiny", USER).status_code == 200
    # A domain's own file removed: the deployment's default applies again.
    default.write_text("entities: {CREDIT_CARD: {input: block}}\n")
    os.utime(default, (time.time() + 10, time.time() + 10))
    (home / "policies" / "coffee-shop.yaml").unlink()
    assert gw.chat("coffee-shop", USER).status_code == 400


def test_a_versions_vocabulary_is_left_unmasked_for_that_version_only(
    gw: Running, publish: Any
) -> None:
    # A business whose data names its lounge "Jane Porter" in every chat: training kept it,
    # and its manifest says so.
    publish("coffee-shop", 3, vocabulary=["jane porter"], promote="prod")
    gw.fake.enqueue(["Ask at Jane Porter or olu@example.org."])
    answer = gw.chat("coffee-shop", USER).json()["choices"][0]["message"]["content"]
    sent = gw.fake.completion_requests[-1].body["messages"][-1]["content"]
    assert sent == "Hi, I'm Jane Porter, <EMAIL_ADDRESS_1>. Card <CREDIT_CARD_1>."
    assert answer == "Ask at Jane Porter or <EMAIL_ADDRESS>."
    # The version before it, and every other domain, mask it as personal data.
    gw.chat("coffee-shop@v1", USER)
    assert "<PERSON_1>" in gw.fake.completion_requests[-1].body["messages"][-1]["content"]
    gw.chat("ledger-desk", USER)
    assert "<PERSON_1>" in gw.fake.completion_requests[-1].body["messages"][-1]["content"]


def test_guardrails_off_passes_text_unchanged(start_gateway: Any) -> None:
    gw = start_gateway(guardrails=False)
    gw.chat("tiny", USER)
    assert gw.fake.completion_requests[-1].body["messages"][-1]["content"] == USER


def test_detection_failure_fails_closed(start_gateway: Any, home: Path) -> None:
    detector = RegexDetector()
    gw = start_gateway(detector=detector)
    detector.fail = RuntimeError("spaCy")
    (home / "policies").mkdir(exist_ok=True)
    (home / "policies" / "ledger-desk.yaml").write_text("name: fresh\n")  # a new guard is built
    response = gw.chat("ledger-desk", USER)
    assert response.status_code == 503
    assert "screening is unavailable" in response.json()["error"]["message"]
    assert response.json()["error"]["code"] == "guardrails_unavailable"
    assert gw.fake.completion_requests == []


def test_nothing_personal_reaches_the_audit_log_or_errors(gw: Running, home: Path) -> None:
    gw.chat("coffee-shop", USER)
    audit = (home / "runs" / "audit" / "pii.jsonl").read_text()
    assert '"PERSON": 1' in audit
    for value in ("Jane", "jane@example.com", "4111"):
        assert value not in audit


def test_text_completion_prompts_are_masked_and_counted(gw: Running) -> None:
    response = gw.client.post(
        "/v1/completions", json={"model": "ledger-desk", "prompt": USER, "max_tokens": 5}
    )
    assert response.status_code == 200, response.text
    assert gw.fake.completion_requests[-1].body["prompt"] == (
        "Hi, I'm <PERSON_1>, <EMAIL_ADDRESS_1>. Card <CREDIT_CARD_1>."
    )
    assert response.headers["x-lorastack-pii-masked"] == "3"


def test_guards_of_versions_no_longer_served_leave_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guarding, "MAX_GUARDS", 2)
    guards = guarding.GuardProvider(
        PolicyStore(tmp_path), RegexDetector(), ScreeningPool(workers=1), None, Metrics()
    )
    first, second = guards.get("ferry", ["Leeds"]), guards.get("ferry", ["Hull"])
    assert guards.get("ferry", ["Leeds"]) is first  # cached, and now the latest used
    third = guards.get("ferry", ["York"])  # the cache is full: "Hull" goes
    assert guards.get("ferry", ["Leeds"]) is first and guards.get("ferry", ["York"]) is third
    rebuilt = guards.get("ferry", ["Hull"])
    assert rebuilt is not second and rebuilt.policy.is_allowed_value("Hull")
