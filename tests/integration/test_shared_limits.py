"""Keys and limits shared by gateways: two `lorastack serve` processes on one real
PostgreSQL database enforce one key's limits together, and the official client retries
a refusal after its Retry-After.

The engine is the scripted fake (tests/fake_upstream.py): what is under test is the
gateways and the database they share, not vLLM.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from lorastack.db import make_engine
from lorastack.db.key_store import SqlKeyStore
from lorastack.keys import KeyLimits
from lorastack.models import ModelRecord, ModelStore
from tests.fake_upstream import FakeUpstream
from tests.fakes import write_adapter
from tests.registries import database_registry
from tests.servers import free_port

pytestmark = pytest.mark.integration

CHAT = {"model": "coffee-shop", "messages": [{"role": "user", "content": "one flat white"}]}


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(base_model="tiny") as fake:
        yield fake


@pytest.fixture
def start_gateway(
    upstream: FakeUpstream,
    store: ModelStore,
    fake_base: ModelRecord,
    home: Path,
    tmp_path: Path,
    postgres_url: str,
) -> Iterator[Callable[..., str]]:
    # The gateways' registry: the database index, on their PostgreSQL.
    with database_registry(store, database_url=postgres_url) as registry:
        registry.publish(write_adapter(tmp_path / "coffee", "tiny"), "coffee-shop")
    processes: list[subprocess.Popen[str]] = []

    def start(**env: str) -> str:
        port = free_port()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lorastack.cli",
                "serve",
                "--upstream",
                upstream.url,
                "--port",
                str(port),
                "--no-guardrails",
            ],
            env={
                "LORASTACK_HOME": str(home),
                "LORASTACK_BASE_MODEL": "tiny",
                "LORASTACK_DATABASE_URL": postgres_url,
                "PATH": "",
                "LORASTACK_GATEWAY__KEYS_REFRESH_S": "0.5",
                **env,
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                httpx.get(f"{url}/health", timeout=2)
                return url
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "the gateway did not start"
                time.sleep(0.2)

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=30)


def _chat(url: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    )


@pytest.mark.parametrize("counters", ["database", "redis"])
def test_two_gateways_on_one_database_enforce_one_key_together(
    start_gateway: Callable[..., str],
    postgres_url: str,
    counters: str,
    request: pytest.FixtureRequest,
) -> None:
    """The key lives in PostgreSQL; its counters there too, or in a real Redis."""
    storage = request.getfixturevalue("redis_url") if counters == "redis" else "database"
    engine = make_engine(postgres_url)
    keys = SqlKeyStore(engine)
    _, secret = keys.create("team-a", limits=KeyLimits(rpm=4))
    env = {"LORASTACK_GATEWAY__LIMITS_STORAGE": storage}
    gateways = [start_gateway(**env), start_gateway(**env)]
    statuses = [_chat(gateways[i % 2], secret).status_code for i in range(6)]
    # Four requests a minute between both gateways, not four each.
    assert statuses == [200, 200, 200, 200, 429, 429]
    refused = _chat(gateways[0], secret)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    # A key made while both run works on both within the refresh time; revoked, on neither.
    _, other = keys.create("team-b")
    time.sleep(1.2)  # more than keys_refresh_s
    assert [_chat(url, other).status_code for url in gateways] == [200, 200]
    keys.revoke("team-b")
    time.sleep(1.2)  # more than keys_refresh_s
    assert [_chat(url, other).status_code for url in gateways] == [401, 401]
    assert keys.get("team-a").last_used_at is not None
    engine.dispose()


def test_the_official_client_waits_out_a_refusal_and_gets_its_answer(
    start_gateway: Callable[..., str], upstream: FakeUpstream, postgres_url: str
) -> None:
    engine = make_engine(postgres_url)
    _, secret = SqlKeyStore(engine).create("team-a")
    engine.dispose()
    url = start_gateway(LORASTACK_GATEWAY__DOMAIN_CONCURRENCY='{"coffee-shop": 1}')
    # A slow answer holds the domain's only place for about a second.
    upstream.enqueue([f"word{i} " for i in range(6)], delay_s=0.2)
    slow = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import httpx, json, sys; "
            f"httpx.post('{url}/v1/chat/completions', json={{**json.loads(sys.argv[1]), "
            f"'stream': True}}, headers={{'authorization': 'Bearer {secret}'}}, timeout=30)",
            __import__("json").dumps(CHAT),
        ]
    )
    assert upstream.wait_for(lambda: upstream.active_streams == 1, timeout_s=30)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=3)
    answer = client.chat.completions.with_raw_response.create(**CHAT)
    slow.wait(timeout=30)
    assert answer.http_response.status_code == 200
    assert answer.retries_taken >= 1
