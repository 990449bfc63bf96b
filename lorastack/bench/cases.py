"""The serving case matrix, and running it against one engine and two gateways.

For each concurrency level, each workload (the base model, one domain adapter, N domains
mixed) runs on each route (vLLM directly, the gateway without guardrails, the gateway with
them) back to back, so that the cases compared with each other are measured close in
time; then the hot-swap case runs the mixed workload through the gateway while an admin
loop promotes and unloads adapters. Every case starts from an engine holding no adapter
and warms up (one short request per model, not measured) first.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import httpx

from lorastack.bench.load import (
    LoadRun,
    RequestResult,
    load_client,
    plan_requests,
    run_load,
    send_one,
)
from lorastack.bench.stats import CaseStats, summarise
from lorastack.progress import NullProgress, Progress

logger = logging.getLogger(__name__)

WARM_UP_TOKENS = 4


class Route(StrEnum):
    DIRECT = "direct"
    """vLLM's own OpenAI server, adapters loaded by the benchmark."""
    GATEWAY = "gateway"
    """lorastack's gateway with guardrails off."""
    GUARDED = "guarded"
    """lorastack's gateway with the default PII policy."""
    LIMITED = "limited"
    """The gateway without guardrails, with a key whose limits (requests and tokens per
    minute, a budget) are all counted but never reached: what enforcing limits costs."""


class Workload(StrEnum):
    BASE = "base"
    ADAPTER = "adapter"
    MIXED = "mixed"
    SWAP = "swap"
    """The mixed workload while adapters are promoted and unloaded."""


@dataclass(frozen=True)
class Case:
    route: Route
    workload: Workload
    concurrency: int

    @property
    def name(self) -> str:
        return f"{self.route}/{self.workload}/c{self.concurrency}"


def case_matrix(levels: Sequence[int]) -> list[Case]:
    """Every case, in the order it runs."""
    cases = []
    for concurrency in levels:
        for workload in (Workload.BASE, Workload.ADAPTER, Workload.MIXED):
            cases += [
                Case(route, workload, concurrency)
                for route in Route
                if route is not Route.LIMITED or workload is Workload.BASE
            ]
        cases.append(Case(Route.GATEWAY, Workload.SWAP, concurrency))
    return cases


@dataclass(frozen=True)
class SwapStats:
    """What the admin loop did during the hot-swap case."""

    operations: int
    failed: int
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class CaseResult:
    case: Case
    stats: CaseStats
    swap: SwapStats | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.case.name,
            "route": self.case.route.value,
            "workload": self.case.workload.value,
            "concurrency": self.case.concurrency,
            **self.stats.to_dict(),
        }
        if self.swap is not None:
            data["swap"] = {
                "operations": self.swap.operations,
                "failed": self.swap.failed,
                "errors": list(self.swap.errors),
            }
        return data


@dataclass(frozen=True)
class ServingStack:
    """Where each route listens, and what the run serves."""

    engine_url: str
    gateway_url: str
    guarded_url: str
    base_model: str
    domains: tuple[str, ...]
    """Domain names; the first is the one-adapter workload and the one promoted."""
    adapter_dirs: dict[str, Path]
    """Domain -> the folder of its version 1, which the direct route loads into vLLM."""
    swap_versions: tuple[int, int] = (1, 2)
    """Versions of the first domain that the hot-swap loop promotes in turn."""
    client_key: str | None = None
    admin_key: str | None = None
    limited_key: str | None = None
    """A key with limits, on the unguarded gateway (the limited route)."""


@dataclass(frozen=True)
class ServingPlan:
    levels: tuple[int, ...]
    requests: Callable[[int], int]
    """Requests per case at a concurrency level."""
    max_tokens: int
    seed: int
    swap_interval_s: float = 0.5
    """Pause between two admin operations of the hot-swap loop."""
    timeout_s: float = 600.0


class RouteTarget(Protocol):
    url: str
    headers: dict[str, str]

    async def prepare(self, models: Sequence[str]) -> None:
        """Make `models` servable before the warm-up."""

    async def reset(self) -> None:
        """Leave the engine with no adapter loaded."""


@dataclass
class DirectTarget:
    """vLLM itself: the benchmark loads and unloads the adapters (domain name = LoRA name)."""

    url: str
    adapter_dirs: dict[str, Path]
    client: httpx.AsyncClient
    headers: dict[str, str] = field(default_factory=dict)
    _loaded: list[str] = field(default_factory=list)

    async def prepare(self, models: Sequence[str]) -> None:
        for model in models:
            if model not in self.adapter_dirs or model in self._loaded:
                continue
            body = {"lora_name": model, "lora_path": str(self.adapter_dirs[model])}
            response = await self.client.post(f"{self.url}/v1/load_lora_adapter", json=body)
            if response.status_code >= 400 and "already" not in response.text:
                logger.warning("vLLM refused adapter %s: %s", model, response.text[:200])
                continue
            self._loaded.append(model)

    async def reset(self) -> None:
        while self._loaded:
            name = self._loaded.pop()
            await self.client.post(f"{self.url}/v1/unload_lora_adapter", json={"lora_name": name})


@dataclass
class GatewayTarget:
    """The gateway: it loads adapters itself; the admin API unloads them afterwards."""

    url: str
    client: httpx.AsyncClient
    headers: dict[str, str] = field(default_factory=dict)
    admin_headers: dict[str, str] = field(default_factory=dict)

    async def prepare(self, models: Sequence[str]) -> None:
        return None

    async def reset(self) -> None:
        response = await self.client.get(f"{self.url}/admin/adapters", headers=self.admin_headers)
        response.raise_for_status()
        for domain in response.json()["domains"]:
            for version in domain["versions"]:
                if any(e.get("state") in ("ready", "loading") for e in version["engines"]):
                    await self.client.post(
                        f"{self.url}/admin/adapters/unload",
                        json={"model": f"{domain['domain']}@{version['version']}"},
                        headers=self.admin_headers,
                    )


