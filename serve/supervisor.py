"""Keep the gateway's own vLLM engine running: start it, watch it, restart it.

While the engine starts or restarts, its endpoint answers 503 with
Retry-After; once it is back, the adapters that were loaded are loaded again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from lorastack.errors import EngineError
from lorastack.serve.adapters import AdapterSlot
from lorastack.serve.engine import EngineProcess
from lorastack.serve.errors import GatewayError
from lorastack.serve.pool import Endpoint

logger = logging.getLogger(__name__)


class EngineSupervisor:
    def __init__(
        self, process: EngineProcess, endpoint: Endpoint, check_every_s: float = 1.0
    ) -> None:
        self.process = process
        self.endpoint = endpoint
        self.check_every_s = check_every_s
        self.restarts = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._to_reload: list[AdapterSlot] = []

    async def start(self) -> None:
        """Start the engine in the background; the gateway serves 503 until it is ready."""
        self.endpoint.restarting = True
        self._task = asyncio.create_task(self._run(), name="engine-supervisor")

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self.process.stop)

    async def _boot(self) -> None:
        self.endpoint.restarting = True
        await asyncio.to_thread(self.process.start)
        await asyncio.to_thread(self.process.wait_ready)
        self.endpoint.restarting = False
        logger.warning("engine ready at %s", self.process.url)

    async def _run(self) -> None:
        backoff = 1.0
        while not self._stopping:
            try:
                await self._boot()
                backoff = 1.0
                await self._watch()
            except EngineError as error:
                logger.error("engine failed to start: %s", str(error).splitlines()[0])
            if self._stopping:
                return
            self.restarts += 1
            self.endpoint.restarting = True
            self._to_reload += self.endpoint.adapters.forget_loaded()
            await asyncio.to_thread(self.process.stop)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def _watch(self) -> None:
        reload, self._to_reload = self._to_reload, []
        for slot in reload:
            try:
                await self.endpoint.adapters.load(slot.manifest, slot.path)
            except GatewayError as error:
                logger.warning("could not reload %s after a restart: %s", slot.name, error)
        while not self._stopping:
            await asyncio.sleep(self.check_every_s)
            if not self.process.alive():
                logger.error("engine died; restarting it")
                return
