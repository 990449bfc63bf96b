"""OpenAI's Responses API on the chat path: text in, text out, stateless.

A Responses request becomes a chat request (`to_chat`): `instructions` a leading system
message, `input` the conversation, `max_output_tokens` `max_tokens`. From there it is a
chat request like any other (service.py): the domain, its brand voice, the guardrails,
the adapter, a canary, capture and the brand-rule checks all apply unchanged. Only the
answer is written differently, by `ResponsesFormat`: a `response` object, or the
Responses event stream (`response.created` ... `response.completed`).

What a text-only gateway that keeps nothing cannot do is refused with a 400 naming the
parameter: stored responses (`store: true`, `previous_response_id`, `conversation`),
background runs, tools, structured output, reasoning, and any content but text (images,
files and audio cannot be screened for personal data).
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from lorastack import sse
from lorastack.serve.errors import BadRequest, GatewayError
from lorastack.serve.fields import check_values
from lorastack.serve.schemas import CHAT, Api, ChatRequest

PATH = "/v1/responses"
RESPONSES = Api(CHAT.path, CHAT.holders, "resp_")
"""Answered by the engine's chat endpoint; each answer's `id` is `resp_...`, as at OpenAI."""

_STATELESS = "this gateway is stateless and keeps no responses: send the whole conversation"
_NO_TOOLS = "this gateway answers with text only, without tools"
# Parameters the gateway cannot honour, each accepted only at values that ask for nothing
# more than a plain text answer (what the official client sends when they are not set).
_ONLY_AT: dict[str, tuple[tuple[Any, ...], str]] = {
    "store": ((None, False), f"{_STATELESS} in `input`, with `store: false`"),
    "previous_response_id": ((None,), f"{_STATELESS} in `input`"),
    "conversation": ((None,), f"{_STATELESS} in `input`"),
    "background": ((None, False), "answers come back in the request, whole or streamed"),
    "tools": ((None, []), _NO_TOOLS),
    "tool_choice": ((None, "none", "auto"), _NO_TOOLS),
    "parallel_tool_calls": ((None, True, False), _NO_TOOLS),
    "max_tool_calls": ((None,), _NO_TOOLS),
    "include": ((None, []), "answers carry their text only"),
    "text": ((None, {"format": {"type": "text"}}), "answers are plain text"),
    "reasoning": ((None,), "the served models do not reason apart from their answer"),
    "top_logprobs": ((None, 0), "log probabilities are single tokens no policy can screen"),
    "truncation": ((None, "disabled"), "a conversation is never cut short to fit"),
}
_ROLES = ("user", "assistant", "system", "developer")
# A message item's own fields; `id`, `status` and `phase` come with an earlier answer's
# output item sent back as input, and mean nothing to the engine.
_ITEM_FIELDS = frozenset({"type", "role", "content", "id", "status", "phase"})
_TEXT_PARTS = ("input_text", "output_text")


class ResponsesRequest(BaseModel):
    """A Responses request, as far as a text-only, stateless gateway takes it."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200)
    input: str | Annotated[list[dict[str, Any]], Field(min_length=1)]
    """The user's text, or the conversation: message items (`role`, `content`)."""
    instructions: str | None = None
    stream: bool = False
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = None
    top_p: float | None = None
    metadata: dict[str, str] | None = None
    """Returned in the answer; never forwarded."""
    user: str | None = None
    safety_identifier: str | None = None
    """Who the end user is, like `user`: it picks a canary's side, and is never forwarded."""


def _refused(path: str, why: str) -> BadRequest:
    return BadRequest(
        f"`{path}` is not supported here: {why}", param=path, code="unsupported_parameter"
    )


def _invalid(path: str, what: str) -> BadRequest:
    return BadRequest(f"{path}: {what}", param=path, code="invalid_value")


def to_chat(request: ResponsesRequest) -> ChatRequest:
    """The chat request that answers `request`; a 400 for what the gateway cannot do."""
    check_values(request.model_dump(exclude_unset=True))  # errors name the Responses fields
    for key, value in (request.model_extra or {}).items():
        allowed, why = _ONLY_AT.get(key, ((), "not a parameter this gateway accepts"))
        if value not in allowed:
            raise _refused(key, why)
    messages: list[dict[str, Any]] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    if isinstance(request.input, str):
        messages.append({"role": "user", "content": request.input})
    else:
        messages += [_message(item, f"input[{i}]") for i, item in enumerate(request.input)]
    body: dict[str, Any] = {"model": request.model, "messages": messages, "stream": request.stream}
    passed = {
        "max_tokens": request.max_output_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "user": request.safety_identifier or request.user,
    }
    body |= {key: value for key, value in passed.items() if value is not None}
    return ChatRequest.model_validate(body)


def _message(item: dict[str, Any], path: str) -> dict[str, Any]:
    kind = item.get("type", "message")
    if kind != "message":
        raise _refused(f"{path}.type", f"input items of type {kind!r} (only messages)")
    unknown = sorted(item.keys() - _ITEM_FIELDS)
    if unknown:
        raise _refused(f"{path}.{unknown[0]}", "not a field of a message item")
    role = item.get("role")
    if role not in _ROLES:
        raise _invalid(f"{path}.role", f"must be one of {', '.join(_ROLES)}")
    return {"role": role, "content": _content(item.get("content"), f"{path}.content")}


