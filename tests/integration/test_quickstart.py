"""`lorastack quickstart` end to end in its reduced mode, in the order a new user meets it:
the base model answers first; demo domains (a brand, then the ticket router) train on the
repository's demo data one after another while the demo serves, each answering once
published; Ctrl-C stops everything, training included, leaving nothing half-published; the
next run serves what was published at once and trains the rest; a run with nothing new
trains nothing."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
from openai import OpenAI

from lorastack.cli.quickstart import DEMO_DIR, READY_LINE, STATE_NAME, find_domains
from lorastack.fsutil import STAGING_PREFIX
from lorastack.models import ModelRecord
from lorastack.registry import AdapterRegistry
from tests.registries import home_registry
from tests.servers import free_port

# Two starts of the engine and two domains trained while it serves: 7 to 20 minutes on 2
# cores, by how busy the machine is.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

MAX_STEPS = 6
QUESTION = "Hello! What can you help me with today?"
# The demo's first brand and its ticket router, as the demo ships them: a brand first, then
# another mode, cover every step of the story; each further brand only adds minutes of
# training (unit tests check that quickstart finds every demo domain).
BRAND, ROUTER = "bean-there", "ticket-router"
DOMAINS = [BRAND, ROUTER]


@dataclass
class Demo:
    home: Path
    env: dict[str, str]
    engine_port: int
    examples: Path

    def command(self, *args: str) -> list[str]:
        base = [sys.executable, "-m", "lorastack.cli", "quickstart", "--examples"]
        return [*base, str(self.examples), "--max-steps", str(MAX_STEPS), *args]

    def registry(self) -> AdapterRegistry:
        return home_registry(self.home)

    def published(self) -> set[str]:
        return {s.index.domain for s in self.registry().list() if s.versions}


@pytest.fixture(scope="module")
def demo(bundled_model: ModelRecord, tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """A fresh LORASTACK_HOME whose model store already holds the converted bundled model."""
    home = tmp_path_factory.mktemp("quickstart-home")
    (home / "models").symlink_to(bundled_model.path.parent, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORASTACK_")}
    engine_port = free_port()
    env |= {"LORASTACK_HOME": str(home), "LORASTACK_ENGINE__PORT": str(engine_port)}
    examples = tmp_path_factory.mktemp("demo")
    for name in DOMAINS:
        (examples / name).symlink_to(DEMO_DIR / name, target_is_directory=True)
    return Demo(home, env, engine_port, examples)


@dataclass
class Running:
    """A serving `lorastack quickstart`: its stdout lines as they come, its stderr in a file."""

    process: subprocess.Popen[str]
    ports: dict[str, int]
    stderr: Path
    lines: list[str] = field(default_factory=list)

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, what: str, ready: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            assert self.process.poll() is None, f"quickstart exited before {what}:\n{self.log()}"
            assert time.monotonic() < deadline, f"no {what} within {timeout_s:.0f} s:\n{self.log()}"
            time.sleep(1.0)

    def log(self) -> str:
        return "\n".join(self.lines) + "\n--- stderr ---\n" + self.stderr.read_text()[-4000:]

    def client(self) -> OpenAI:
        key = next(ln.split()[-1] for ln in self.lines if ln.strip().startswith("API key:"))
        return OpenAI(base_url=f"{self.gateway}/v1", api_key=key, max_retries=0, timeout=180)


def _start(demo: Demo, name: str) -> Running:
    ports = {"gateway": free_port(), "ui": free_port()}
    stderr = demo.home / f"{name}.stderr.log"
    argv = demo.command("--gateway-port", str(ports["gateway"]), "--ui-port", str(ports["ui"]))
    with stderr.open("w") as errors:
        process = subprocess.Popen(
            argv, env=demo.env, stdout=subprocess.PIPE, stderr=errors, text=True
        )
    running = Running(process, ports, stderr)
    threading.Thread(target=running.read, daemon=True).start()
    running.wait_for("ready line", lambda: READY_LINE in running.lines, 900)
    return running


@pytest.fixture
def started(demo: Demo) -> Iterator[Callable[[str], Running]]:
    runs: list[Running] = []

    def start(name: str) -> Running:
        runs.append(_start(demo, name))
        return runs[-1]

    yield start
    # A run still going (its test failed): it, and the gateway, engine and UI it started,
    # which would otherwise go on serving and computing beside the tests that follow.
    for run in runs:
        if run.process.poll() is None:
            tree = [psutil.Process(run.process.pid)]
            tree += tree[0].children(recursive=True)
            for process in tree:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
            psutil.wait_procs(tree, timeout=30)


def _listed(client: OpenAI) -> set[str]:
    return {model.id for model in client.models.list().data}


def _ask(client: OpenAI, model: str) -> str:
    answer = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=32,
        temperature=0,
    )
    return answer.choices[0].message.content or ""


def _port_open(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2, trust_env=False)
    except httpx.TransportError:
        return False
    return True


def _ctrl_c(demo: Demo, run: Running) -> None:
    """Ctrl-C: the command ends cleanly, and every process it started (the vLLM engine and
    its workers included: they run in sessions of their own, but stay descendants) with it."""
    started = list(psutil.Process(run.process.pid).children(recursive=True))
    # vLLM renames its processes (VLLM::APIServer, VLLM::EngineCore).
    assert any("vllm" in " ".join(child.cmdline()).lower() for child in started)
    run.process.send_signal(signal.SIGINT)
    assert run.process.wait(timeout=90) == 0, run.log()
    _, alive = psutil.wait_procs(started, timeout=10)
    assert alive == []
    for port in (run.ports["gateway"], run.ports["ui"], demo.engine_port):
        assert not _port_open(port)


def test_the_demo_answers_at_once_and_serves_each_domain_once_published(
    demo: Demo, started: Callable[[str], Running]
) -> None:
    modes = {domain.name: domain.config.mode for domain in find_domains(demo.examples)}
    assert modes == {BRAND: "instruct", ROUTER: "sft"}  # trained in this order
    first_brand, second = DOMAINS

    # A fresh home: the base model answers before anything is trained.
    first = started("first")
    client = first.client()
    (base_model,) = _listed(client)
    base = _ask(client, base_model)
    assert base.strip()
    assert demo.published() == set()
    config = httpx.get(f"http://127.0.0.1:{first.ports['ui']}/config", timeout=30).text
    assert "on their way" in config  # the UI says more are coming

    # The first domain is served once published, while the demo keeps running.
    first.wait_for(f"{first_brand} listed", lambda: first_brand in _listed(client), 1200)
    answer = _ask(client, first_brand)
    assert answer.strip() and answer != base
    assert any(line.startswith(f"{first_brand} is ready") for line in first.lines)

    # Ctrl-C while the second domain trains: nothing of it is published.
    runs = demo.home / "runs"
    first.wait_for(f"{second} training", lambda: any(runs.glob(f"{second}-*")), 300)
    _ctrl_c(demo, first)
    assert demo.published() == {first_brand}
    assert not list((demo.home / "cache" / "adapters").glob(f"*/{STAGING_PREFIX}*"))
    assert not (demo.home / "adapters").exists()  # the registry is in the database

    # The log was a file: progress came as plain lines, with the step, the loss, the time left.
    progress = first.stderr.read_text()
    assert f"training {first_brand} (instruct): " in progress
    assert "loss" in progress and " left" in progress and f"/{MAX_STEPS} (" in progress

    # The next run serves the published domain at once and trains the others meanwhile.
    again = started("again")
    client = again.client()
    assert first_brand in _listed(client)
    again.wait_for("every domain listed", lambda: set(DOMAINS) <= _listed(client), 1800)
    answer = _ask(client, BRAND)
    assert answer.strip() and answer != base
    registry = demo.registry()
    for name in DOMAINS:
        manifest = registry.resolve(name)  # the `prod` alias
        assert manifest.metrics["better_than_base"] is True
        assert manifest.metrics["adapter"]["loss"] < manifest.metrics["base"]["loss"]
        assert manifest.training["training"]["max_steps"] == MAX_STEPS
    _ctrl_c(demo, again)

    # Nothing changed: a run that only trains reuses every domain.
    runs_before = sorted(runs.iterdir())
    reused = subprocess.run(
        demo.command("--no-serve"),
        env=demo.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert reused.returncode == 0, reused.stderr[-3000:]
    refs = dict(line.split(": ", 1) for line in reused.stdout.splitlines())
    assert refs == {name: registry.resolve(name).ref for name in DOMAINS}
    assert sorted(runs.iterdir()) == runs_before
    assert "reusing" in reused.stderr
    assert (demo.home / "quickstart" / STATE_NAME).is_file()
