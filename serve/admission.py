"""Admission: a completion request's own work in the gateway, shared fairly between keys.

Before a completion request reaches the engine, the gateway works on it itself:
reading and parsing the body, checking its size, screening its texts. All of
that shares one interpreter, so a key that floods the gateway with requests
(huge prompts refused as too long, say) would otherwise slow every other key's
requests down. Here:

- the key is checked from the headers first, before the body is read: a request
  without a valid key costs a header check, nothing more;
- at most `slots` requests are admitted at once (as many as there are screening
  threads), and while they are all taken, keys take turns (`lorastack.turns`):
  a key's fifth request waits behind every other key's first one;
- a key with limits (`lorastack keys create --rpm/--tpm/--budget`) has its request counted
  and is refused over them (rate_limits.py), before anything else is spent on it; the
  answer carries the `x-ratelimit-*` headers;
- a request leaves admission when it is handed to the engine (or answered): the
  engine's own queueing is vLLM's, and an answer being generated holds no slot;
- a key whose requests keep being refused as its own mistakes (4xx: too long,
  malformed, no such model) more than `refusals_per_s` times a second waits
  before its next request is read. Refusing is cheap, but not free: a key that
  sends nothing but refused requests, as fast as they come back, would
  otherwise keep the interpreter busy for everyone. While it is over that rate,
  each of its requests takes a place in the refusal window before it is read,
  so many at once cannot all slip through when one place frees; a request let in
  while there was room, and refused when the room was gone, is owed (its key's next
  request waits for one place more). A
  well-behaved key is never slowed, whatever its rate of answered requests.

A request that waits longer than `wait_s` for its turn gets 503 with Retry-After.
The refusal rate is `limits`' moving window. Without keys (a loopback-only gateway), each client
address is its own tenant.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from typing import Any

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Receive, Scope, Send

from lorastack.serve.errors import EngineUnavailable, GatewayError, send_error
from lorastack.serve.keys import KeyStore
from lorastack.serve.outcome import outcome_of
from lorastack.serve.rate_limits import KeyLimiter
from lorastack.turns import FairSlots

# Waiting for a place in the refusal window: never a busy loop, whatever the clock says.
MIN_REFUSAL_WAIT_S = 0.01


class Admission:
    """Pure ASGI middleware for the completion paths: key first, then a fair turn."""

    def __init__(
        self,
        app: ASGIApp,
        keys: KeyStore,
        slots: int,
        paths: Collection[str],
        wait_s: float = 30.0,
        refusals_per_s: int = 10,
        limiter: KeyLimiter | None = None,
    ) -> None:
        self.app = app
        self.keys = keys
        self.limiter = limiter
        self.paths = frozenset(paths)
        self.wait_s = wait_s
        self._slots = FairSlots(slots)
        self._refusals = MovingWindowRateLimiter(MemoryStorage())
        self._refusal_rate = RateLimitItemPerSecond(refusals_per_s)
        # Refusals that found the window full when counted: places the tenant's next
        # requests wait for, so that the rate holds over time (`_count_refusal`).
        self._owed: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        headers = [
            v.decode("latin-1") for k, v in scope.get("headers") or [] if k == b"authorization"
        ]
        try:
            key = self.keys.client(headers)
            limit_headers = await self.limiter.admit(key) if self.limiter is not None else {}
        except GatewayError as error:
            await send_error(scope, send, error)
            return
        if limit_headers:
            send = _with_headers(send, limit_headers)
        tenant = key.name if key is not None else _client_address(scope)
        try:
            reserved = await asyncio.wait_for(self._turn(tenant), self.wait_s)
        except TimeoutError:
            busy = EngineUnavailable("the gateway is busy; try again", code="gateway_busy")
            await send_error(scope, send, busy)
            return
        released = False

        def leave() -> None:
            nonlocal released
            if not released:
                released = True
                self._slots.release(tenant)

        outcome = outcome_of(scope)
        if outcome is not None:
            outcome.on_admitted(leave)
        status: list[int] = []
        try:
            await self.app(scope, receive, _leaving_on_start(send, leave, status))
        finally:
            leave()
            if status and 400 <= status[0] < 500 and not reserved:
                self._count_refusal(tenant)

    async def _turn(self, tenant: str) -> bool:
        """Wait out the tenant's refusals, if it is over their rate; then its slot."""
        reserved = await self._wait_out_refusals(tenant)
        await self._slots.acquire(tenant)
        return reserved

    def _count_refusal(self, tenant: str) -> None:
        """Count a refusal of a request admitted while the window had room. Another of the
        tenant's requests may have taken that room meanwhile: the place is then owed, and
        its next request waits for one more."""
        if not self._refusals.hit(self._refusal_rate, tenant):
            self._owed[tenant] = self._owed.get(tenant, 0) + 1

    async def _wait_out_refusals(self, tenant: str) -> bool:
        """Whether the tenant was over its refusal rate: then it has waited for, and taken,
        a place in the window (its request counts as refused, whatever its answer)."""
        window = self._refusals.get_window_stats(self._refusal_rate, tenant)
        if window.remaining > 0 and tenant not in self._owed:
            return False
        # `hit` checks and takes a place at once, with no await between: of the requests
        # that wake together when one place frees, one takes it and the others wait on.
        while True:
            if self._refusals.hit(self._refusal_rate, tenant):
                owed = self._owed.pop(tenant, 0)
                if not owed:
                    return True
                if owed > 1:
                    self._owed[tenant] = owed - 1
                continue  # that place paid for an earlier refusal: wait for our own
            window = self._refusals.get_window_stats(self._refusal_rate, tenant)
            await asyncio.sleep(max(MIN_REFUSAL_WAIT_S, window.reset_time - time.time()))


def _client_address(scope: Scope) -> str:
    client = scope.get("client")
    return f"client:{client[0]}" if client else "open"


def _with_headers(send: Send, extra: dict[str, str]) -> Send:
    encoded = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in extra.items()]

    async def sending(message: Any) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *encoded]}
        await send(message)

    return sending


def _leaving_on_start(send: Send, leave: Callable[[], None], status: list[int]) -> Send:
    async def sending(message: Any) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
            leave()  # answered: an answer streaming out holds no slot
        await send(message)

    return sending
