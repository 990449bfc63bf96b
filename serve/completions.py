"""Chat and text completions through the gateway.

The path of one request: resolve the `model` to a target, add the domain's
brand voice, mask personal data with the domain's input policy, hold the
domain's adapter loaded in an engine, forward, then make the answer safe with
the output policy (chunk by chunk when streamed) and restore the user's own
values. The client's `model` string is what every answer carries back.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from lorastack.errors import LorastackError
from lorastack.guardrails import Direction, Guard, StreamRedactor, Vault
from lorastack.guardrails.guard import count_masked
from lorastack.manifest import AdapterManifest
from lorastack.registry import AdapterRegistry
from lorastack.serve import sse
from lorastack.serve.adapters import engine_name
from lorastack.serve.errors import GatewayError, error_body, to_gateway_error
from lorastack.serve.guarding import BASE_DOMAIN_LABEL, GuardProvider
from lorastack.serve.keys import ClientKey
from lorastack.serve.metrics import Metrics
from lorastack.serve.pool import EnginePool
from lorastack.serve.targets import Target, resolve_target
from lorastack.serve.upstream import ModelMissingUpstream

logger = logging.getLogger(__name__)

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """An OpenAI chat request; parameters we do not name pass through unchanged."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200)
    prompt: str | list[str]
    stream: bool = False


def with_system_prompt(
    messages: list[dict[str, Any]], manifest: AdapterManifest | None
) -> list[dict[str, Any]]:
    """Add the domain's brand voice; the domain's mode decides what happens to the client's."""
    if manifest is None or not manifest.system_prompt:
        return messages
    voice = manifest.system_prompt
    first = messages[0] if messages else None
    has_own = first is not None and first.get("role") in ("system", "developer")
    if not has_own:
        return [{"role": "system", "content": voice}, *messages]
    assert first is not None
    if manifest.system_prompt_mode == "keep":
        return messages
    if manifest.system_prompt_mode == "replace":
        return [{**first, "content": voice}, *messages[1:]]
    own = first.get("content")
    if isinstance(own, str):
        return [{**first, "content": f"{voice}\n\n{own}"}, *messages[1:]]
    return [{"role": "system", "content": voice}, *messages]


@dataclass
class _Call:
    """Per-request state shared by the steps of one completion."""

    target: Target
    path: str
    guard: Guard | None
    vault: Vault = field(default_factory=Vault)
    request_id: str = field(default_factory=lambda: f"req-{uuid.uuid4().hex[:16]}")
    started: float = field(default_factory=time.monotonic)
    masked: int = 0

    @property
    def domain_label(self) -> str:
        return self.target.domain or BASE_DOMAIN_LABEL


def _get_text(choice: dict[str, Any], path: str, streamed: bool) -> str | None:
    if path == CHAT_PATH:
        holder = choice.get("delta" if streamed else "message") or {}
        value = holder.get("content") if isinstance(holder, dict) else None
    else:
        value = choice.get("text")
    return value if isinstance(value, str) else None


def _set_text(choice: dict[str, Any], path: str, streamed: bool, text: str) -> None:
    if path == CHAT_PATH:
        key = "delta" if streamed else "message"
        holder = choice.get(key)
        if not isinstance(holder, dict):
            holder = choice[key] = {}
        holder["content"] = text
    else:
        choice["text"] = text


