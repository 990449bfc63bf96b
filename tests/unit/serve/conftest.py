"""A gateway in front of the fake upstream, with two published domains."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.trace import TracerProvider

from lorastack.db import SqlFeedbackStore, make_engine
from lorastack.feedback import FeedbackStore
from lorastack.guardrails import Detector
from lorastack.registry import AdapterRegistry
from lorastack.serve.app import build_gateway, create_app, engine_client, http_protocol
from lorastack.serve.deps import Gateway
from lorastack.settings import load_settings
from tests.fake_upstream import FakeUpstream
from tests.fakes import RegexDetector, write_adapter
from tests.servers import serve_in_thread

ADMIN_KEY = "admin-key-0123456789abcdef"
COFFEE_VOICE = "You are the cheerful barista of Bean There."


@pytest.fixture
def database(tmp_path: Path) -> Iterator[SqlFeedbackStore]:
    """The gateway's database, as `lorastack serve` opens it (SQLite): feedback, keys,
    usage, audit."""
    engine = make_engine(f"sqlite:///{tmp_path / 'lorastack.db'}")
    yield SqlFeedbackStore(engine)
    engine.dispose()


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(base_model="tiny") as upstream:
        yield upstream


@pytest.fixture
def publish(registry: AdapterRegistry, tmp_path: Path) -> Callable[..., Any]:
    def run(domain: str, seed: int = 0, **kwargs: Any) -> Any:
        source = write_adapter(tmp_path / f"src-{domain}-{seed}", "tiny", seed=seed)
        return registry.publish(source, domain, **kwargs)

    return run


@dataclass
class Running:
    url: str
    gateway: Gateway
    client: httpx.Client
    fake: FakeUpstream

    def chat(self, model: str, content: str, **extra: Any) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
        return self.client.post("/v1/chat/completions", json=body)


@pytest.fixture
def start_gateway(
    fake: FakeUpstream, publish: Callable[..., Any]
) -> Iterator[Callable[..., Running]]:
    """Start a gateway (settings overridable, a feedback store and a tracer provider
    optional) on a real port; two domains are published."""
    publish("coffee-shop", 1, display_name="Bean There", system_prompt=COFFEE_VOICE, promote="prod")
    publish("ledger-desk", 2, display_name="Ledgerly Support")
    stack: list[Any] = []

    def start(
        detector: Detector | None = None,
        feedback_store: FeedbackStore | None = None,
        tracer_provider: TracerProvider | None = None,
        **gateway_settings: Any,
    ) -> Running:
        settings = load_settings(
            base_model="tiny", gateway={"admin_key": ADMIN_KEY, **gateway_settings}
        )
        client = engine_client(30.0)
        gateway = build_gateway(
            settings,
            [fake.url],
            client,
            detector=detector or RegexDetector(),
            feedback_store=feedback_store,
            tracer_provider=tracer_provider,
        )
        app = create_app(
            gateway,
            settings.gateway.max_body_bytes,
            client,
            body_timeout_s=settings.gateway.body_timeout_s,
        )
        server = serve_in_thread(app, http=http_protocol(settings.gateway))
        url = server.__enter__()
        stack.append(server)
        http = httpx.Client(base_url=url, timeout=30.0)
        stack.append(http)
        return Running(url, gateway, http, fake)

    yield start
    for item in reversed(stack):
        if isinstance(item, httpx.Client):
            item.close()
        else:
            item.__exit__(None, None, None)


@pytest.fixture
def gw(start_gateway: Callable[..., Running]) -> Running:
    return start_gateway()
