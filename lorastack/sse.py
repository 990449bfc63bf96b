"""OpenAI-style server-sent events: `data: {json}` events ending in `data: [DONE]`.

One encoder for what the gateway sends and one reader for what it (or the
bench) receives, on `httpx-sse`'s parser. The reader raises typed errors so
that each caller maps them to its own meaning (a gateway error, a failed
bench request) without matching on messages.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

from lorastack.errors import LorastackError

DONE = b"data: [DONE]\n\n"


class StreamBroken(LorastackError):
    """The stream is not an OpenAI event stream: an event that is not JSON, a wrong type."""


class StreamIncomplete(LorastackError):
    """The stream ended before `[DONE]`: the server stopped mid-answer."""


class StreamErrorEvent(LorastackError):
    """The server sent an error event in the middle of the stream."""


def encode(event: dict[str, Any], name: str | None = None) -> bytes:
    """One event; with `name`, an `event:` line too (the Responses API names every event)."""
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {data}\n\n".encode()


async def read_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects of a streamed response, up to `[DONE]`.

    Raises `StreamErrorEvent` for an `{"error": ...}` event, `StreamBroken` for
    an event that is not JSON (or a response that is no event stream), and
    `StreamIncomplete` when it stops before `[DONE]`; transport errors
    (`httpx.TransportError`) pass through.
    """
    try:
        async for sse in EventSource(response).aiter_sse():
            if sse.data == "[DONE]":
                return
            if not sse.data:
                continue
            try:
                event = json.loads(sse.data)
            except ValueError:
                raise StreamBroken("malformed stream event") from None
            if not isinstance(event, dict):
                continue
            if "error" in event and not event.get("choices"):
                error = event["error"] if isinstance(event["error"], dict) else {}
                raise StreamErrorEvent(str(error.get("message") or "failed mid-stream")[:1000])
            yield event
    except SSEError as error:
        raise StreamBroken(str(error)) from None
    raise StreamIncomplete("the stream ended without [DONE]")