class CompletionService:
    def __init__(
        self,
        registry: AdapterRegistry,
        pool: EnginePool,
        guards: GuardProvider | None,
        metrics: Metrics,
        base_model: str,
    ) -> None:
        self.registry = registry
        self.pool = pool
        self.guards = guards
        self.metrics = metrics
        self.base_model = base_model

    # -- entry points ---------------------------------------------------------

    async def chat(self, request: ChatRequest, key: ClientKey | None) -> Any:
        payload = request.model_dump(exclude_unset=True)
        payload["stream"] = request.stream
        call = self._start(request.model, CHAT_PATH, key)
        messages = with_system_prompt(payload["messages"], call.target.manifest)
        if call.guard is not None:
            protected = await asyncio.to_thread(
                call.guard.protect_messages, messages, call.vault, call.request_id
            )
            messages = protected.messages
            call.masked = protected.masked_count
            self._count(call, Direction.INPUT, protected.findings)
        payload["messages"] = messages
        return await self._run(call, payload, request.stream)

    async def complete(self, request: CompletionRequest, key: ClientKey | None) -> Any:
        payload = request.model_dump(exclude_unset=True)
        payload["stream"] = request.stream
        call = self._start(request.model, COMPLETIONS_PATH, key)
        prompts = [request.prompt] if isinstance(request.prompt, str) else list(request.prompt)
        if call.guard is not None:
            safe = []
            for prompt in prompts:
                result = await asyncio.to_thread(
                    call.guard.protect_text, prompt, call.vault, call.request_id
                )
                self._count(call, Direction.INPUT, result.findings)
                call.masked += count_masked(result.findings)
                safe.append(result.redacted)
            prompts = safe
        payload["prompt"] = prompts[0] if isinstance(request.prompt, str) else prompts
        return await self._run(call, payload, request.stream)

    # -- steps ----------------------------------------------------------------

    def _start(self, model: str, path: str, key: ClientKey | None) -> _Call:
        target = resolve_target(model, self.base_model, self.registry, key)
        guard = self.guards.get(target.domain) if self.guards is not None else None
        return _Call(target, path, guard)

    def _count(self, call: _Call, direction: Direction, findings: list[Any]) -> None:
        if self.guards is not None:
            self.guards.count(call.target.domain, direction, findings)

    def _headers(self, call: _Call) -> dict[str, str]:
        # What the guardrails did, as counts only, for clients such as the UI.
        return {"x-request-id": call.request_id, "x-lorastack-pii-masked": str(call.masked)}

    async def _run(self, call: _Call, payload: dict[str, Any], stream: bool) -> Any:
        try:
            if stream:
                return await self._open_stream(call, payload)
            return await self._complete_once(call, payload)
        except LorastackError as error:
            self._failed(call, to_gateway_error(error))
            raise

    def _failed(self, call: _Call, error: GatewayError) -> None:
        self.metrics.requests.labels(call.domain_label, call.path, str(error.status)).inc()
        self.metrics.errors.labels(call.domain_label, error.code or error.type).inc()

    def _succeeded(self, call: _Call, usage: dict[str, Any] | None) -> None:
        label = call.domain_label
        self.metrics.requests.labels(label, call.path, "200").inc()
        self.metrics.latency.labels(label).observe(time.monotonic() - call.started)
        if usage:
            self.metrics.tokens.labels(label, "in").inc(int(usage.get("prompt_tokens") or 0))
            self.metrics.tokens.labels(label, "out").inc(int(usage.get("completion_tokens") or 0))

    async def _complete_once(self, call: _Call, payload: dict[str, Any]) -> JSONResponse:
        for attempt in (1, 2):
            try:
                async with self.pool.engine_for(call.target) as (endpoint, name):
                    data = await endpoint.upstream.complete(call.path, {**payload, "model": name})
                break
            except ModelMissingUpstream:
                if attempt == 2 or call.target.manifest is None:
                    raise
        data["model"] = call.target.requested
        for choice in data.get("choices") or []:
            text = _get_text(choice, call.path, streamed=False)
            if text is not None and call.guard is not None:
                result = await asyncio.to_thread(
                    call.guard.protect_output, text, call.vault, call.request_id
                )
                self._count(call, Direction.OUTPUT, result.findings)
                _set_text(choice, call.path, False, result.redacted)
        self._succeeded(call, data.get("usage"))
        return JSONResponse(data, headers=self._headers(call))

    async def _open_stream(self, call: _Call, payload: dict[str, Any]) -> StreamingResponse:
        client_wants_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
        payload = {**payload, "stream_options": {"include_usage": True}}
        for attempt in (1, 2):
            stack = AsyncExitStack()
            try:
                endpoint, name = await stack.enter_async_context(self.pool.engine_for(call.target))
                events = await stack.enter_async_context(
                    endpoint.upstream.stream(call.path, {**payload, "model": name})
                )
                break
            except ModelMissingUpstream:
                await stack.aclose()
                if attempt == 2 or call.target.manifest is None:
                    raise
                # The stream opened outside the engine's context: mark the adapter
                # lost here so the retry reloads it (the engine restarted empty).
                name = engine_name(call.target.manifest)
                for candidate in self.pool.endpoints:
                    candidate.adapters.mark_lost(name)
            except BaseException:
                await stack.aclose()
                raise
        relay = self._relay(call, events, stack, client_wants_usage)
        return StreamingResponse(relay, media_type="text/event-stream", headers=self._headers(call))

    async def _relay(
        self,
        call: _Call,
        events: AsyncIterator[dict[str, Any]],
        stack: AsyncExitStack,
        client_wants_usage: bool,
    ) -> AsyncIterator[bytes]:
        redactors: dict[int, StreamRedactor] = {}
        usage: dict[str, Any] | None = None
        first_token = True
        try:
            async for event in events:
                if event.get("usage") and not event.get("choices"):
                    usage = event["usage"]
                    if client_wants_usage:
                        event["model"] = call.target.requested
                        yield sse.encode(event)
                    continue
                event.pop("usage", None)
                if not await self._make_safe(call, event, redactors):
                    continue
                event["model"] = call.target.requested
                if first_token and any(
                    _get_text(c, call.path, streamed=True) for c in event.get("choices") or []
                ):
                    first_token = False
                    self.metrics.ttft.labels(call.domain_label).observe(
                        time.monotonic() - call.started
                    )
                yield sse.encode(event)
            yield sse.DONE
            self._succeeded(call, usage)
        except LorastackError as error:
            mapped = to_gateway_error(error)
            self._failed(call, mapped)
            yield sse.encode(error_body(str(mapped), mapped.type, mapped.code))
            yield sse.DONE
        finally:
            # Closing the upstream stream makes the engine stop generating (a
            # client that went away, or an error) and releases the adapter.
            await stack.aclose()

    async def _make_safe(
        self, call: _Call, event: dict[str, Any], redactors: dict[int, StreamRedactor]
    ) -> bool:
        """Pass each choice's new text through its redactor; False if nothing is left to send."""
        worth_sending = False
        for choice in event.get("choices") or []:
            text = _get_text(choice, call.path, streamed=True)
            finished = choice.get("finish_reason") is not None
            if call.guard is not None and (text is not None or finished):
                index = int(choice.get("index", 0))
                redactor = redactors.get(index)
                if redactor is None:
                    redactor = redactors[index] = call.guard.stream(call.vault, call.request_id)
                safe = await asyncio.to_thread(redactor.feed, text) if text else ""
                if finished:
                    safe += await asyncio.to_thread(redactor.finish)
                    self._count(call, Direction.OUTPUT, redactor.findings)
                _set_text(choice, call.path, True, safe)
                text = safe
            delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
            other = any(k != "content" and v is not None for k, v in (delta or {}).items())
            if text or finished or other or choice.get("logprobs"):
                worth_sending = True
        return worth_sending
