"""Which domain adapters one engine holds, as an explicit state machine.

Each adapter version (`coffee-shop@v3`, its name inside vLLM) is a slot:
absent -> loading -> ready -> unloading -> absent, or loading -> failed. A
slot's lock makes concurrent first requests cause one load, which they all
wait for. Requests hold a slot while they run (`in_use`); a slot in use is
never unloaded: eviction takes the least recently used idle one, and an admin
unload waits for the slot to drain.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from opentelemetry.trace import Tracer

from lorastack.errors import AdapterInvalid
from lorastack.manifest import AdapterManifest
from lorastack.serve import tracing
from lorastack.serve.errors import AdapterLoadFailed, GatewayError
from lorastack.serve.metrics import Metrics
from lorastack.serve.upstream import Upstream
from lorastack.validation import check_published_weights

logger = logging.getLogger(__name__)


class SlotState(StrEnum):
    ABSENT = "absent"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    UNLOADING = "unloading"


def engine_name(manifest: AdapterManifest) -> str:
    """The adapter's name inside vLLM: one per version, so versions never mix."""
    return f"{manifest.domain}@v{manifest.version}"


@dataclass
class AdapterSlot:
    name: str
    manifest: AdapterManifest
    path: Path
    state: SlotState = SlotState.ABSENT
    in_use: int = 0
    last_used: float = field(default_factory=time.monotonic)
    error: str | None = None
    load_seconds: float | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    idle: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def __post_init__(self) -> None:
        self.idle.set()

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "domain": self.manifest.domain,
            "version": self.manifest.version,
            "state": self.state.value,
            "in_use": self.in_use,
            "error": self.error,
            "load_seconds": self.load_seconds,
        }


class AdapterManager:
    """The adapter slots of one engine."""

    def __init__(
        self,
        upstream: Upstream,
        capacity: int,
        metrics: Metrics,
        tracer: Tracer = tracing.NO_TRACER,
    ) -> None:
        self.upstream = upstream
        self.capacity = capacity
        self.metrics = metrics
        self.tracer = tracer
        self._slots: dict[str, AdapterSlot] = {}
        self._eviction = asyncio.Lock()

    def slots(self) -> list[AdapterSlot]:
        return list(self._slots.values())

    def state_of(self, name: str) -> SlotState:
        slot = self._slots.get(name)
        return slot.state if slot else SlotState.ABSENT

    def _slot(self, manifest: AdapterManifest, path: Path) -> AdapterSlot:
        name = engine_name(manifest)
        slot = self._slots.get(name)
        if slot is None:
            slot = self._slots[name] = AdapterSlot(name, manifest, path)
        return slot

    def _set_state(self, slot: AdapterSlot, state: SlotState) -> None:
        slot.state = state
        self.metrics.adapter_state(slot.manifest.domain, slot.name, state.value)

    @asynccontextmanager
    async def use(self, manifest: AdapterManifest, path: Path) -> AsyncIterator[str]:
        """Hold the adapter loaded for the duration of one request; yields its engine name."""
        slot = self._slot(manifest, path)
        async with slot.lock:
            if slot.state is not SlotState.READY:
                await self._load(slot)
            slot.in_use += 1
            slot.idle.clear()
        try:
            yield slot.name
        finally:
            slot.in_use -= 1
            slot.last_used = time.monotonic()
            if slot.in_use == 0:
                slot.idle.set()

    async def load(self, manifest: AdapterManifest, path: Path) -> AdapterSlot:
        slot = self._slot(manifest, path)
        async with slot.lock:
            if slot.state is not SlotState.READY:
                await self._load(slot)
        return slot

    async def _load(self, slot: AdapterSlot) -> None:
        """Load under the slot's lock, evicting an idle adapter first if the engine is full."""
        with tracing.active(tracing.adapter_load_span(self.tracer, slot.manifest, slot.name)):
            await self._make_room(slot)
            self._set_state(slot, SlotState.LOADING)
            started = time.monotonic()
            try:
                await asyncio.to_thread(_check_weights, slot)
                await self.upstream.load_adapter(slot.name, str(slot.path))
            except GatewayError as error:
                slot.error = str(error)
                self._set_state(slot, SlotState.FAILED)
                self.metrics.adapter_loaded(slot.manifest.domain, "failed", None)
                logger.warning("loading %s failed: %s", slot.name, error)
                # The next request may retry: FAILED is not sticky.
                raise AdapterLoadFailed(
                    f"the adapter for {slot.manifest.domain} could not be loaded; try again"
                ) from None
        slot.load_seconds = time.monotonic() - started
        slot.error = None
        slot.last_used = time.monotonic()
        self._set_state(slot, SlotState.READY)
        self.metrics.adapter_loaded(slot.manifest.domain, "ok", slot.load_seconds)

    async def _make_room(self, incoming: AdapterSlot) -> None:
        async with self._eviction:
            resident = [
                s
                for s in self._slots.values()
                if s is not incoming and s.state in (SlotState.READY, SlotState.LOADING)
            ]
            if len(resident) < self.capacity:
                return
            idle = sorted(
                (s for s in resident if s.state is SlotState.READY and s.in_use == 0),
                key=lambda s: s.last_used,
            )
            for victim in idle:
                if victim.lock.locked():
                    continue
                async with victim.lock:
                    if victim.in_use or victim.state is not SlotState.READY:
                        continue
                    await self._unload(victim)
                    self.metrics.adapter_evicted(victim.manifest.domain)
                    logger.info("evicted %s to make room for %s", victim.name, incoming.name)
                    return
            # Every resident adapter is busy: load anyway; vLLM keeps the extra one
            # on the CPU side and swaps it in as batches allow.

    async def _unload(self, slot: AdapterSlot) -> None:
        self._set_state(slot, SlotState.UNLOADING)
        try:
            await self.upstream.unload_adapter(slot.name)
        except GatewayError:
            self._set_state(slot, SlotState.READY)
            raise
        self._set_state(slot, SlotState.ABSENT)

    async def unload(self, name: str, drain_timeout_s: float = 300.0) -> AdapterSlot | None:
        """Unload once no request uses the adapter; new requests wait, then reload it."""
        slot = self._slots.get(name)
        if slot is None:
            return None
        async with slot.lock:
            if slot.state is not SlotState.READY:
                return slot
            self._set_state(slot, SlotState.UNLOADING)
            try:
                await asyncio.wait_for(slot.idle.wait(), drain_timeout_s)
            except TimeoutError:
                self._set_state(slot, SlotState.READY)
                raise GatewayError(
                    f"{name} is still in use after {drain_timeout_s:.0f} s"
                ) from None
            await self._unload(slot)
        return slot

    def forget_loaded(self) -> list[AdapterSlot]:
        """The engine restarted empty: mark every slot absent; return those that were ready."""
        were_ready = [s for s in self._slots.values() if s.state is SlotState.READY]
        for slot in self._slots.values():
            if slot.state is not SlotState.ABSENT:
                self._set_state(slot, SlotState.ABSENT)
        return were_ready

    def mark_lost(self, name: str) -> None:
        """The engine said it does not know this adapter: the next use reloads it."""
        slot = self._slots.get(name)
        if slot is not None and slot.state is SlotState.READY:
            self._set_state(slot, SlotState.ABSENT)


def _check_weights(slot: AdapterSlot) -> None:
    """Refuse weights that changed since publishing (the manifest records their hash)."""
    try:
        check_published_weights(slot.path, slot.manifest)
    except AdapterInvalid:
        raise GatewayError(
            f"{slot.name}: adapter weights do not match the published hash"
        ) from None
