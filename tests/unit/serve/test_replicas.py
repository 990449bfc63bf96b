"""Several engines behind one gateway, and `lorastack serve --upstream`."""

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from lorastack.serve.app import build_gateway, create_app, engine_client
from lorastack.settings import load_settings
from tests.fake_upstream import FakeUpstream
from tests.fakes import RegexDetector
from tests.servers import free_port, serve_in_thread


@pytest.fixture
def second() -> Iterator[FakeUpstream]:
    with FakeUpstream(base_model="tiny") as upstream:
        yield upstream


def test_a_domain_goes_to_the_replica_that_holds_its_adapter(
    fake: FakeUpstream,
    second: FakeUpstream,
    publish: Callable[..., Any],
) -> None:
    publish("coffee-shop", 1)
    settings = load_settings(base_model="tiny")
    client = engine_client(30.0)
    gateway = build_gateway(settings, [fake.url, second.url], client, detector=RegexDetector())
    body = {"model": "coffee-shop", "messages": [{"role": "user", "content": "hi"}]}
    with serve_in_thread(create_app(gateway, 1 << 20, client)) as url:
        for _ in range(4):
            assert httpx.post(f"{url}/v1/chat/completions", json=body).status_code == 200
        loaded_on = [u for u in (fake, second) if u.loaded]
        assert len(loaded_on) == 1  # one replica loaded it and got every request after
        assert len(loaded_on[0].completion_requests) == 4
        # A replica that goes down is skipped; the other one loads the adapter.
        loaded_on[0].kill()
        statuses = [
            httpx.post(f"{url}/v1/chat/completions", json=body).status_code for _ in range(2)
        ]
        assert statuses[-1] == 200


def test_serve_command_fronts_an_upstream(
    fake: FakeUpstream, publish: Callable[..., Any], home: Any
) -> None:
    publish("coffee-shop", 1, display_name="Bean There")
    port = free_port()
    env = {"LORASTACK_HOME": str(home), "LORASTACK_BASE_MODEL": "tiny", "PATH": ""}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lorastack.cli",
            "serve",
            "--upstream",
            fake.url,
            "--port",
            str(port),
            "--no-guardrails",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert [m["id"] for m in models.json()["data"]] == ["tiny", "coffee-shop"]
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"model": "coffee-shop", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert answer.json()["choices"][0]["message"]["content"].startswith("echo from coffee")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_serve_refuses_a_public_bind_without_keys(home: Any) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lorastack.cli",
            "serve",
            "--upstream",
            "http://127.0.0.1:9",
            "--host",
            "0.0.0.0",
        ],
        env={"LORASTACK_HOME": str(home), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "without api_keys" in result.stderr
    assert "Traceback" not in result.stderr
