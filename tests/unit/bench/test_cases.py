"""The serving case matrix run against real gateways in front of the fake vLLM."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from lorastack.bench.cases import CaseResult, ServingPlan, ServingStack, Workload, run_serving
from lorastack.bench.stack import create_limited_key, scratch_database
from lorastack.db import SqlFeedbackStore, make_engine
from lorastack.registry import AdapterRegistry
from lorastack.serve.app import build_gateway, create_app, engine_client
from lorastack.settings import load_settings
from tests.fake_upstream import FakeUpstream
from tests.fakes import RegexDetector, write_adapter
from tests.servers import serve_in_thread

ADMIN_KEY = "bench-admin-key-0123456789"
CLIENT_KEY = "bench-client-key"
DOMAINS = ("bench-1", "bench-2", "bench-3")


@pytest.fixture
def stack(
    registry: AdapterRegistry, tmp_path: Path, fake_pii_detector: None
) -> Iterator[tuple[ServingStack, FakeUpstream]]:
    for seed, domain in enumerate(DOMAINS):
        source = write_adapter(tmp_path / domain, "tiny", seed=seed)
        registry.publish(source, domain, promote="prod")
    registry.publish(write_adapter(tmp_path / "bench-1-v2", "tiny", seed=9), "bench-1")
    # The unguarded gateway's database holds the limited route's key, as in a real run.
    limited_key = create_limited_key(tmp_path)
    engine = make_engine(scratch_database(tmp_path))
    with ExitStack() as running:
        running.callback(engine.dispose)
        fake = running.enter_context(FakeUpstream(base_model="tiny"))
        urls = []
        for guardrails in (False, True):
            settings = load_settings(
                base_model="tiny",
                gateway={
                    "admin_key": ADMIN_KEY,
                    "api_keys": [CLIENT_KEY],
                    "guardrails": guardrails,
                    "max_adapters": 2,
                },
            )
            client = engine_client(30.0)
            app = create_app(
                build_gateway(
                    settings,
                    [fake.url],
                    client,
                    detector=RegexDetector(),
                    feedback_store=None if guardrails else SqlFeedbackStore(engine),
                ),
                settings.gateway.max_body_bytes,
                client,
            )
            urls.append(running.enter_context(serve_in_thread(app)))
        yield (
            ServingStack(
                engine_url=fake.url,
                gateway_url=urls[0],
                guarded_url=urls[1],
                base_model="tiny",
                domains=DOMAINS,
                adapter_dirs={d: registry.version_dir(d, 1) for d in DOMAINS},
                client_key=CLIENT_KEY,
                admin_key=ADMIN_KEY,
                limited_key=limited_key,
            ),
            fake,
        )


def test_every_case_runs_and_leaves_the_engine_empty(
    stack: tuple[ServingStack, FakeUpstream], registry: AdapterRegistry
) -> None:
    serving, fake = stack
    seen: list[CaseResult] = []
    plan = ServingPlan(
        levels=(1, 2), requests=lambda c: 2 * c, max_tokens=4, seed=0, swap_interval_s=0.01
    )
    results = asyncio.run(run_serving(serving, plan, on_case=seen.append))
    assert seen == results
    assert [r.case.name for r in results][:3] == [
        "direct/base/c1",
        "gateway/base/c1",
        "guarded/base/c1",
    ]
    assert len(results) == 22  # 3 routes x 3 workloads, limited/base and swap, x 2 levels
    for result in results:
        assert result.stats.failed == 0, (result.case.name, result.stats.errors)
        assert result.stats.requests == 2 * result.case.concurrency
        assert result.stats.output_tokens > 0
        assert result.stats.tokens_per_s > 0
        assert result.stats.ttft_p50_ms is not None
        assert (result.swap is not None) == (result.case.workload is Workload.SWAP)
    swaps = [r.swap for r in results if r.swap is not None]
    assert all(s.operations >= 1 and s.failed == 0 for s in swaps)

    # The direct route loaded the adapters under their domain names, the gateway under
    # its per-version names; every case ended with nothing loaded.
    assert {"bench-1", "bench-2", "bench-3"} <= set(fake.load_calls)
    assert "bench-1@v1" in fake.load_calls
    assert fake.loaded == {}
    # The gateways took requests for their per-version names; the swap loop reset the alias.
    gateway_calls = [r for r in fake.completion_requests if "@v" in r.body["model"]]
    assert gateway_calls
    assert registry.index("bench-1").aliases["prod"] == 1
