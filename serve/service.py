"""Chat and text completions through the gateway: the one service behind every route.

The Responses API (serve/responses.py) is a chat request too: it takes this same path, and
only its answer is written in its own shape (an `AnswerFormat`, formats.py).

The path of one request, each step in one place:

1. `resolve_target` (targets.py): the `model` names the base model or a domain version;
   a domain's running canary takes its share of conversations (canary.py).
2. The brand voice (the target's system prompt) joins the conversation.
3. `fields.py`: every parameter is screened, passed, dropped or refused; `PromptLimit`
   (prompt_size.py) refuses a prompt longer than the engine takes, before any scan.
4. `Screening` (guarding.py): the user's messages are screened for prompt injection
   (flagged or blocked), and personal data in every text the engine reads is masked, on
   the screening pool.
5. `EngineSession` (pool.py): an engine with the domain's adapter loaded answers; a lost
   adapter is reloaded and the request retried once.
6. The answer is made safe (whole, or piece by piece by `StreamRelay` in relay.py), the
   user's own values restored, and it names the version that wrote it (`model`:
   `coffee-shop@v3`, and the `x-lorastack-adapter` header) and carries the gateway's own
   `id`. Once it was sent, its brand rules are checked off the request path (quality.py)
   and, where the domain's capture is on, the exchange is queued for the feedback store
   masked as the engine saw it (capture.py).

Errors are raised as typed exceptions and become HTTP in serve/errors.py; each request's
outcome is noted in its `Outcome` (outcome.py), which the boundary (boundary.py) counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from lorastack.registry import AdapterRegistry
from lorastack.serve import canary, fields
from lorastack.serve.call import Call, UsageSink
from lorastack.serve.capture import ExchangeCapture
from lorastack.serve.formats import CHAT_FORMAT, COMPLETIONS_FORMAT, AnswerFormat
from lorastack.serve.guarding import GuardProvider
from lorastack.serve.keys import ClientKey
from lorastack.serve.metrics import Metrics
from lorastack.serve.outcome import Outcome
from lorastack.serve.pool import EnginePool
from lorastack.serve.prompt_size import PromptLimit
from lorastack.serve.quality import AnswerQuality
from lorastack.serve.rate_limits import DomainCaps
from lorastack.serve.relay import StreamRelay
from lorastack.serve.schemas import Api, ChatRequest, CompletionRequest
from lorastack.serve.targets import ServedModel, resolve_target
from lorastack.texts import message_texts

Answer = JSONResponse | StreamingResponse


class CompletionService:
    def __init__(
        self,
        registry: AdapterRegistry,
        pool: EnginePool,
        guards: GuardProvider | None,
        metrics: Metrics,
        served: ServedModel,
        prompt_limit: PromptLimit,
        quality: AnswerQuality | None = None,
        capture: ExchangeCapture | None = None,
        usage_sinks: Sequence[UsageSink] = (),
    ) -> None:
        self.registry = registry
        self.pool = pool
        self.guards = guards
        self.metrics = metrics
        self.served = served
        self.prompt_limit = prompt_limit
        self.quality = quality
        self.capture = capture
        self.caps: DomainCaps | None = None
        """Each domain's cap on requests in flight on this gateway; None: no caps."""
        self.usage_sinks = list(usage_sinks)
        """Each answer's usage, once sent: the usage recorder, the key's token limits."""

    async def chat(
        self,
        request: ChatRequest,
        key: ClientKey | None,
        outcome: Outcome,
        answer_format: AnswerFormat = CHAT_FORMAT,
    ) -> Answer:
        """Answer a chat request; `answer_format` writes the answer (another API's shape)."""
        call = await self._start(request, answer_format.api, key, outcome)
        with call.failures_recorded():
            body = _body(request)
            body["messages"] = call.target.with_brand_voice(body["messages"])
            slots = fields.prepare_chat(body)
            await self._screen_prompt(call, slots, _user_texts(body["messages"]))
            call.keep_prompt(body["messages"])  # masked now: the slots were replaced
            return await self._answer(call, body, answer_format)

    async def complete(
        self, request: CompletionRequest, key: ClientKey | None, outcome: Outcome
    ) -> Answer:
        call = await self._start(request, COMPLETIONS_FORMAT.api, key, outcome)
        with call.failures_recorded():
            body = _body(request)
            slots = fields.prepare_completion(body)
            # A completion prompt has no roles: all of it is the client's.
            untrusted = [s.text for s in slots if s.path.split("[")[0] in ("prompt", "suffix")]
            await self._screen_prompt(call, slots, untrusted)
            call.keep_prompt([{"role": "user", "content": _first_prompt(body["prompt"])}])
            return await self._answer(call, body, COMPLETIONS_FORMAT)

    async def _start(
        self,
        request: ChatRequest | CompletionRequest,
        api: Api,
        key: ClientKey | None,
        outcome: Outcome,
    ) -> Call:
        who = canary.conversation_identity(request, key)
        resolve = (request.model, self.served, self.registry, key, who)
        if self.registry.reads_files:
            target = resolve_target(*resolve)
        else:  # database queries, maybe a version's first download: off the event loop
            target = await asyncio.to_thread(resolve_target, *resolve)
        if self.caps is not None and target.domain is not None:
            outcome.on_done(self.caps.enter(target.domain))
        call = Call(
            target,
            api,
            self.metrics,
            outcome,
            self.quality,
            self.capture,
            key_hash=key.sha256 if key is not None else None,
            key_name=key.name if key is not None else None,
            usage_sinks=self.usage_sinks,
        )
        if self.guards is not None:
            tenant = key.name if key is not None else "open"
            call.screening = self.guards.screening(target, call.request_id, tenant)
        return call

    async def _screen_prompt(
        self, call: Call, slots: list[fields.Slot], untrusted: list[str]
    ) -> None:
        """Refuse a prompt the engine cannot take, screen the user's texts (`untrusted`) for
        prompt injection, then mask every text the engine reads."""
        texts = [slot.text for slot in slots]
        await self.prompt_limit.check(texts)
        if call.screening is not None:
            masked = await call.screening.texts(texts, untrusted)
            for slot, safe in zip(slots, masked, strict=True):
                slot.replace(safe)

    async def _answer(
        self, call: Call, body: dict[str, Any], answer_format: AnswerFormat
    ) -> Answer:
        call.admitted()  # screened: the rest is the engine's work
        if body.get("stream"):
            return await self._open_stream(call, body, answer_format)
        return await self._whole(call, body, answer_format)

    async def _whole(
        self, call: Call, body: dict[str, Any], answer_format: AnswerFormat
    ) -> JSONResponse:
        data = await self.pool.session(call.target).complete(call.api.path, body)
        data["model"] = call.target.answered_by
        data["id"] = call.response_id
        choices = data.get("choices") or []
        if call.screening is not None:
            await self._screen_answer(call, choices)
        holder = call.api.holder(streamed=False)
        call.finish(data.get("usage"), fields.answer_texts(choices, holder))

        async def after_sent() -> None:  # async: no thread hop just to queue the work
            call.after_sent()

        # The rule check and the capture are queued once the body has gone out.
        return JSONResponse(
            answer_format.whole(data),
            headers=call.headers(),
            background=BackgroundTask(after_sent),
        )

    async def _screen_answer(self, call: Call, choices: list[dict[str, Any]]) -> None:
        assert call.screening is not None
        holder = call.api.holder(streamed=False)
        found = [
            (int(choice.get("index", 0)), channel, slot)
            for choice in choices
            for channel, slot in fields.answer_slots(choice, holder)
        ]
        released = await call.screening.answers([slot.text for _, _, slot in found])
        for (index, channel, slot), safe in zip(found, released, strict=True):
            slot.replace(safe.shown)
            call.keep_masked(index, channel, safe.masked)
        for choice in choices:
            if "logprobs" in choice:  # single tokens: no policy can judge them
                choice["logprobs"] = None

    async def _open_stream(
        self, call: Call, body: dict[str, Any], answer_format: AnswerFormat
    ) -> StreamingResponse:
        # The engine always reports usage (for the metrics); the client gets it if it asked.
        forward_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        body = {**body, "stream_options": {"include_usage": True}}
        stream = await self.pool.session(call.target).open_stream(call.api.path, body)
        relay = StreamRelay(call, stream, forward_usage, answer_format)
        return StreamingResponse(
            relay.__aiter__(), media_type="text/event-stream", headers=call.headers()
        )


_UNTRUSTED_ROLES = frozenset({"user", "tool", "function"})
"""Whose messages are screened for prompt injection: the user's, and what tools fetched (an
injection in a web page or a document). The system and developer messages are the client's
own instructions, the assistant's are the model's."""


def _user_texts(messages: list[dict[str, Any]]) -> list[str]:
    return [
        text
        for message in messages
        if isinstance(message, dict) and message.get("role") in _UNTRUSTED_ROLES
        for text in message_texts(message)
    ]


def _first_prompt(prompt: str | list[str]) -> str:
    """The prompt the first choice answers (a list of prompts gets choices for each)."""
    return prompt if isinstance(prompt, str) else (prompt[0] if prompt else "")


def _body(request: ChatRequest | CompletionRequest) -> dict[str, Any]:
    """The request as the engine gets it: what the client sent, `stream` always explicit."""
    body = request.model_dump(exclude_unset=True)
    body["stream"] = request.stream
    return body
