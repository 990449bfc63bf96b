"""Fair turns: one tenant alone uses every slot; when they are taken, tenants take turns."""

from __future__ import annotations

import asyncio

from lorastack.turns import FairSlots


def test_one_tenant_alone_takes_every_free_slot() -> None:
    async def main() -> int:
        slots = FairSlots(3)
        for _ in range(3):
            await asyncio.wait_for(slots.acquire("only"), 1)
        return slots.held("only")

    assert asyncio.run(main()) == 3


def test_slots_go_round_robin_between_waiting_tenants() -> None:
    async def main() -> list[str]:
        slots = FairSlots(1)
        order: list[str] = []
        await slots.acquire("first")  # holds the only slot

        async def wait(tenant: str) -> None:
            await slots.acquire(tenant)
            order.append(tenant)
            slots.release(tenant)

        waiting = [asyncio.create_task(wait(t)) for t in ("a", "a", "a", "b", "c")]
        await asyncio.sleep(0)
        slots.release("first")
        await asyncio.gather(*waiting)
        return order

    # a queued three first, but b and c each get a turn before a's second.
    assert asyncio.run(main()) == ["a", "b", "c", "a", "a"]


def test_a_tenant_that_gives_up_passes_its_turn_on() -> None:
    async def main() -> int:
        slots = FairSlots(1)
        await slots.acquire("holder")
        impatient = asyncio.create_task(slots.acquire("a"))
        patient = asyncio.create_task(slots.acquire("b"))
        await asyncio.sleep(0)
        impatient.cancel()
        slots.release("holder")
        await asyncio.wait_for(patient, 1)
        slots.release("b")
        return slots.free

    assert asyncio.run(main()) == 1


def test_a_freed_slot_goes_to_the_waiting_tenant_holding_fewest() -> None:
    async def main() -> list[str]:
        slots = FairSlots(3)
        for tenant in ("a", "a", "b"):
            await slots.acquire(tenant)
        order: list[str] = []

        async def wait(tenant: str) -> None:
            await slots.acquire(tenant)
            order.append(tenant)

        a_again = asyncio.create_task(wait("a"))
        await asyncio.sleep(0)
        c_first = asyncio.create_task(wait("c"))
        await asyncio.sleep(0)
        slots.release("b")  # a waited longer, but holds two already; c holds none
        await asyncio.wait_for(c_first, 1)
        slots.release("c")
        await asyncio.wait_for(a_again, 1)
        return order

    assert asyncio.run(main()) == ["c", "a"]
