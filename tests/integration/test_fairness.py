"""One key cannot starve the others: huge prompts from one key, with the real guard.

The gateway screens with real Presidio (the bundled spaCy pipeline) in front of the
scripted fake engine, so what is measured is the gateway's own work. One key sends four
900 KB prompts at a time, over and over; meanwhile another key asks another domain
ordinary questions. Those must keep answering (at least 90% succeed, at most 2x their
latency without the flood), and the gateway's memory must stay bounded.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import psutil
import pytest

from lorastack.models import ModelStore
from lorastack.processes import ChildProcess
from tests.fake_upstream import FakeUpstream
from tests.fakes import write_adapter, write_base_checkpoint
from tests.registries import home_registry
from tests.servers import free_port

pytestmark = pytest.mark.integration

FLOODER = "sk-flooder-0123456789abcdef"
NEIGHBOUR = "sk-neighbour-0123456789abcd"
QUESTION = (
    "Hello, my name is Jane Porter and I ordered a grinder last week to 1428 Elm Street. "
    "It has not arrived yet; could you check order 55123 and mail me at jane@example.com?"
)
HUGE = "please read all of this " * 37_500  # 900 KB
FLOOD_STREAMS = 4
FLOOD_WARMUP_S = 3.0  # the flooding processes start, then flood
FLOOD_S = 15.0
ASKS = 20
REFUSALS_PER_S = 10  # the gateway's default


@dataclass
class Gateway:
    url: str
    fake: FakeUpstream
    process: ChildProcess


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """`lorastack serve` as its own process, in front of the fake engine."""
    home = tmp_path_factory.mktemp("fairness-home")
    sources = tmp_path_factory.mktemp("sources")
    store = ModelStore(home / "models")
    store.add(write_base_checkpoint(sources / "tiny"), "tiny")
    registry = home_registry(home, store=store)
    for seed, domain in enumerate(("coffee-shop", "ledger-desk"), start=1):
        registry.publish(write_adapter(sources / domain, "tiny", seed=seed), domain, promote="prod")
    port = free_port()
    with FakeUpstream(base_model="tiny") as fake:
        env = {
            "LORASTACK_HOME": str(home),
            "LORASTACK_BASE_MODEL": "tiny",
            "LORASTACK_GATEWAY__API_KEYS": json.dumps([FLOODER, NEIGHBOUR]),
            "LORASTACK_GATEWAY__MAX_BODY_BYTES": "2000000",
        }
        argv = [sys.executable, "-m", "lorastack.cli", "serve", "--upstream", fake.url]
        argv += ["--port", str(port)]
        with ChildProcess("gateway", argv, home / "gateway.log", env) as process:
            url = f"http://127.0.0.1:{port}"
            process.wait_ready(f"{url}/ready", timeout_s=300)
            yield Gateway(url, fake, process)


def _ask(client: httpx.Client, url: str, key: str, model: str, text: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    headers = {"authorization": f"Bearer {key}"}
    return client.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=60)


def _neighbour(gateway: Gateway, asks: int) -> tuple[list[float], int]:
    """Latencies of the answered questions, and how many failed."""
    latencies: list[float] = []
    failed = 0
    with httpx.Client() as client:
        for _ in range(asks):
            started = time.perf_counter()
            response = _ask(client, gateway.url, NEIGHBOUR, "ledger-desk", QUESTION)
            if response.status_code == 200:
                latencies.append(time.perf_counter() - started)
            else:
                failed += 1
    return latencies, failed


def _flood(url: str, seconds: float) -> int:
    """Send huge prompts as fast as the gateway answers, for `seconds`; how many were 400."""
    # A flooder stands in for another machine: its own work (writing 900 KB bodies, four
    # processes of it) must not take this machine's cores from the gateway it floods.
    os.nice(19)
    body = json.dumps(
        {"model": "coffee-shop", "messages": [{"role": "user", "content": HUGE}]}
    ).encode()
    headers = {"authorization": f"Bearer {FLOODER}", "content-type": "application/json"}
    refused = 0
    deadline = time.monotonic() + seconds
    with httpx.Client() as client:
        while time.monotonic() < deadline:
            response = client.post(f"{url}/v1/chat/completions", content=body, headers=headers)
            refused += response.status_code == 400
    return refused


def test_a_flood_of_huge_prompts_from_one_key_starves_no_other(gateway: Gateway) -> None:
    _neighbour(gateway, 3)  # warm: models loaded, adapters in the engine
    quiet, quiet_failed = _neighbour(gateway, ASKS)
    assert quiet_failed == 0
    gateway_process = psutil.Process(gateway.process.pid)
    memory_before = gateway_process.memory_info().rss

    # The flood comes from other processes, as it would from other machines: in this one
    # it would compete with the neighbour's client (and the fake engine) for its interpreter.
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(FLOOD_STREAMS, mp_context=spawn) as pool:
        floods = [pool.submit(_flood, gateway.url, FLOOD_S) for _ in range(FLOOD_STREAMS)]
        time.sleep(FLOOD_WARMUP_S)  # the flood is on
        loud, loud_failed = _neighbour(gateway, ASKS)
        flood_statuses = [future.result() for future in floods]
    memory_growth = gateway_process.memory_info().rss - memory_before

    summary: dict[str, Any] = {
        "quiet_p50_s": round(statistics.median(quiet), 3),
        "flooded_p50_s": round(statistics.median(loud), 3) if loud else None,
        "flooded_failed": loud_failed,
        "flood_refused": sum(flood_statuses),
        "memory_growth_mb": round(memory_growth / 2**20),
    }
    print(summary)  # the numbers, for the log
    assert all(refused > 0 for refused in flood_statuses), summary
    # 10 refusals a second get through, not one per stream each time a place frees (the
    # window is open 1 s at each end; each stream's last request may end past its time).
    assert sum(flood_statuses) <= REFUSALS_PER_S * (FLOOD_S + 2) + FLOOD_STREAMS, summary
    assert loud_failed <= ASKS // 10, summary
    assert statistics.median(loud) <= 2 * statistics.median(quiet), summary
    assert memory_growth < 500 * 2**20, summary