def _content(content: Any, path: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _invalid(path, "expected text or a list of text parts")
    parts = []
    for index, part in enumerate(content):
        part_path = f"{path}[{index}]"
        if not isinstance(part, dict) or part.get("type") not in _TEXT_PARTS:
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise _refused(part_path, f"content of type {kind!r} cannot be screened (text only)")
        if not isinstance(part.get("text"), str):
            raise _invalid(f"{part_path}.text", "expected text")
        # An echoed output part's `annotations` and `logprobs` are not the engine's to read.
        parts.append({"type": "text", "text": part["text"]})
    return parts


class ResponsesFormat:
    """Writes one chat answer as a Responses `response` object, or as its event stream."""

    api = RESPONSES

    def __init__(self, request: ResponsesRequest) -> None:
        self._request = request
        self._created_at = int(time.time())
        self._item_id = f"msg_{uuid.uuid4().hex}"
        self._id = ""
        self._model = ""
        self._sequence = 0
        self._said: list[str] = []
        self._finish_reason: str | None = None

    def whole(self, answer: dict[str, Any]) -> dict[str, Any]:
        self._id, self._model = answer["id"], answer["model"]
        choices = answer.get("choices") or [{}]  # one choice: a Responses answer has no `n`
        choice: dict[str, Any] = choices[0]
        text = (choice.get("message") or {}).get("content") or ""
        status = _status(choice.get("finish_reason"))
        return self._response(status, [self._item(status, text)], answer.get("usage"))

    # -- the stream: each method returns the SSE bytes of its events ---------------------

    def opened(self, response_id: str, model: str) -> bytes:
        self._id, self._model = response_id, model
        started = self._response("in_progress", [])
        return self._write(
            ("response.created", {"response": started}),
            ("response.in_progress", {"response": started}),
            ("response.output_item.added", {"output_index": 0, "item": self._item("in_progress")}),
            ("response.content_part.added", self._at_part() | {"part": _text_part("")}),
        )

    def event(self, event: dict[str, Any]) -> bytes:
        deltas = []
        for choice in event.get("choices") or []:  # one choice (the request has no `n`)
            self._finish_reason = choice.get("finish_reason") or self._finish_reason
            delta = (choice.get("delta") or {}).get("content")
            if delta:
                self._said.append(delta)
                deltas.append(("response.output_text.delta", self._at_part() | _delta(delta)))
        return self._write(*deltas)

    def end(self, usage: dict[str, Any] | None) -> bytes:
        text, status = "".join(self._said), _status(self._finish_reason)
        item = self._item(status, text)
        return self._write(
            ("response.output_text.done", self._at_part() | {"text": text, "logprobs": []}),
            ("response.content_part.done", self._at_part() | {"part": _text_part(text)}),
            ("response.output_item.done", {"output_index": 0, "item": item}),
            (f"response.{status}", {"response": self._response(status, [item], usage)}),
        )

    def failed(self, error: GatewayError) -> bytes:
        detail = error.body()["error"]
        message = detail["message"]
        item = self._item("incomplete", "".join(self._said))  # what the client was sent
        # The `error` event carries the gateway's code (`engine_unavailable`, `pii_blocked`),
        # as chat's error event does; a failed response's code is one of OpenAI's own.
        failure = {"code": "server_error", "message": message}
        return self._write(
            ("error", {"code": detail["code"] or detail["type"], "message": message}),
            ("response.failed", {"response": self._response("failed", [item], None, failure)}),
        )

    # -- the objects ---------------------------------------------------------------------

    def _response(
        self,
        status: str,
        output: list[dict[str, Any]],
        usage: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        request = self._request
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        return {
            "id": self._id,
            "object": "response",
            "created_at": self._created_at,
            "status": status,
            "error": error,
            "incomplete_details": incomplete,
            "instructions": request.instructions,
            "max_output_tokens": request.max_output_tokens,
            "model": self._model,
            "output": output,
            "parallel_tool_calls": False,
            "previous_response_id": None,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "text": {"format": {"type": "text"}},
            "tool_choice": "none",
            "tools": [],
            "truncation": "disabled",
            "metadata": request.metadata or {},
            "usage": _usage(usage),
        }

    def _item(self, status: str, text: str | None = None) -> dict[str, Any]:
        """The answer's one message item (`text` None: just started, no part yet)."""
        content = [] if text is None else [_text_part(text)]
        return {
            "type": "message",
            "id": self._item_id,
            "status": status,
            "role": "assistant",
            "content": content,
        }

    def _at_part(self) -> dict[str, Any]:
        return {"item_id": self._item_id, "output_index": 0, "content_index": 0}

    def _write(self, *events: tuple[str, dict[str, Any]]) -> bytes:
        written = []
        for kind, fields in events:
            event = {"type": kind, "sequence_number": self._sequence, **fields}
            self._sequence += 1
            written.append(sse.encode(event, name=kind))
        return b"".join(written)


def _status(finish_reason: str | None) -> str:
    """A response cut short by its token limit is `incomplete`, as at OpenAI."""
    return "incomplete" if finish_reason == "length" else "completed"


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _delta(text: str) -> dict[str, Any]:
    return {"delta": text, "logprobs": []}


def _usage(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """The engine's token counts under the Responses API's names."""
    if not usage:
        return None
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return {
        "input_tokens": usage.get("prompt_tokens", 0),
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": usage.get("completion_tokens", 0),
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.get("total_tokens", 0),
    }


# -- the answer, as /openapi.json describes it -------------------------------------------


class OutputText(BaseModel):
    type: str
    text: str


class OutputMessage(BaseModel):
    type: str
    id: str
    status: str
    role: str
    content: list[OutputText]


class ResponseUsage(BaseModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int


class ResponseObject(BaseModel):
    """A whole Responses answer; streamed, its events end with it in `response.completed`."""

    id: str
    object: str
    created_at: int
    status: str
    model: str
    output: list[OutputMessage]
    usage: ResponseUsage | None = None
