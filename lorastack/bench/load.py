"""An async load generator: streamed chat completions over HTTP, timed token by token.

It speaks the OpenAI chat API only, so the same run measures vLLM directly and the
gateway in front of it. Every request asks for exactly `max_tokens` tokens (`ignore_eos`,
greedy), so base model, adapters and paths all produce the same amount of work; the
prompts and the order they are sent in come from a seed.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from lorastack import sse

CHAT_PATH = "/v1/chat/completions"

# Support questions of the kind the domains answer. A few carry personal details, as real
# ones do, so that the guarded path has something to mask.
PROMPTS: tuple[str, ...] = (
    "What is a good drink to have with breakfast?",
    "How long does standard delivery usually take?",
    "Can I change the delivery address of an order that has already shipped?",
    "Which of your coffee blends is the least bitter?",
    "Hi, this is Jane Porter, my order has not arrived yet. What should I do?",
    "How do I return a grinder that stopped working after a week?",
    "Do you offer a discount for ordering every month?",
    "Please explain the difference between a latte and a flat white.",
    "My card ending 4242 was charged twice. Can you check the payment?",
    "What are your opening hours on public holidays?",
    "Can you recommend a gift for someone who likes tea more than coffee?",
    "You can reach me at jane.porter@example.com about the refund.",
    "How should I store coffee beans so that they stay fresh?",
    "Is the house espresso blend available decaffeinated?",
    "What information do you need to reset my loyalty account?",
    "Write a short, friendly reply thanking a customer for a five-star review.",
)


@dataclass(frozen=True)
class RequestSpec:
    """One request of a run: which model (or domain) and which prompt."""

    model: str
    prompt: str


def plan_requests(models: Sequence[str], count: int, seed: int) -> list[RequestSpec]:
    """`count` requests cycling through `models` in order, with prompts drawn from `seed`."""
    if not models:
        raise ValueError("at least one model is needed")
    rng = random.Random(seed)
    return [RequestSpec(models[i % len(models)], rng.choice(PROMPTS)) for i in range(count)]


@dataclass(frozen=True)
class RequestResult:
    """How one streamed request went, timed on the client."""

    model: str
    ok: bool
    started_s: float
    """When it was sent, from the start of the run."""
    latency_s: float
    """From sending to the end of the stream."""
    ttft_s: float | None = None
    """From sending to the first piece of answer text."""
    decode_s: float | None = None
    """From the first to the last piece of answer text."""
    output_tokens: int = 0
    """Tokens generated (the usage the server reports, else the text chunks seen)."""
    chunks: int = 0
    """Stream events that carried answer text."""
    error: str | None = None

    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first; None when the text came in one piece
        (a guarded answer held back whole tells nothing about the pace of tokens)."""
        if not self.ok or self.decode_s is None or self.output_tokens < 2 or self.chunks < 2:
            return None
        return self.decode_s / (self.output_tokens - 1)


@dataclass(frozen=True)
class LoadRun:
    """Every request of one run and the run's wall time (first send to last answer)."""

    results: tuple[RequestResult, ...]
    wall_s: float


def chat_body(spec: RequestSpec, max_tokens: int, seed: int) -> dict[str, Any]:
    return {
        "model": spec.model,
        "messages": [{"role": "user", "content": spec.prompt}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "seed": seed,
        "ignore_eos": True,  # vLLM's: every answer is exactly max_tokens long
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def _error_message(status: int, raw: bytes) -> str:
    try:
        body = json.loads(raw)
        message = body["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = raw.decode("utf-8", errors="replace")
    return f"HTTP {status}: {str(message)[:200]}"


class _Failed(Exception):
    pass


async def _stream(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
) -> tuple[float | None, float | None, int, int]:
    """Send one request; return (first text time, last text time, tokens, text chunks)."""
    first = last = None
    chunks = 0
    usage_tokens: int | None = None
    async with client.stream("POST", url, json=body, headers=headers) as response:
        if response.status_code >= 400:
            raise _Failed(_error_message(response.status_code, await response.aread()))
        try:
            async for event in sse.read_events(response):
                usage = event.get("usage")
                if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
                    usage_tokens = usage["completion_tokens"]
                pieces = _text_pieces(event)
                if pieces:
                    now = time.perf_counter()
                    first = now if first is None else first
                    last = now
                    chunks += pieces
        except sse.StreamErrorEvent as error:
            raise _Failed(f"error mid-stream: {str(error)[:200]}") from None
        except (sse.StreamBroken, sse.StreamIncomplete) as error:
            raise _Failed(str(error)) from None
    tokens = usage_tokens if usage_tokens is not None else chunks
    return first, last, tokens, chunks


def _text_pieces(event: dict[str, Any]) -> int:
    """How many pieces of answer text a stream event carries (one per choice with text)."""
    deltas = (c.get("delta") for c in event.get("choices") or [] if isinstance(c, dict))
    return sum(1 for d in deltas if isinstance(d, dict) and d.get("content"))


async def send_one(
    client: httpx.AsyncClient,
    base_url: str,
    spec: RequestSpec,
    *,
    max_tokens: int,
    seed: int,
    headers: dict[str, str] | None = None,
    run_started: float | None = None,
) -> RequestResult:
    """Send one streamed chat request and time it; failures are results, never raised."""
    sent = time.perf_counter()
    started_s = sent - run_started if run_started is not None else 0.0
    body = chat_body(spec, max_tokens, seed)
    try:
        first, last, tokens, chunks = await _stream(
            client, base_url.rstrip("/") + CHAT_PATH, body, headers or {}
        )
    except _Failed as failure:
        error: str | None = str(failure)
    except httpx.HTTPError as failure:
        error = f"{type(failure).__name__}: {str(failure)[:200]}"
    else:
        done = time.perf_counter()
        if first is None or last is None or tokens < 1:
            error = "no answer text"
        else:
            return RequestResult(
                model=spec.model,
                ok=True,
                started_s=started_s,
                latency_s=done - sent,
                ttft_s=first - sent,
                decode_s=last - first,
                output_tokens=tokens,
                chunks=chunks,
            )
    return RequestResult(
        model=spec.model,
        ok=False,
        started_s=started_s,
        latency_s=time.perf_counter() - sent,
        error=error,
    )


def load_client(concurrency: int, timeout_s: float) -> httpx.AsyncClient:
    """A client with a connection per concurrent stream (no proxies: targets are local)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s, connect=10.0),
        limits=httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency),
        trust_env=False,
    )


async def run_load(
    base_url: str,
    requests: Sequence[RequestSpec],
    *,
    concurrency: int,
    max_tokens: int,
    seed: int,
    headers: dict[str, str] | None = None,
    timeout_s: float = 600.0,
    on_done: Callable[[RequestResult], None] | None = None,
) -> LoadRun:
    """Send `requests` in order with `concurrency` streams open at a time (a closed loop)."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    results: list[RequestResult | None] = [None] * len(requests)
    pending = iter(range(len(requests)))

    async with load_client(concurrency, timeout_s) as client:
        # From here: the client's set-up (its TLS context) is no part of the run's time.
        started = time.perf_counter()

        async def worker() -> None:
            for index in pending:
                result = await send_one(
                    client,
                    base_url,
                    requests[index],
                    max_tokens=max_tokens,
                    seed=seed,
                    headers=headers,
                    run_started=started,
                )
                results[index] = result
                if on_done is not None:
                    on_done(result)

        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(requests)))))
        wall_s = time.perf_counter() - started
    return LoadRun(tuple(r for r in results if r is not None), wall_s)
