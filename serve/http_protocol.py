"""The gateway's HTTP/1.1 connections: uvicorn's httptools protocol with limits on headers.

uvicorn's httptools protocol accepts any number of headers of any size and
waits forever for a request's headers to finish. Before a request reaches any
routing, this protocol refuses more than `max_headers` headers or more than
`max_header_bytes` of them with 431, and closes a connection whose request
headers are not complete within `header_timeout_s` (a client that never
finishes them holds nothing for long). A body that never finishes is the
ASGI layer's to time out (`serve/limits.py`).

Kept as a subclass rather than a fork: it only counts in `on_header` and arms
a timer around the header phase; uvicorn's own code parses and dispatches.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from lorastack.serve.errors import GatewayError

DEFAULT_MAX_HEADERS = 100
DEFAULT_MAX_HEADER_BYTES = 32 * 1024
DEFAULT_HEADER_TIMEOUT_S = 30.0
_LINGER_S = 2.0


class HeadersTooLarge(GatewayError):
    status = 431
    type = "invalid_request_error"
    code = "request_headers_too_large"


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing this connection's request."""


def _response(status: int, phrase: str, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status} {phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(payload)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + payload


class LimitedHttpProtocol(HttpToolsProtocol):
    """One client connection, with the gateway's header limits (set on the class)."""

    max_headers = DEFAULT_MAX_HEADERS
    max_header_bytes = DEFAULT_MAX_HEADER_BYTES
    header_timeout_s = DEFAULT_HEADER_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_count = 0
        self._header_bytes = 0
        self._too_large: HeadersTooLarge | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._discarding = False

    @classmethod
    def configured(
        cls, max_headers: int, max_header_bytes: int, header_timeout_s: float
    ) -> type[LimitedHttpProtocol]:
        """A protocol class with these limits, for `uvicorn.run(http=...)`."""
        return type(
            "GatewayHttpProtocol",
            (cls,),
            {
                "max_headers": max_headers,
                "max_header_bytes": max_header_bytes,
                "header_timeout_s": header_timeout_s,
            },
        )

    # -- the header phase's deadline -------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = self._header_bytes = 0
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_timed_out)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        # Only while no request of this connection is running: keep-alive idling between
        # requests is uvicorn's own timeout, and an answer being streamed is not cut.
        if self.cycle is not None and not self.cycle.response_complete:
            return
        if not self.transport.is_closing():
            self.transport.close()

    # -- the header limits -------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_bytes += len(name) + len(value)
        if self._header_count > self.max_headers:
            self._refuse(f"more than {self.max_headers} request headers")
        if self._header_bytes > self.max_header_bytes:
            self._refuse(f"request headers larger than {self.max_header_bytes} bytes")
        super().on_header(name, value)

    def _refuse(self, message: str) -> None:
        self._too_large = HeadersTooLarge(message)
        raise _Refused  # httptools stops parsing; `send_400_response` answers

    def send_400_response(self, msg: str) -> None:
        if self._too_large is None:
            super().send_400_response(msg)
            return
        self._disarm_header_timer()
        self.transport.write(
            _response(431, "Request Header Fields Too Large", self._too_large.body())
        )
        # Closing with the client's data unread would reset the connection, and the
        # client might never read the 431: read and drop the rest for a moment first.
        self._discarding = True
        self.loop.call_later(_LINGER_S, self._close)

    def data_received(self, data: bytes) -> None:
        if not self._discarding:
            super().data_received(data)

    def eof_received(self) -> None:
        if self._discarding:
            self._close()

    def _close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()
