"""The request body: read whole before routing, within a size and a time limit.

A body larger than `max_bytes` gets 413, whether its size was declared or it
streamed in chunks; a body that does not finish arriving within `timeout_s`
gets 408. Reading it here (at most `max_bytes` held) means no handler ever
sees a half-read body, and a client that stalls holds nothing for long.

On the completion endpoints, a body over `prompt_bytes` holds a prompt longer
than the engine can take (see serve/prompt_size.py): it is refused with 400
`context_length_exceeded` as soon as that is known (from its declared length,
else as it arrives), never parsed. uvicorn then skips the rest of the body
and keeps the connection, so a flood of huge prompts costs the gateway little
more than its clients' bytes passing through the HTTP parser.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lorastack.serve.errors import GatewayError, PayloadTooLarge, send_error
from lorastack.serve.prompt_size import PromptTooLong


class RequestTimeout(GatewayError):
    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class BodySizeLimit:
    """Pure ASGI middleware: the body read up front, then handed to the app in one piece."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        timeout_s: float = 30.0,
        prompt_bytes: int | None = None,
        prompt_paths: Collection[str] = (),
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.prompt_bytes = prompt_bytes
        self.prompt_paths = frozenset(prompt_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, refusal = self._limit_for(scope.get("path", ""))
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            # Refused unread: uvicorn skips the rest of the body and keeps the connection.
            await send_error(scope, send, refusal(int(declared)))
            return
        try:
            body = await asyncio.wait_for(self._read(receive, limit), self.timeout_s)
        except TimeoutError:
            late = RequestTimeout(f"the request body did not arrive within {self.timeout_s:g} s")
            await send_error(scope, send, late)
            return
        if isinstance(body, int):
            await send_error(scope, send, refusal(body))
            return
        await self.app(scope, _replay(body, receive), send)

    def _limit_for(self, path: str) -> tuple[int, Callable[[int], GatewayError]]:
        prompt = self.prompt_bytes
        if prompt is not None and path in self.prompt_paths and prompt < self.max_bytes:
            return prompt, PromptTooLong.unread
        return self.max_bytes, self._too_large

    def _too_large(self, size: int) -> GatewayError:
        return PayloadTooLarge(f"request body is larger than {self.max_bytes} bytes")

    async def _read(self, receive: Receive, limit: int) -> bytes | int:
        """The whole body, or how far it got past `limit` (the rest is left unread)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)  # the client went away; the app will notice
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return size
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body as one message, then whatever the client sends next (its disconnect)."""
    delivered = False

    async def replaying() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replaying
