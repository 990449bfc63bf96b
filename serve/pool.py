"""The engines behind the gateway: one or more vLLM servers, each with its adapters.

Stateless gateways can front several vLLM replicas; each replica loads
adapters on its own, so a request for a domain goes to a replica that already
holds its adapter when one does, else to the least busy replica.

A request talks to the engines through one `EngineSession`: it holds an
engine and the target's adapter for as long as the answer runs, and owns the
one retry after an engine lost the adapter (it restarted).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opentelemetry.trace import Span, Tracer

from lorastack.serve import tracing
from lorastack.serve.adapters import AdapterManager, SlotState, engine_name
from lorastack.serve.errors import EngineLostModel, EngineUnavailable
from lorastack.serve.targets import Target
from lorastack.serve.upstream import Upstream

T = TypeVar("T")

_DOWN_FOR_S = 2.0


@dataclass
class Endpoint:
    upstream: Upstream
    adapters: AdapterManager
    in_flight: int = 0
    down_until: float = 0.0
    restarting: bool = False
    """Set by the supervisor while the engine restarts: requests get 503 at once."""
    generation: int = field(default=0)

    @property
    def available(self) -> bool:
        return not self.restarting and time.monotonic() >= self.down_until

    def mark_down(self) -> None:
        self.down_until = time.monotonic() + _DOWN_FOR_S


@dataclass
class EngineStream:
    """An open streamed answer: its events, and what closing it releases."""

    events: AsyncIterator[dict[str, Any]]
    _resources: AsyncExitStack

    async def aclose(self) -> None:
        """Close the engine's stream (it stops generating) and release engine and adapter."""
        await self._resources.aclose()


class EnginePool:
    def __init__(
        self, endpoints: list[Endpoint], base_model: str, tracer: Tracer = tracing.NO_TRACER
    ) -> None:
        if not endpoints:
            raise ValueError("at least one engine is needed")
        self.endpoints = endpoints
        self.base_model = base_model
        self.tracer = tracer

    def pick(self, target: Target) -> Endpoint:
        running = [e for e in self.endpoints if not e.restarting]
        if not running:
            raise EngineUnavailable("the engine is starting or restarting; try again shortly")
        # An engine that just failed rests while another can answer; with no other, it is
        # tried again at once (it may be back).
        candidates = [e for e in running if e.available] or [
            min(running, key=lambda e: e.down_until)
        ]
        if target.manifest is not None:
            name = engine_name(target.manifest)
            ready = [e for e in candidates if e.adapters.state_of(name) is SlotState.READY]
            if ready:
                candidates = ready
        return min(candidates, key=lambda e: e.in_flight)

    def is_loaded(self, name: str) -> bool:
        """Whether any engine holds the adapter `name` ready."""
        return any(e.adapters.state_of(name) is SlotState.READY for e in self.endpoints)

    def session(self, target: Target) -> EngineSession:
        return EngineSession(self, target)

    @asynccontextmanager
    async def engine_for(self, target: Target) -> AsyncIterator[tuple[Endpoint, str]]:
        """An endpoint and the model name to send it, held for one request."""
        endpoint = self.pick(target)
        endpoint.in_flight += 1
        try:
            if target.manifest is None or target.path is None:
                yield endpoint, self.base_model
            else:
                async with endpoint.adapters.use(target.manifest, target.path) as name:
                    yield endpoint, endpoint.upstream.model_for(name)
        except EngineUnavailable:
            endpoint.mark_down()
            raise
        except EngineLostModel:
            if target.manifest is not None:
                # The engine lost the adapter (it restarted): reload on the next use.
                endpoint.adapters.mark_lost(engine_name(target.manifest))
            raise
        finally:
            endpoint.in_flight -= 1


class EngineSession:
    """One request's use of the engines, for `target`.

    Each answer is one inference span (tracing.py), current while the request goes out, so
    that an adapter load, a retry and the HTTP calls nest under it; a stream's span lasts
    until the stream is closed.
    """

    def __init__(self, pool: EnginePool, target: Target) -> None:
        self._pool = pool
        self._target = target

    async def complete(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A whole (not streamed) answer from the engine."""

        async def once() -> dict[str, Any]:
            async with self._pool.engine_for(self._target) as (endpoint, name):
                return await endpoint.upstream.complete(path, {**body, "model": name})

        with tracing.active(self._span(path, body)) as span:
            answer = await self._retrying(once)
            tracing.engine_answered(span, self._target, answer.get("usage"))
        return answer

    async def open_stream(self, path: str, body: dict[str, Any]) -> EngineStream:
        """A streamed answer, opened; the caller must `aclose()` it when done."""

        @asynccontextmanager
        async def streaming() -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
            async with (
                self._pool.engine_for(self._target) as (endpoint, name),
                endpoint.upstream.stream(path, {**body, "model": name}) as events,
            ):
                yield events

        async def once() -> EngineStream:
            resources = AsyncExitStack()
            events = await resources.enter_async_context(streaming())
            return EngineStream(events, resources)

        span = self._span(path, body)
        with tracing.active(span, end=False):
            stream = await self._retrying(once)
        if span.is_recording():
            stream.events = self._observed(stream.events, span)
        stream._resources.callback(span.end)  # closing the stream ends its span
        return stream

    def _span(self, path: str, body: dict[str, Any]) -> Span:
        return tracing.inference_span(self._pool.tracer, self._target, path, body)

    async def _observed(
        self, events: AsyncIterator[dict[str, Any]], span: Span
    ) -> AsyncIterator[dict[str, Any]]:
        """The stream's events, its usage (the last event's) and its failure noted on `span`."""
        try:
            async for event in events:
                if event.get("usage"):
                    tracing.engine_answered(span, self._target, event["usage"])
                yield event
        except Exception as error:
            tracing.failed(span, type(error).__name__)
            raise

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        try:
            return await attempt()
        except EngineLostModel:
            if self._target.manifest is None:
                raise  # the engine does not serve the base model: nothing to reload
            # `engine_for` marked the adapter lost: this attempt loads it again.
            return await attempt()
