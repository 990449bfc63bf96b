"""Run an ASGI app on a real loopback port in a background thread, for tests; the real stack."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import uvicorn
import yaml

if TYPE_CHECKING:
    from lorastack.models import ModelRecord
    from lorastack.serve.supervisor import EngineSupervisor


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def send_raw(url: str, data: bytes, wait_s: float = 5.0) -> bytes:
    """Send raw bytes to the gateway; what it answers before closing (or `wait_s`)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port)) as conn:
        conn.settimeout(wait_s)
        conn.sendall(data)
        received = b""
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except TimeoutError:
            received += b"<still open>"
        except ConnectionResetError:
            received += b"<reset>"
    return received


@contextmanager
def serve_in_thread(app: Any, timeout_s: float = 15.0, http: Any = "auto") -> Iterator[str]:
    """Yield the base URL of `app` served by uvicorn; stop it (lifespan included) on exit.

    `http`: uvicorn's connection protocol (the gateway's: `serve.app.http_protocol`).
    """
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", http=http
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)


@dataclass
class RealStack:
    """The gateway in front of real vLLM on the CPU (see `real_stack`)."""

    url: str
    supervisor: EngineSupervisor | None
    """None in front of an engine the gateway did not start."""


def _patient_default_policy(home: Path) -> Path:
    """The shipped default policy with a 30 s screening deadline instead of 5 s.

    The deadline is there for a hung detector. On a 2-core test machine vLLM, the gateway
    and the test's own client threads share the cores (and the clients the gateway's
    GIL), and a screening that takes 50 ms alone has once been seen to pass 5 s.
    """
    from lorastack.guardrails import default_policy

    policy = default_policy().model_copy(update={"timeout_s": 30.0})
    home.mkdir(parents=True, exist_ok=True)
    path = home / "default-policy.yaml"
    path.write_text(yaml.safe_dump(policy.model_dump(mode="json")))
    return path


@contextmanager
def real_stack(
    model: ModelRecord,
    home: Path,
    admin_key: str,
    *,
    feedback: bool = False,
    engine_url: str | None = None,
) -> Iterator[RealStack]:
    """The gateway for the registry under `home`, in front of vLLM serving `model`, ready.

    vLLM starts on the CPU (about 35 s); it stops with the gateway's lifespan on exit.
    `engine_url`: a running engine serving `model` instead (`lorastack serve --upstream`):
    the gateway neither starts nor stops it.
    `feedback`: the gateway opens its feedback store, as `lorastack serve` does (SQLite
    under `home`), so that domains whose capture is on keep answers to rate.
    """
    from lorastack.guardrails import PresidioDetector
    from lorastack.serve.app import (
        build_gateway,
        create_app,
        engine_client,
        http_protocol,
        open_feedback_store,
    )
    from lorastack.serve.engine import EngineProcess, build_launch
    from lorastack.serve.supervisor import EngineSupervisor
    from lorastack.settings import load_settings

    settings = load_settings(
        home=home,
        base_model=model.name,
        guard_policy=_patient_default_policy(home),
        engine={"port": free_port(), "startup_timeout_s": 600},
        gateway={"admin_key": admin_key},
    )
    launch = build_launch(settings.engine, model, settings.max_lora_rank)
    client = engine_client(120.0)
    with ExitStack() as stack:
        # Closed after the server: its lifespan writes what capture still holds first.
        store = stack.enter_context(open_feedback_store(settings)) if feedback else None
        gateway = build_gateway(
            settings,
            [engine_url or launch.url],
            client,
            detector=PresidioDetector(),
            feedback_store=store,
        )
        supervisor = None
        if engine_url is None:
            process = EngineProcess(launch, home / "runs" / "engine.log", 600)
            supervisor = EngineSupervisor(process, gateway.pool.endpoints[0])
        app = create_app(gateway, settings.gateway.max_body_bytes, client, supervisor)
        with serve_in_thread(app, http=http_protocol(settings.gateway)) as url:
            wait_ready(url, 600)
            yield RealStack(url, supervisor)


def wait_ready(url: str, timeout_s: float) -> None:
    """Wait until the gateway at `url` answers `/ready` with 200."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise AssertionError("the stack did not become ready")
