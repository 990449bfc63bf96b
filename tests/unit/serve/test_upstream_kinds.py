"""`upstream_kind`: upstreams that load adapters on demand (lorastack's LoRA resolver, Ray
Serve LLM) get requests by version name and no management-API calls."""

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from lorastack.errors import SettingsError
from lorastack.serve.app import build_gateway, create_app, engine_client
from lorastack.settings import load_settings
from tests.fake_upstream import FakeUpstream
from tests.fakes import RegexDetector
from tests.servers import serve_in_thread

CHAT = {"model": "coffee-shop", "messages": [{"role": "user", "content": "hi"}]}


def _serve(fake: FakeUpstream, kind: str) -> Any:
    settings = load_settings(
        base_model="tiny", gateway={"upstreams": [fake.url], "upstream_kind": kind}
    )
    client = engine_client(30.0)
    gateway = build_gateway(settings, [fake.url], client, detector=RegexDetector())
    return serve_in_thread(create_app(gateway, 1 << 20, client))


def test_ray_serve_gets_base_colon_version_and_no_load_calls(
    fake: FakeUpstream, publish: Callable[..., Any]
) -> None:
    publish("coffee-shop", 1)
    publish("coffee-shop", 2, promote="prod")
    # What Ray lists from the layout `lorastack deploy ray` exported.
    fake.loaded["tiny:coffee-shop@v2"] = "s3://bucket/adapters/coffee-shop@v2"
    with _serve(fake, "ray-serve") as url:
        assert httpx.get(f"{url}/ready").status_code == 200
        answer = httpx.post(f"{url}/v1/chat/completions", json=CHAT)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == "coffee-shop@v2"  # lorastack's name, not Ray's
    assert fake.completion_requests[-1].body["model"] == "tiny:coffee-shop@v2"
    assert fake.load_calls == [] and fake.unload_calls == []
    assert "/-/healthz" in [r.path for r in fake.requests]
    assert "/health" not in [r.path for r in fake.requests]


def test_vllm_resolver_gets_the_version_name_and_no_load_calls(
    fake: FakeUpstream, publish: Callable[..., Any]
) -> None:
    publish("coffee-shop", 1)
    fake.loaded["coffee-shop@v1"] = "resolved by the plugin"
    with _serve(fake, "vllm-resolver") as url:
        answer = httpx.post(f"{url}/v1/chat/completions", json=CHAT)
    assert answer.status_code == 200, answer.text
    assert fake.completion_requests[-1].body["model"] == "coffee-shop@v1"
    assert fake.load_calls == []


def test_the_default_loads_through_the_management_api(
    fake: FakeUpstream, publish: Callable[..., Any]
) -> None:
    publish("coffee-shop", 1)
    with _serve(fake, "vllm") as url:
        answer = httpx.post(f"{url}/v1/chat/completions", json=CHAT)
    assert answer.status_code == 200, answer.text
    assert fake.load_calls == ["coffee-shop@v1"]
    assert fake.completion_requests[-1].body["model"] == "coffee-shop@v1"


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"UPSTREAM_KIND.*ray-serve"):
        load_settings(gateway={"upstreams": ["http://ray:8000"], "upstream_kind": "sglang"})
