"""Fair turns: a fixed number of slots shared by tenants, for asyncio.

Used where one tenant (a client key) must not crowd the others out of the
gateway's own work: admission of requests and the PII screening threads. While
a slot is free, whoever asks gets it: one tenant alone may use them all. When
they are all taken, a freed slot goes to the waiting tenant that holds the
fewest at that moment (the one that has waited longest among equals), so a
key's fifth request waits behind every other key's first.

Written here rather than taken from a library: what is needed is turns between
tenants over a fixed number of slots, for asyncio, which no maintained rate
limiter offers (they bound rates, not turns).
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict, deque


class FairSlots:
    """`slots` places, handed out between tenants in turns while they are all taken."""

    def __init__(self, slots: int) -> None:
        self.free = slots
        self._held: Counter[str] = Counter()
        # Tenants with someone waiting, in the order of their turns; each with its queue.
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()

    def held(self, tenant: str) -> int:
        return self._held[tenant]

    async def acquire(self, tenant: str) -> None:
        if self.free > 0 and not self._waiting:
            self.free -= 1
            self._held[tenant] += 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(tenant, deque()).append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.release(tenant)  # the slot was handed over as we gave up: pass it on
            else:
                self._forget(tenant, turn)
            raise

    def release(self, tenant: str) -> None:
        self._held[tenant] -= 1
        if self._held[tenant] <= 0:
            del self._held[tenant]
        self.free += 1
        self._hand_over()

    def _hand_over(self) -> None:
        while self.free > 0 and self._waiting:
            # min() keeps the first of equals: the waiting order breaks ties.
            tenant = min(self._waiting, key=self._held.__getitem__)
            queue = self._waiting.pop(tenant)
            turn = queue.popleft()
            if queue:
                self._waiting[tenant] = queue  # its next one goes to the back of the line
            if turn.done():
                continue
            self.free -= 1
            self._held[tenant] += 1
            turn.set_result(None)

    def _forget(self, tenant: str, turn: asyncio.Future[None]) -> None:
        queue = self._waiting.get(tenant)
        if queue is not None and turn in queue:
            queue.remove(turn)
            if not queue:
                del self._waiting[tenant]
