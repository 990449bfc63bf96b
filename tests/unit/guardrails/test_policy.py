from pathlib import Path

import pytest

from lorastack.errors import PolicyError
from lorastack.guardrails.entities import Action, Direction
from lorastack.guardrails.policy import GuardPolicy, PolicyStore, default_policy, load_policy

POLICY = """
name: bank
defaults: {input: mask, output: redact, threshold: 0.5}
entities:
  CREDIT_CARD: {input: block}
  LOCATION: {input: allow, output: allow, threshold: 0.8}
custom:
  - type: ORDER_NUMBER
    patterns: ['\\bORD-\\d{4}\\b']
    context: [order]
    score: 0.7
  - type: EMPLOYEE
    deny_list: [Sam Barista]
allow_list: [help@bank.example]
restore_output: false
"""


def test_policy_file_sets_actions_per_entity_and_direction(tmp_path: Path) -> None:
    path = tmp_path / "bank.yaml"
    path.write_text(POLICY)
    policy = load_policy(path)
    assert policy.action("CREDIT_CARD", Direction.INPUT) is Action.BLOCK
    assert policy.action("CREDIT_CARD", Direction.OUTPUT) is Action.REDACT
    assert policy.action("PERSON", Direction.INPUT) is Action.MASK
    assert policy.action("LOCATION", Direction.OUTPUT) is Action.ALLOW
    assert policy.threshold("LOCATION") == 0.8
    assert policy.threshold("PERSON") == 0.5
    assert "ORDER_NUMBER" in policy.entity_types()
    assert "EMPLOYEE" in policy.entity_types()
    assert policy.custom_entities()[0].context == ("order",)
    assert policy.is_allowed_value(" HELP@bank.example ")
    assert not policy.restore_output


def test_shipped_default_policy_parses() -> None:
    policy = default_policy()
    assert policy.action("PERSON", Direction.INPUT) is Action.MASK
    assert policy.action("PERSON", Direction.OUTPUT) is Action.REDACT
    assert not policy.fail_open


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("entities: {PERSON: {input: scramble}}", "entities.PERSON.input"),
        ("custom: [{type: order, patterns: ['x']}]", "must be upper case"),
        ("custom: [{type: ORDER, patterns: ['(']}]", "not a valid regex"),
        ("fail_closed: true", "fail_closed"),
        ("- a list", "must be a YAML mapping"),
        ("key: [unclosed", "not valid YAML"),
        ("timeout_s: 0", "timeout_s"),
    ],
)
def test_bad_policies_are_refused_with_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=message):
        load_policy(path)


def test_store_prefers_the_domain_file(tmp_path: Path) -> None:
    (tmp_path / "bank.yaml").write_text(POLICY)
    store = PolicyStore(tmp_path)
    assert store.get("bank").name == "bank"
    assert store.get("coffee") == default_policy()
    assert store.get(None) == default_policy()
    with pytest.raises(PolicyError, match="cannot read policy"):
        load_policy(tmp_path / "missing.yaml")


def test_a_deployment_default_replaces_the_shipped_one(tmp_path: Path) -> None:
    (tmp_path / "bank.yaml").write_text(POLICY)
    fallback = tmp_path / "elsewhere" / "company.yaml"
    fallback.parent.mkdir()
    fallback.write_text("name: company\n")
    store = PolicyStore(tmp_path, fallback)
    assert store.get("bank").name == "bank"
    assert store.source("coffee") == store.source(None) == fallback
    assert store.get("coffee").name == store.get(None).name == "company"
    fallback.unlink()
    with pytest.raises(PolicyError, match="cannot read policy"):
        store.get(None)  # a named file that is gone is an error, not the shipped default


def test_policy_objects_can_be_built_in_code() -> None:
    policy = GuardPolicy(entities={"PERSON": {"output": "mask"}})  # type: ignore[dict-item]
    assert policy.action("PERSON", Direction.OUTPUT) is Action.MASK


def test_allowing_adds_a_vocabulary_to_the_allow_list_and_denied_values_are_listed() -> None:
    policy = GuardPolicy.model_validate(
        {
            "allow_list": ["support@example.com"],
            "custom": [{"type": "EMPLOYEE", "deny_list": ["Sam Barista", "Jo Cook"]}],
        }
    )
    assert policy.allowing([]) is policy and policy.allowing(["SUPPORT@example.com"]) is policy
    allowing = policy.allowing(["Skerry Point", "Ahoy"])
    assert allowing.allow_list == ["support@example.com", "Skerry Point", "Ahoy"]
    assert allowing.is_allowed_value("skerry point") and not policy.is_allowed_value("Ahoy")
    assert policy.denied_values() == ["Sam Barista", "Jo Cook"]
