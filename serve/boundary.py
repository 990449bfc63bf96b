"""The gateway's outermost layer: a request id, every response counted, nothing escapes.

Each request gets an `Outcome` (outcome.py) in its ASGI state: the layers inside fill in the
domain and, on failure, the error code; this layer counts the response by
status and code when it ends (a stream that fails half-way included), and
gives every response its `x-request-id`.

An exception that reaches here (Starlette re-raises after answering 500) is
logged once, by type and request id, never with a traceback or a message that
could quote a prompt; if no response started yet, a plain OpenAI-shaped 500
goes out.
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lorastack.serve.errors import GatewayError, send_error
from lorastack.serve.metrics import Metrics
from lorastack.serve.outcome import Outcome, new_request_id

OTHER_ENDPOINT = "other"
CLIENT_CLOSED = 499  # as nginx counts it


class RequestBoundary:
    """Pure ASGI middleware around the whole app."""

    def __init__(self, app: ASGIApp, metrics: Metrics, endpoints: Collection[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.endpoints = frozenset(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        # Only known paths become label values: unknown ones must not grow the metrics.
        outcome = Outcome(new_request_id(), path if path in self.endpoints else OTHER_ENDPOINT)
        scope.setdefault("state", {})["outcome"] = outcome
        status: int | None = None

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers") or [])
                if not any(name.lower() == b"x-request-id" for name, _ in headers):
                    headers.append((b"x-request-id", outcome.request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as error:
            outcome.log_unexpected(error)
            if status is None:
                status = 500
                outcome.error_code = outcome.error_code or "server_error"
                await send_error(scope, sending, GatewayError("internal error"))
        finally:
            outcome.done()
            # No status and no error: the client went away before an answer began.
            counted = status if status is not None else CLIENT_CLOSED
            self.metrics.response(
                outcome.domain, outcome.endpoint, counted, outcome.error_code, outcome.version
            )
