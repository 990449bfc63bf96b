"""The engine supervisor with a stand-in engine process that can be killed."""

import asyncio
import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from lorastack.manifest import AdapterManifest
from lorastack.registry import AdapterRegistry
from lorastack.serve.adapters import AdapterManager, SlotState
from lorastack.serve.engine import EngineLaunch, EngineProcess
from lorastack.serve.metrics import Metrics
from lorastack.serve.pool import Endpoint
from lorastack.serve.supervisor import EngineSupervisor
from lorastack.serve.upstream import Upstream
from tests.servers import free_port

ENGINE = """
import http.server, json, os, sys
class Engine(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        with open(os.environ["LOADS"], "a") as log:
            log.write(body["lora_name"] + "\\n")
        self.send_response(200)
        self.end_headers()
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Engine).serve_forever()
"""


def test_a_dead_engine_is_restarted_and_its_adapters_reloaded(
    tmp_path: Path, publish: Callable[..., AdapterManifest], registry: AdapterRegistry
) -> None:
    manifest = publish("coffee-shop", 1)
    path = registry.version_dir("coffee-shop", 1)
    script = tmp_path / "engine.py"
    script.write_text(textwrap.dedent(ENGINE))
    loads = tmp_path / "loads.txt"
    port = free_port()
    launch = EngineLaunch(
        [sys.executable, str(script), str(port)],
        {"LOADS": str(loads)},
        f"http://127.0.0.1:{port}",
        "tiny",
    )

    async def scenario() -> None:
        async with httpx.AsyncClient() as client:
            upstream = Upstream(launch.url, client)
            endpoint = Endpoint(upstream, AdapterManager(upstream, 4, Metrics()))
            process = EngineProcess(launch, tmp_path / "engine.log", startup_timeout_s=30)
            supervisor = EngineSupervisor(process, endpoint, check_every_s=0.1)
            await supervisor.start()
            try:
                assert endpoint.restarting
                await _until(lambda: not endpoint.restarting)
                await endpoint.adapters.load(manifest, path)
                assert loads.read_text() == "coffee-shop@v1\n"
                pid = process.pid
                assert pid is not None
                os.killpg(pid, signal.SIGKILL)
                await _until(lambda: endpoint.restarting)
                await _until(lambda: not endpoint.restarting)
                await _until(lambda: loads.read_text().count("coffee-shop@v1") == 2)
                # The engine writes the load down before it answers; the slot is ready after.
                ready = SlotState.READY
                await _until(lambda: endpoint.adapters.state_of("coffee-shop@v1") is ready)
                assert supervisor.restarts == 1
                assert process.pid != pid
            finally:
                await supervisor.stop()
            assert not process.alive()

    asyncio.run(scenario())


async def _until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