def _models(stack: ServingStack, workload: Workload) -> list[str]:
    if workload is Workload.BASE:
        return [stack.base_model]
    if workload is Workload.ADAPTER:
        return [stack.domains[0]]
    return list(stack.domains)


async def _swap_loop(
    client: httpx.AsyncClient,
    target: GatewayTarget,
    stack: ServingStack,
    stop: asyncio.Event,
    interval_s: float,
) -> SwapStats:
    """Promote the first domain's versions in turn and unload domains, until `stop`."""
    promoted = stack.domains[0]
    operations = 0
    errors: list[str] = []
    step = 0
    while not stop.is_set():
        if step % 2 == 0:
            version = stack.swap_versions[(step // 2 + 1) % 2]
            path = "/admin/adapters/promote"
            body: dict[str, Any] = {"domain": promoted, "version": version}
        else:
            path = "/admin/adapters/unload"
            body = {"model": stack.domains[(step // 2) % len(stack.domains)]}
        try:
            response = await client.post(
                f"{target.url}{path}", json=body, headers=target.admin_headers
            )
            failure = None if response.status_code == 200 else f"{path}: {response.status_code}"
        except httpx.HTTPError as error:
            failure = f"{path}: {type(error).__name__}"
        operations += 1
        if failure is not None:
            errors.append(failure)
        step += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
    # Later cases see the aliases as they were.
    await client.post(
        f"{target.url}/admin/adapters/promote",
        json={"domain": promoted, "version": stack.swap_versions[0]},
        headers=target.admin_headers,
    )
    return SwapStats(operations, len(errors), tuple(dict.fromkeys(errors))[:5])


Swapper = Callable[[asyncio.Event], Coroutine[Any, Any, SwapStats]]


async def measure(
    name: str,
    models: Sequence[str],
    concurrency: int,
    target: RouteTarget,
    plan: ServingPlan,
    progress: Progress,
    swapper: Swapper | None = None,
) -> tuple[CaseStats, SwapStats | None]:
    """Warm up on each of `models`, run the closed-loop load on them, leave no adapter;
    what the admin loop did when there was one."""
    count = plan.requests(concurrency)
    await target.prepare(models)
    async with load_client(1, plan.timeout_s) as client:
        for model in models:
            spec = plan_requests([model], 1, plan.seed)[0]
            warm = await send_one(
                client,
                target.url,
                spec,
                max_tokens=WARM_UP_TOKENS,
                seed=plan.seed,
                headers=target.headers,
            )
            if not warm.ok:
                logger.warning("warm-up of %s on %s failed: %s", model, name, warm.error)
    progress.step(f"{name}: {count} requests", total=count)

    def done(_: RequestResult) -> None:
        progress.advance(1)

    stop = asyncio.Event()
    swapping = asyncio.create_task(swapper(stop)) if swapper is not None else None
    try:
        run: LoadRun = await run_load(
            target.url,
            plan_requests(models, count, plan.seed),
            concurrency=concurrency,
            max_tokens=plan.max_tokens,
            seed=plan.seed,
            headers=target.headers,
            timeout_s=plan.timeout_s,
            on_done=done,
        )
    finally:
        stop.set()
        swap = await swapping if swapping is not None else None
    await target.reset()
    return summarise(run), swap


async def run_case(
    case: Case,
    target: RouteTarget,
    stack: ServingStack,
    plan: ServingPlan,
    progress: Progress,
    swapper: Swapper | None = None,
) -> CaseResult:
    stats, swap = await measure(
        case.name,
        _models(stack, case.workload),
        case.concurrency,
        target,
        plan,
        progress,
        swapper,
    )
    return CaseResult(case, stats, swap)


async def run_serving(
    stack: ServingStack,
    plan: ServingPlan,
    progress: Progress | None = None,
    on_case: Callable[[CaseResult], None] | None = None,
) -> list[CaseResult]:
    """Run the whole case matrix; each result is also passed to `on_case` as it comes."""
    progress = progress or NullProgress()
    client_headers = {"authorization": f"Bearer {stack.client_key}"} if stack.client_key else {}
    admin_headers = {"authorization": f"Bearer {stack.admin_key}"} if stack.admin_key else {}
    results = []
    async with httpx.AsyncClient(timeout=plan.timeout_s, trust_env=False) as admin:
        direct = DirectTarget(stack.engine_url, stack.adapter_dirs, admin)
        gateway = GatewayTarget(stack.gateway_url, admin, client_headers, admin_headers)
        guarded = GatewayTarget(stack.guarded_url, admin, client_headers, admin_headers)
        limited_headers = (
            {"authorization": f"Bearer {stack.limited_key}"} if stack.limited_key else {}
        )
        limited = GatewayTarget(stack.gateway_url, admin, limited_headers, admin_headers)
        targets: dict[Route, RouteTarget] = {
            Route.DIRECT: direct,
            Route.GATEWAY: gateway,
            Route.GUARDED: guarded,
            Route.LIMITED: limited,
        }
        for case in case_matrix(plan.levels):
            swapper: Swapper | None = None
            if case.workload is Workload.SWAP:
                swapper = functools.partial(
                    _swap_loop, admin, gateway, stack, interval_s=plan.swap_interval_s
                )
            result = await run_case(case, targets[case.route], stack, plan, progress, swapper)
            results.append(result)
            if on_case is not None:
                on_case(result)
    return results
