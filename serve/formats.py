"""How an answer is written for its client: what differs between APIs on the same path.

Every answer is made safe the same way, whichever API asked (service.py, relay.py); an
`AnswerFormat` only writes the result: a whole answer's JSON, and a stream's bytes (what
goes first, each safe engine event, the end, a failure after the first byte). Chat and
text completions are written as the engine wrote them (`OpenAIFormat`: `data: {json}`
events ending in `data: [DONE]`); the Responses API's writer is serve/responses.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from lorastack import sse
from lorastack.serve.errors import GatewayError
from lorastack.serve.schemas import CHAT, COMPLETIONS, Api


class AnswerFormat(Protocol):
    """One request's answer writer (it may keep state across a stream's events)."""

    @property
    def api(self) -> Api:
        """The engine endpoint that answers, and how the answer's `id` starts."""

    def whole(self, answer: dict[str, Any]) -> dict[str, Any]:
        """A whole answer, safe and labelled (`id`, `model`), as the client gets it."""

    def opened(self, response_id: str, model: str) -> bytes:
        """What a stream starts with, before the engine's first event."""

    def event(self, event: dict[str, Any]) -> bytes:
        """One safe, labelled engine event (b"": nothing to send for it)."""

    def end(self, usage: dict[str, Any] | None) -> bytes:
        """The stream's last bytes once the answer is complete (`usage`: the engine's)."""

    def failed(self, error: GatewayError) -> bytes:
        """The stream's last bytes when it failed after its first byte."""


@dataclass(frozen=True)
class OpenAIFormat:
    """Chat and text completions: the engine's own shape, relabelled."""

    api: Api

    def whole(self, answer: dict[str, Any]) -> dict[str, Any]:
        return answer

    def opened(self, response_id: str, model: str) -> bytes:
        return b""

    def event(self, event: dict[str, Any]) -> bytes:
        return sse.encode(event)

    def end(self, usage: dict[str, Any] | None) -> bytes:
        return sse.DONE

    def failed(self, error: GatewayError) -> bytes:
        return sse.encode(error.body()) + sse.DONE


CHAT_FORMAT = OpenAIFormat(CHAT)
COMPLETIONS_FORMAT = OpenAIFormat(COMPLETIONS)
