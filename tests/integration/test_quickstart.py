"""`lorastack quickstart` end to end in its reduced mode: the demo domains are trained on the
repository's demo data, published, reused on a second run, served through the real gateway
and vLLM, and every process stops on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from openai import OpenAI

from lorastack.cli.quickstart import DEMO_DIR, STATE_NAME, find_domains
from lorastack.models import ModelRecord, ModelStore
from lorastack.registry import AdapterRegistry
from tests.servers import free_port

# Training three demo domains (twice over) takes 8 to 20 minutes on 2 cores, by how busy
# the machine is: each test's limit covers the module's shared set-up.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

MAX_STEPS = 6
QUESTION = "Hello! What can you help me with today?"
READY_LINE = "Ctrl-C stops everything."


@dataclass
class Demo:
    home: Path
    env: dict[str, str]
    engine_port: int


def _quickstart(
    demo: Demo, *args: str, timeout_s: float = 1500
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lorastack.cli", "quickstart", "--max-steps", str(MAX_STEPS), *args],
        env=demo.env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@pytest.fixture(scope="module")
def demo(bundled_model: ModelRecord, tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """A fresh LORASTACK_HOME whose model store already holds the converted bundled model."""
    home = tmp_path_factory.mktemp("quickstart-home")
    (home / "models").symlink_to(bundled_model.path.parent, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORASTACK_")}
    engine_port = free_port()
    env |= {"LORASTACK_HOME": str(home), "LORASTACK_ENGINE__PORT": str(engine_port)}
    return Demo(home, env, engine_port)


@pytest.fixture(scope="module")
def trained(demo: Demo) -> dict[str, str]:
    first = _quickstart(demo, "--no-serve")
    assert first.returncode == 0, first.stderr[-3000:]
    refs = dict(line.split(": ", 1) for line in first.stdout.splitlines() if ": " in line)
    return refs


def test_every_demo_domain_is_trained_evaluated_and_promoted(
    demo: Demo, trained: dict[str, str]
) -> None:
    names = {domain.name for domain in find_domains(DEMO_DIR)}
    assert set(trained) == names
    assert len(names) >= 3  # two brands and the ticket router
    registry = AdapterRegistry(demo.home / "adapters", ModelStore(demo.home / "models"), 16)
    for name, ref in trained.items():
        manifest = registry.resolve(name)  # the `prod` alias
        assert manifest.ref == ref
        assert manifest.metrics["better_than_base"] is True
        assert manifest.metrics["adapter"]["loss"] < manifest.metrics["base"]["loss"]
        assert manifest.training["training"]["max_steps"] == MAX_STEPS


def test_a_second_run_reuses_what_is_unchanged(demo: Demo, trained: dict[str, str]) -> None:
    runs_before = sorted((demo.home / "runs").iterdir())
    again = _quickstart(demo, "--no-serve", timeout_s=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert dict(line.split(": ", 1) for line in again.stdout.splitlines()) == trained
    assert sorted((demo.home / "runs").iterdir()) == runs_before
    assert "reusing" in again.stderr
    assert (demo.home / "quickstart" / STATE_NAME).is_file()


@pytest.fixture
def running(demo: Demo, trained: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], dict]]:
    ports = {"gateway": free_port(), "ui": free_port()}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lorastack.cli",
            "quickstart",
            "--max-steps",
            str(MAX_STEPS),
            "--gateway-port",
            str(ports["gateway"]),
            "--ui-port",
            str(ports["ui"]),
        ],
        env=demo.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
            if line.strip() == READY_LINE:
                break
        assert READY_LINE in lines, "\n".join(lines)
        info = {
            "key": next(ln.split()[-1] for ln in lines if ln.startswith("API key:")),
            "ports": ports,
        }
        yield process, info
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _descendants(pid: int) -> list[psutil.Process]:
    """Every process the demo started, the vLLM engine and its workers included (they run
    in sessions of their own, but stay descendants)."""
    return list(psutil.Process(pid).children(recursive=True))


def _port_open(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2, trust_env=False)
    except httpx.TransportError:
        return False
    return True


def test_the_demo_serves_each_domain_and_ctrl_c_stops_everything(
    demo: Demo, trained: dict[str, str], running: tuple[subprocess.Popen[str], dict]
) -> None:
    process, info = running
    gateway = f"http://127.0.0.1:{info['ports']['gateway']}"
    client = OpenAI(base_url=f"{gateway}/v1", api_key=info["key"], max_retries=0, timeout=180)
    listed = {model.id for model in client.models.list().data}
    assert set(trained) <= listed

    def ask(model: str) -> str:
        answer = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": QUESTION}],
            max_tokens=32,
            temperature=0,
        )
        return answer.choices[0].message.content or ""

    base = ask(next(m for m in listed if m not in trained))
    brands = [domain.name for domain in find_domains(DEMO_DIR) if domain.config.mode == "instruct"]
    assert len(brands) >= 2
    answers = {name: ask(name) for name in brands}
    for name, answer in answers.items():
        assert answer.strip(), name
        assert answer != base, name
    assert httpx.get(f"http://127.0.0.1:{info['ports']['ui']}/", timeout=10).status_code == 200
    assert httpx.get(f"http://127.0.0.1:{demo.engine_port}/health", timeout=10).status_code == 200
    started = _descendants(process.pid)
    # vLLM renames its processes (VLLM::APIServer, VLLM::EngineCore).
    assert any("vllm" in " ".join(child.cmdline()).lower() for child in started)

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=90) == 0
    _, alive = psutil.wait_procs(started, timeout=10)
    assert alive == []
    for port in (info["ports"]["gateway"], info["ports"]["ui"], demo.engine_port):
        assert not _port_open(port)
