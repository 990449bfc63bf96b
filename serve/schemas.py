"""The OpenAI wire types the gateway reads, and where each endpoint's answer text lives.

Requests are validated only as far as the gateway needs (the model, the
messages or prompt, whether to stream); every other parameter passes through
to the engine unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


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


# -- answers, as /openapi.json describes them -----------------------------------------


class _Open(BaseModel):
    """A wire object: the fields the gateway promises, and whatever else the engine adds."""

    model_config = ConfigDict(extra="allow")


class Usage(_Open):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AnswerMessage(_Open):
    role: str
    content: str | None = None


class ChatChoice(_Open):
    index: int
    message: AnswerMessage
    finish_reason: str | None = None


class ChatCompletion(_Open):
    """A whole chat answer; streamed, each event is a `chat.completion.chunk` instead."""

    id: str
    object: str
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None


class TextChoice(_Open):
    index: int
    text: str
    finish_reason: str | None = None


class TextCompletion(_Open):
    id: str
    object: str
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage | None = None


class ModelCard(_Open):
    id: str
    object: str
    created: int
    owned_by: str
    display_name: str
    domain: str | None
    version: int | None
    loaded: bool


class ModelList(_Open):
    object: str
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """Every error, in OpenAI's shape."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route: these statuses, each an `ErrorResponse`."""
    return {
        status: {"model": ErrorResponse, "description": _STATUS_WORDS[status]}
        for status in statuses
    }


_STATUS_WORDS = {
    400: "The request is malformed, or a policy refuses it (`code` says which).",
    401: "A missing or wrong API key.",
    404: "No such model for this key, or no such endpoint.",
    408: "The request body did not arrive in time.",
    409: "A key with that name exists already.",
    413: "The request body is too large.",
    429: "The key is over a limit (`code` says which), or the domain is at its cap on "
    "requests in flight; retry after `Retry-After` unless `x-should-retry` is false.",
    500: "An unexpected error (logged by type and request id only).",
    502: "The engine answered with an error of its own.",
    503: "The engine or the screening is unavailable for now; retry after `Retry-After`.",
}
STREAM_CONTENT = {"text/event-stream": {"schema": {"type": "string"}}}
"""A streamed answer: `data: {json}` events, the last one `data: [DONE]`."""


@dataclass(frozen=True)
class Api:
    """One completion endpoint: its path, and which part of a choice holds the answer."""

    path: str
    holders: tuple[str, str] | None = None
    """For chat: the message of a whole answer and the delta of a streamed piece; for
    text completions, None: the choice itself holds its `text`."""
    id_prefix: str = "cmpl-"
    """How the `id` the gateway gives each answer starts, as at OpenAI."""

    def holder(self, streamed: bool) -> str | None:
        return None if self.holders is None else self.holders[1 if streamed else 0]


CHAT = Api("/v1/chat/completions", ("message", "delta"), "chatcmpl-")
COMPLETIONS = Api("/v1/completions", None, "cmpl-")
