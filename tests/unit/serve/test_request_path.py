"""The request path's own guarantees: the served weights, the engine session, the screening."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from lorastack.errors import RegistryUnavailable
from lorastack.guardrails import Finding
from lorastack.registry import AdapterRegistry
from lorastack.serve.errors import BadRequest, EngineLostModel, ModelNotFound, to_gateway_error
from lorastack.serve.targets import ServedModel, resolve_target
from lorastack.settings import load_settings
from tests.fakes import RegexDetector
from tests.unit.serve.conftest import Running


def _served(registry: AdapterRegistry) -> ServedModel:
    record = registry.models.get("tiny")
    return ServedModel("tiny", record.checkpoint_sha256)


def test_an_adapter_is_served_only_on_the_weights_it_was_trained_on(
    registry: AdapterRegistry, publish: Callable[..., Any]
) -> None:
    publish("coffee-shop", 1, promote="prod")
    served = _served(registry)
    assert resolve_target("coffee-shop", served, registry, None).domain == "coffee-shop"
    other_weights = ServedModel("tiny", "0" * 64)
    with pytest.raises(BadRequest, match="other weights of tiny") as refused:
        resolve_target("coffee-shop", other_weights, registry, None)
    assert refused.value.code == "model_not_available"
    with pytest.raises(BadRequest, match="trained on base model tiny"):
        resolve_target("coffee-shop", ServedModel("bigger"), registry, None)
    # A gateway fronting engines whose weights it does not hold matches by name only.
    assert resolve_target("coffee-shop", ServedModel("tiny"), registry, None).manifest


def test_other_weights_under_the_same_name_are_refused_through_the_api(
    gw: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gw.gateway.service, "served", ServedModel("tiny", "f" * 64))
    response = gw.chat("coffee-shop", "hello")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "model_not_available"
    assert gw.fake.completion_requests == []
    assert gw.chat("tiny", "the base model itself still answers").status_code == 200


def test_an_engine_that_lost_the_model_is_a_404_once_the_retry_fails() -> None:
    mapped = to_gateway_error(EngineLostModel("The model `x@v1` does not exist."))
    assert isinstance(mapped, ModelNotFound)
    assert (mapped.status, mapped.code) == (404, "model_not_found")
    assert "does not exist" in str(mapped)


def test_an_adapter_the_engine_already_serves_counts_as_loaded(gw: Running) -> None:
    # A gateway restarted in front of a running engine finds its adapters already there.
    gw.fake.loaded["coffee-shop@v1"] = "/elsewhere"
    assert gw.chat("coffee-shop", "hello").status_code == 200
    assert gw.fake.load_calls == ["coffee-shop@v1"]
    state = gw.gateway.pool.endpoints[0].adapters.state_of("coffee-shop@v1")
    assert state.value == "ready"


def test_an_engine_refusal_for_another_reason_is_a_load_failure(gw: Running) -> None:
    gw.fake.fail_next_load(400, "Invalid LoRA adapter: rank too high")
    response = gw.chat("coffee-shop", "hello")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "adapter_load_failed"


class _ThreadRecordingDetector(RegexDetector):
    def __init__(self) -> None:
        super().__init__()
        self.threads: set[str] = set()

    def detect(self, text: str, entity_types: Any, custom: Any = ()) -> list[Finding]:
        self.threads.add(threading.current_thread().name)
        found: list[Finding] = super().detect(text, entity_types, custom)
        return found


def test_every_scan_of_a_request_runs_on_the_gateways_screening_threads(
    start_gateway: Callable[..., Running],
) -> None:
    detector = _ThreadRecordingDetector()
    gw = start_gateway(detector=detector)
    gw.fake.enqueue(["Hello ", "Jane ", "Porter!"])
    body = {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}
    assert gw.client.post("/v1/chat/completions", json={"model": "tiny", **body}).is_success
    assert gw.chat("tiny", "streamed", stream=True).is_success
    assert detector.threads
    assert all(name.startswith("pii-screen") for name in detector.threads), detector.threads


def test_a_whole_request_shares_one_screening_deadline(
    start_gateway: Callable[..., Running], home: Path
) -> None:
    # Each text takes 0.2 s; the policy allows 0.5 s: two messages pass, five do not.
    gw = start_gateway(detector=RegexDetector(delay_s=0.2))
    (home / "policies").mkdir(parents=True, exist_ok=True)
    (home / "policies" / "ledger-desk.yaml").write_text("timeout_s: 0.5\n")

    def ask(count: int) -> httpx.Response:
        messages = [{"role": "user", "content": f"question {i}"} for i in range(count)]
        body = {"model": "ledger-desk", "messages": messages}
        return gw.client.post("/v1/chat/completions", json=body)

    assert ask(2).status_code == 200
    refused = ask(5)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "guardrails_unavailable"


def test_the_read_timeout_keeps_its_former_name() -> None:
    settings = load_settings(gateway={"request_timeout_s": 42})
    assert settings.gateway.engine_read_timeout_s == 42
    assert load_settings().gateway.engine_read_timeout_s == 600


def test_the_read_timeout_is_read_from_either_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORASTACK_GATEWAY__REQUEST_TIMEOUT_S", "7")
    assert load_settings().gateway.engine_read_timeout_s == 7
    monkeypatch.setenv("LORASTACK_GATEWAY__ENGINE_READ_TIMEOUT_S", "9")
    monkeypatch.delenv("LORASTACK_GATEWAY__REQUEST_TIMEOUT_S")
    assert load_settings().gateway.engine_read_timeout_s == 9


def test_a_registry_that_cannot_be_read_now_is_not_a_missing_model(
    registry: AdapterRegistry, publish: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    publish("coffee-shop", 1, promote="prod")

    def unavailable(*_: object) -> None:
        raise RegistryUnavailable("the registry's index: database gone")

    monkeypatch.setattr(registry, "resolve", unavailable)
    with pytest.raises(RegistryUnavailable) as failed:
        resolve_target("coffee-shop", _served(registry), registry, None)
    assert to_gateway_error(failed.value).status == 503  # to retry, not a 404
