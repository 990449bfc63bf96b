"""The engines behind the gateway: one or more vLLM servers, each with its adapters.

Stateless gateways can front several vLLM replicas; each replica loads
adapters on its own, so a request for a domain goes to a replica that already
holds its adapter when one does, else to the least busy replica.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from lorastack.serve.adapters import AdapterManager, SlotState, engine_name
from lorastack.serve.errors import EngineUnavailable
from lorastack.serve.targets import Target
from lorastack.serve.upstream import ModelMissingUpstream, Upstream

_DOWN_FOR_S = 2.0


@dataclass
class Endpoint:
    upstream: Upstream
    adapters: AdapterManager
    in_flight: int = 0
    down_until: float = 0.0
    restarting: bool = False
    """Set by the supervisor while the engine restarts: requests get 503 at once."""
    generation: int = field(default=0)

    @property
    def available(self) -> bool:
        return not self.restarting and time.monotonic() >= self.down_until

    def mark_down(self) -> None:
        self.down_until = time.monotonic() + _DOWN_FOR_S


class EnginePool:
    def __init__(self, endpoints: list[Endpoint], base_model: str) -> None:
        if not endpoints:
            raise ValueError("at least one engine is needed")
        self.endpoints = endpoints
        self.base_model = base_model

    def pick(self, target: Target) -> Endpoint:
        candidates = [e for e in self.endpoints if e.available]
        if not candidates:
            raise EngineUnavailable("the engine is starting or restarting; try again shortly")
        if target.manifest is not None:
            name = engine_name(target.manifest)
            ready = [e for e in candidates if e.adapters.state_of(name) is SlotState.READY]
            if ready:
                candidates = ready
        return min(candidates, key=lambda e: e.in_flight)

    @asynccontextmanager
    async def engine_for(self, target: Target) -> AsyncIterator[tuple[Endpoint, str]]:
        """An endpoint and the model name to send it, held for one request."""
        endpoint = self.pick(target)
        endpoint.in_flight += 1
        try:
            if target.manifest is None or target.path is None:
                yield endpoint, self.base_model
            else:
                async with endpoint.adapters.use(target.manifest, target.path) as name:
                    yield endpoint, name
        except EngineUnavailable:
            endpoint.mark_down()
            raise
        except ModelMissingUpstream:
            if target.manifest is not None:
                # The engine lost the adapter (it restarted): reload on the next try.
                endpoint.adapters.mark_lost(engine_name(target.manifest))
            raise
        finally:
            endpoint.in_flight -= 1
