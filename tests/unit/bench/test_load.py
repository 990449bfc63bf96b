"""The load generator against the scriptable fake of vLLM."""

from __future__ import annotations

import asyncio
import time

from lorastack.bench.load import PROMPTS, RequestSpec, plan_requests, run_load
from tests.fake_upstream import (
    FakeUpstream,
    fake_upstream_fixture,  # noqa: F401
)


def test_requests_cycle_through_models_with_prompts_from_the_seed() -> None:
    first = plan_requests(["a", "b", "c"], 7, seed=3)
    assert [r.model for r in first] == ["a", "b", "c", "a", "b", "c", "a"]
    assert all(r.prompt in PROMPTS for r in first)
    assert plan_requests(["a", "b", "c"], 7, seed=3) == first
    assert [r.prompt for r in plan_requests(["x"], 7, seed=4)] != [r.prompt for r in first]


def test_a_streamed_request_is_timed_token_by_token(fake_upstream: FakeUpstream) -> None:
    fake_upstream.enqueue(["one ", "two ", "three ", "four"], delay_s=0.05)
    run = asyncio.run(
        run_load(
            fake_upstream.url,
            [RequestSpec("base-model", "Hello?")],
            concurrency=1,
            max_tokens=4,
            seed=0,
            headers={"authorization": "Bearer k"},
        )
    )
    [result] = run.results
    assert result.ok, result.error
    assert result.output_tokens == 4  # from the usage the client asked for
    assert result.chunks == 4
    assert result.ttft_s is not None and result.ttft_s < 0.05
    assert result.decode_s is not None and result.decode_s >= 0.14
    assert result.tpot_s is not None and 0.045 < result.tpot_s < 0.2
    assert result.latency_s >= result.ttft_s + result.decode_s
    assert run.wall_s >= result.latency_s
    sent = fake_upstream.completion_requests[-1]
    assert sent.body["max_tokens"] == 4
    assert sent.body["ignore_eos"] is True
    assert sent.body["temperature"] == 0.0
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["messages"] == [{"role": "user", "content": "Hello?"}]
    assert sent.headers["authorization"] == "Bearer k"


def test_failures_are_results_with_a_reason(fake_upstream: FakeUpstream) -> None:
    fake_upstream.enqueue_error(503, "the engine is busy")
    fake_upstream.enqueue_disconnect(after_chunks=2)
    specs = [
        RequestSpec("base-model", "a"),
        RequestSpec("base-model", "b"),
        RequestSpec("no-such-adapter", "c"),
        RequestSpec("base-model", "d"),
    ]
    run = asyncio.run(run_load(fake_upstream.url, specs, concurrency=1, max_tokens=8, seed=0))
    errors = [r.error for r in run.results]
    assert errors[0] == "HTTP 503: the engine is busy"
    assert errors[1] is not None and (
        "without [DONE]" in errors[1] or "RemoteProtocolError" in errors[1]
    )
    assert errors[2] is not None and errors[2].startswith("HTTP 404")
    assert errors[3] is None
    assert [r.ok for r in run.results] == [False, False, False, True]
    assert [r.model for r in run.results] == [s.model for s in specs]


def test_at_most_concurrency_streams_are_open_at_once(fake_upstream: FakeUpstream) -> None:
    for _ in range(6):
        fake_upstream.enqueue(["a ", "b ", "c"], delay_s=0.1)
    started = time.perf_counter()
    run = asyncio.run(
        run_load(
            fake_upstream.url,
            plan_requests(["base-model"], 6, seed=0),
            concurrency=3,
            max_tokens=3,
            seed=0,
        )
    )
    elapsed = time.perf_counter() - started
    assert all(r.ok for r in run.results)
    # Two rounds of three 0.2 s streams: about 0.4 s, not 0.2 s (all at once) nor 1.2 s.
    assert 0.35 < elapsed < 1.0
    starts = sorted(r.started_s for r in run.results)
    assert starts[2] < 0.1 and starts[3] >= 0.19
