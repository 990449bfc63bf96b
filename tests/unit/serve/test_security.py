"""Client keys, the admin key, and what each may see."""

from pathlib import Path
from typing import Any

import pytest

from lorastack.errors import SettingsError
from lorastack.serve.keys import KeyStore
from tests.unit.serve.conftest import ADMIN_KEY

COFFEE_KEY = "sk-coffee-0123456789abcdef"
ALL_KEY = "sk-everything-0123456789ab"


@pytest.fixture
def keyed(start_gateway: Any, tmp_path: Path) -> Any:
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        "keys:\n"
        f"  - {{name: coffee-app, key: {COFFEE_KEY}, domains: [coffee-shop]}}\n"
        f"  - {{name: ops, key: {ALL_KEY}}}\n"
    )
    return start_gateway(keys_file=str(keys))


def _chat(gw: Any, model: str, key: str | None) -> Any:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return gw.client.post("/v1/chat/completions", json=body, headers=headers)


def test_missing_or_wrong_key_is_401(keyed: Any) -> None:
    for key in (None, "sk-wrong-0123456789abcdef", ADMIN_KEY):
        response = _chat(keyed, "coffee-shop", key)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
    assert keyed.client.get("/v1/models").status_code == 401
    assert keyed.fake.completion_requests == []


def test_a_key_sees_and_uses_only_its_domains(keyed: Any) -> None:
    assert _chat(keyed, "coffee-shop", COFFEE_KEY).status_code == 200
    hidden = _chat(keyed, "ledger-desk", COFFEE_KEY)
    assert hidden.status_code == 404  # indistinguishable from a domain that does not exist
    assert hidden.json() == _chat(keyed, "ledger-desk", COFFEE_KEY).json()
    assert _chat(keyed, "tiny", COFFEE_KEY).status_code == 404
    listed = keyed.client.get("/v1/models", headers={"authorization": f"Bearer {COFFEE_KEY}"})
    assert [m["id"] for m in listed.json()["data"]] == ["coffee-shop"]
    assert _chat(keyed, "ledger-desk", ALL_KEY).status_code == 200


def test_the_admin_api_needs_the_admin_key(keyed: Any) -> None:
    assert keyed.client.get("/admin/adapters").status_code == 401
    for key in (COFFEE_KEY, ALL_KEY):
        response = keyed.client.get("/admin/adapters", headers={"authorization": f"Bearer {key}"})
        assert response.status_code == 401
    ok = keyed.client.get("/admin/adapters", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert ok.status_code == 200


def test_without_an_admin_key_the_admin_api_is_closed(start_gateway: Any) -> None:
    gw = start_gateway(admin_key=None)
    assert gw.client.get("/admin/adapters").status_code == 401
    anything = {"authorization": "Bearer anything-at-all-0123456789"}
    assert gw.client.get("/admin/adapters", headers=anything).status_code == 401


def test_keys_file_mistakes_fail_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "keys.yaml"
    for text, message in [
        ("keys: [{name: a, key: short}]", "key 1: key"),
        ("keys: [{name: a}]", "exactly one of key or sha256"),
        ("nothing: here", "expected a `keys:` list"),
    ]:
        bad.write_text(text)
        with pytest.raises(SettingsError, match=message):
            KeyStore.from_settings([], bad, None)
    with pytest.raises(SettingsError, match="admin key must differ"):
        KeyStore.from_settings([ALL_KEY], None, ALL_KEY)


def test_a_keys_file_key_may_carry_limits(start_gateway: Any, tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        "keys:\n"
        f"  - {{name: metered, key: {COFFEE_KEY}, rpm: 2}}\n"
        f"  - {{name: thrifty, key: {ALL_KEY}, tpm: 1}}\n"
    )
    gw = start_gateway(keys_file=str(keys))
    assert [_chat(gw, "coffee-shop", COFFEE_KEY).status_code for _ in range(2)] == [200, 200]
    refused = _chat(gw, "coffee-shop", COFFEE_KEY)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert "2 requests per minute" in refused.json()["error"]["message"]
    # Tokens are counted once an answer ends: the first spends the minute's one token.
    first = _chat(gw, "coffee-shop", ALL_KEY)
    assert first.status_code == 200 and first.headers["x-ratelimit-limit-tokens"] == "1"
    assert _chat(gw, "coffee-shop", ALL_KEY).status_code == 429


def test_keys_file_limit_mistakes_fail_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "keys.yaml"
    for text, message in [
        (f"keys: [{{name: a, key: {ALL_KEY}, rpm: 0}}]", "key 1: rpm"),
        (f"keys: [{{name: a, key: {ALL_KEY}, budget_tokens: 9}}]", "budget_tokens and"),
        (f"keys: [{{name: a, key: {ALL_KEY}, budget_tokens: 9, budget_period: year}}]", "key 1"),
    ]:
        bad.write_text(text)
        with pytest.raises(SettingsError, match=message):
            KeyStore.from_settings([], bad, None)


def test_keys_may_be_stored_as_hashes(start_gateway: Any, tmp_path: Path) -> None:
    import hashlib

    keys = tmp_path / "keys.yaml"
    digest = hashlib.sha256(COFFEE_KEY.encode()).hexdigest()
    keys.write_text(f"keys:\n  - {{name: app, sha256: {digest}, domains: ['*']}}\n")
    gw = start_gateway(keys_file=str(keys))
    assert _chat(gw, "ledger-desk", COFFEE_KEY).status_code == 200
    assert COFFEE_KEY not in keys.read_text()
