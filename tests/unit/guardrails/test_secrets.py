"""The SECRET recognizer: provider formats from detect-secrets, passwords and PINs in context.

The analyzer runs over a blank spaCy pipeline (a tokenizer, no NER model): secrets
need no model. Every value is made up, assembled here from pieces so that no
string in the repository looks like a live key, and still in its provider's format.
"""

from __future__ import annotations

from typing import Any

import pytest

from lorastack.guardrails.detector import PresidioDetector, build_analyzer
from lorastack.guardrails.entities import SECRET, Direction
from lorastack.guardrails.guard import Guard
from lorastack.guardrails.policy import default_policy
from lorastack.guardrails.vault import Vault

MARK = "EXAMPLE"
AWS = "AKIA" + MARK + "3K9Q0ZT7W"
GITHUB = "gh" + "p_" + MARK + "aBcDeFgHiJkLmNoPqRsTuVwXyZ01"
SLACK = "xo" + "xb-12345678901-1234567890123-" + MARK.lower() + "abcdefghijklmnopq"
STRIPE_LIVE = "sk" + "_live_" + MARK + "0123456789abcdefgXYZ"  # longer than the regex's 24
STRIPE_TEST = "sk" + "_test_" + MARK + "0123456789abcdefg"
OPENAI_LEGACY = "sk-" + MARK + "0123456789abcd" + "T3Blbk" + "FJ" + MARK + "0123456789abcd"
OPENAI_PROJECT = "sk-" + "proj-" + MARK + "abcdefghijklmnopqrstuvwxyz0123456789ABCD"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiJFWEFNUExFLTEyMzQ1NiJ9"
    ".c2lnbmF0dXJlLW9mLWFuLWV4YW1wbGUtdG9rZW4xMjM"
)
KEY_BLOCK = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    + MARK
    + "MIIEowIBAAKCAQEAabcdefghijklmnopqrstu\n"
    + MARK
    + "abcdEFGHijklMNOPqrstUVWXyz0123456789==\n"
    + "-----END RSA PRIVATE KEY-----"
)
URL = "https://admin:Kestrel&237@db.example.com/prod"
CUED = "Zx81Kq0PlmN3vB7tR2yH6wQ9sE4dF5gJ"


@pytest.fixture(scope="module")
def detector() -> PresidioDetector:
    import spacy

    return PresidioDetector(build_analyzer(spacy.blank("en")))


def _secrets(detector: PresidioDetector, text: str) -> list[str]:
    return [text[f.start : f.end] for f in detector.detect(text, [SECRET])]


@pytest.mark.parametrize(
    ("before", "value", "after"),
    [
        ("my aws key is ", AWS, " can you check"),
        ("key=", AWS, " doesn't work"),
        ("token ", GITHUB, " stopped working"),
        ("slack bot token ", SLACK, " is in the config"),
        ("stripe secret ", STRIPE_LIVE, " charged twice"),
        ("test key ", STRIPE_TEST, "."),
        ("openai key ", OPENAI_LEGACY, " is leaking"),
        ("use ", OPENAI_PROJECT, " instead"),
        ("my session token ", JWT, ". expires too soon"),
        ("here: ", KEY_BLOCK, " thanks"),
        ("connect to ", URL, ", please"),
        ("my password is ", "hunter2!", " and it doesn't work"),
        ("pwd: ", "Tr0ub4dor&3", ""),
        ("the password for jane@example.com is ", "Xyz12345", "."),
        ("Password: ", "sunshine", ""),  # a plain word counts after ':' or '='
        ("I changed my password to ", "Maple#2291", " yesterday"),
        ("passcode ", "482913", ""),
        ("PIN is ", "4821", ", why is the card declined?"),
        ("My API key is ", CUED, " and the webhook fails"),
        ("Authorization: Bearer ", CUED, ""),
        ("the key is ", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b", ""),  # hex, after a cue
        ("pasted ", CUED + "aa2", " by mistake"),  # random-looking alone
    ],
)
def test_a_secret_is_found_at_its_exact_span(
    detector: PresidioDetector, before: str, value: str, after: str
) -> None:
    assert _secrets(detector, before + value + after) == [value]


@pytest.mark.parametrize(
    "text",
    [
        "Where is my order ORD-2024-88317? Tracking 1Z999AA10123456784 hasn't moved.",
        "Crash after commit 3f2c9a1b7e4d5c6a8b9f0e1d2c3b4a5968778695 in build 4411.",
        "Request id 123e4567-e89b-12d3-a456-426614174000 failed.",
        "Coupon SUMMER2025OFF doesn't apply to SKU-44-1021 on v2.14.3.",
        "my password reset link didn't arrive",
        "my password is not working",
        "my password is sunshine",  # a plain word after "is": too often a complaint
        "the password must be 12 characters long",
        "new password: ********",
        "reset link https://example.com/account/reset-password?step=2",
        "Is my PIN code 560001 covered by same-day delivery?",  # an Indian postal code
        "Is chip and PIN required for contactless?",
        "the internationalization settings page",
        "IBAN GB82 WEST 1234 5698 7654 32 and card 4111 1111 1111 1111",
    ],
)
def test_look_alikes_are_not_secrets(detector: PresidioDetector, text: str) -> None:
    assert _secrets(detector, text) == []


def test_the_default_policy_redacts_a_secret_in_a_prompt(detector: PresidioDetector) -> None:
    text = f"my key is {GITHUB}, is it valid?"
    result = Guard(default_policy(), detector).scan(text, Direction.INPUT)
    assert result.redacted == "my key is <SECRET>, is it valid?"
    assert result.blocked_types == []


def test_the_default_policy_blocks_an_answer_holding_a_secret(detector: PresidioDetector) -> None:
    from lorastack.errors import PiiBlocked

    guard = Guard(default_policy(), detector)
    answer = f"Sure, set STRIPE_KEY={STRIPE_TEST} in the settings."
    assert guard.scan(answer, Direction.OUTPUT).blocked_types == [SECRET]
    with pytest.raises(PiiBlocked) as raised:
        guard.protect_output(answer, Vault())
    assert STRIPE_TEST not in str(raised.value)


def test_a_message_without_cues_costs_no_regex_run(
    detector: PresidioDetector, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lorastack.guardrails.recognizers import secrets

    calls: list[Any] = []
    monkeypatch.setattr(secrets, "_password_value", lambda m: calls.append(m))
    assert _secrets(detector, "Hi, my order has not arrived yet, call me on 020 7946 0958.") == []
    assert calls == []
