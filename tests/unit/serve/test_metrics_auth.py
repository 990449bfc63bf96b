"""Who may read /metrics, and what a caller who may not see a domain reads of it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from lorastack.serve.metrics import Metrics
from tests.unit.serve.conftest import ADMIN_KEY, Running

KEY = "sk-every-domain-0123456789abcdef"
COFFEE_KEY = "sk-coffee-only-0123456789abcdef"
DOMAINS = ("coffee-shop", "ledger-desk")


def _bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.fixture
def keyed(start_gateway: Callable[..., Running], tmp_path: Path) -> Callable[..., Running]:
    """A gateway with a key for every domain and one for coffee-shop only, which has
    answered once for each domain (every per-domain series exists)."""
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(
        f"keys:\n  - name: coffee\n    key: {COFFEE_KEY}\n    domains: [coffee-shop]\n"
    )

    def start(**settings: object) -> Running:
        gw = start_gateway(api_keys=[KEY], keys_file=str(keys_file), **settings)
        for domain in DOMAINS:
            body = {"model": domain, "messages": [{"role": "user", "content": "Hi"}]}
            answer = gw.client.post("/v1/chat/completions", json=body, headers=_bearer(KEY))
            assert answer.status_code == 200
        return gw

    return start


def test_anonymous_callers_never_learn_a_domain_name_while_keys_are_on(
    keyed: Callable[..., Running],
) -> None:
    gw = keyed()
    anonymous = gw.client.get("/metrics")
    assert anonymous.status_code == 200
    text = anonymous.text
    assert not any(domain in text for domain in DOMAINS)
    # Both domains' answers are still counted, together.
    chat = 'domain="_other",endpoint="/v1/chat/completions",status="200"'
    assert f"lorastack_requests_total{{{chat}}} 2.0" in text
    assert 'lorastack_tokens_total{direction="in",domain="_other",version="v1"}' in text
    assert "lorastack_adapter_state{" not in text  # a gauge: no sum of it means anything

    for key in (KEY, ADMIN_KEY):
        full = gw.client.get("/metrics", headers=_bearer(key)).text
        assert all(f'domain="{domain}"' in full for domain in DOMAINS)
        assert 'adapter="ledger-desk@v1"' in full
        assert "_other" not in full


def test_a_key_limited_to_some_domains_sees_only_those_by_name(
    keyed: Callable[..., Running],
) -> None:
    text = keyed().client.get("/metrics", headers=_bearer(COFFEE_KEY)).text
    assert 'domain="coffee-shop"' in text
    assert "ledger-desk" not in text
    assert 'domain="_other"' in text


def test_metrics_can_require_a_key(keyed: Callable[..., Running]) -> None:
    gw = keyed(metrics_auth="key")
    for headers in ({}, _bearer("sk-not-a-key-0123456789abcdef")):
        refused = gw.client.get("/metrics", headers=headers)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_api_key"
        assert not any(domain in refused.text for domain in DOMAINS)
    for key in (KEY, COFFEE_KEY, ADMIN_KEY):
        assert gw.client.get("/metrics", headers=_bearer(key)).status_code == 200


def test_a_gateway_without_keys_hides_nothing(start_gateway: Callable[..., Running]) -> None:
    gw = start_gateway()
    assert gw.chat("ledger-desk", "Hi").status_code == 200
    assert 'domain="ledger-desk"' in gw.client.get("/metrics").text


def test_a_gateway_without_keys_that_requires_one_takes_the_admin_key(
    start_gateway: Callable[..., Running],
) -> None:
    gw = start_gateway(metrics_auth="key")
    assert gw.client.get("/metrics").status_code == 401
    assert gw.client.get("/metrics", headers=_bearer(ADMIN_KEY)).status_code == 200


def test_folding_sums_counters_and_histograms_and_keeps_the_earliest_creation() -> None:
    metrics = Metrics()
    for domain in ("a", "b"):
        metrics.response(domain, "/v1/chat/completions", 200, None, "v1")
        metrics.answered(domain, "v1", 0.2, {"prompt_tokens": 3, "completion_tokens": 4})
        metrics.rules_checked(domain, "v1", {f"{domain}-rule": True})
    metrics.response("base", "/v1/chat/completions", 200, None, "")
    text = metrics.render(lambda domain: domain == "base").decode()

    assert 'lorastack_requests_total{domain="base",endpoint="/v1/chat/completions"' in text
    assert (
        'lorastack_requests_total{domain="_other",endpoint="/v1/chat/completions",status="200"} 2.0'
    ) in text
    assert 'lorastack_tokens_total{direction="out",domain="_other",version="v1"} 8.0' in text
    assert 'lorastack_request_latency_seconds_count{domain="_other",version="v1"} 2.0' in text
    assert 'rule="_other"' in text and "a-rule" not in text
    created = [line for line in text.splitlines() if line.startswith("lorastack_requests_created")]
    assert len(created) == 2  # base's, and one for both folded domains
