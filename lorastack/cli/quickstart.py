"""`lorastack quickstart` (`make demo`): the base model served at once, the demo's brand
assistants trained, published and served while you chat.

The gateway (with its vLLM engine) and the UI start first as child processes, on the
base model and on every demo domain whose adapter is published already (unchanged
config, data and base model). Then each other domain folder of the demo (a
`train.yaml` beside its data) is trained here, evaluated against the base model and
published as its domain's `prod` version, one after another: the gateway serves it
from then on, and the UI adds it to its picker. The library's
`lorastack.train.quickstart` does the training; this command orders the work and
stops every child on Ctrl-C (training included; nothing half-published is left).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
import yaml

from lorastack.cli.context import err, guard_for, model_store, out, registry, settings
from lorastack.errors import LorastackError
from lorastack.processes import ChildProcess
from lorastack.progress import Progress, progress_display
from lorastack.train.quickstart import (
    DEMO_DIR,
    DemoAdapters,
    DemoDomain,
    DemoState,
    QuickstartError,
    find_domains,
)

STATE_NAME = "state.json"
KEYS_NAME = "keys.yaml"
ADMIN_KEY_NAME = "admin.key"
DEMO_KEY_NAME = "demo"
STOP_GRACE_S = 40.0  # the gateway stops its engine within this
READY_LINE = "Ctrl-C stops everything."


# -- keys ------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoKeys:
    keys_file: Path
    client_key: str
    admin_key: str


def demo_keys(folder: Path) -> DemoKeys:
    """A client key for every domain and an admin key, made once and kept (mode 0600)."""
    folder.mkdir(parents=True, exist_ok=True)
    keys_file, admin_file = folder / KEYS_NAME, folder / ADMIN_KEY_NAME
    if not keys_file.is_file() or not admin_file.is_file():
        client_key = f"sk-demo-{secrets.token_urlsafe(18)}"
        document = {"keys": [{"name": DEMO_KEY_NAME, "key": client_key, "domains": ["*"]}]}
        _write_private(keys_file, yaml.safe_dump(document, sort_keys=False))
        _write_private(admin_file, secrets.token_urlsafe(24) + "\n")
    document = yaml.safe_load(keys_file.read_text(encoding="utf-8"))
    client_key = next(k["key"] for k in document["keys"] if k["name"] == DEMO_KEY_NAME)
    return DemoKeys(keys_file, client_key, admin_file.read_text(encoding="utf-8").strip())


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)


# -- services ----------------------------------------------------------------------


@contextmanager
def services() -> Iterator[list[ChildProcess]]:
    """Children started inside stop when it exits, last started first."""
    started: list[ChildProcess] = []
    try:
        yield started
    finally:
        for service in reversed(started):
            err.print(f"stopping the {service.name} ...")
            service.stop(STOP_GRACE_S)


def cli_argv(*args: str) -> list[str]:
    """The command line of `lorastack ARGS` in this interpreter."""
    return [sys.executable, "-m", "lorastack.cli", *args]


def start_service(name: str, argv: list[str], log_path: Path, env: dict[str, str]) -> ChildProcess:
    """Start one of the demo's children; its failures are `QuickstartError`s."""
    service = ChildProcess(name, argv, log_path, env, QuickstartError)
    service.start()
    return service


def wait_http(service: ChildProcess, url: str, timeout_s: float, progress: Progress) -> None:
    progress.step(f"waiting for the {service.name} at {url}")
    service.wait_ready(url, timeout_s, on_poll=lambda: progress.advance(0))


def _check_port_free(host: str, port: int, what: str) -> None:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            raise QuickstartError(
                f"port {port} on {host} is in use; pick another with --{what}-port"
            ) from None


# -- watching the services while the demo trains ---------------------------------------


class ServiceWatch:
    """Checks the services every second from a thread while the main thread trains.

    A service that dies interrupts the main thread (as Ctrl-C would), and `failure`
    says which one and why.
    """

    def __init__(self, services: list[ChildProcess], interval_s: float = 1.0) -> None:
        self.services = services
        self.failure: QuickstartError | None = None
        self._interval_s = interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="service-watch", daemon=True)

    def __enter__(self) -> ServiceWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopped.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stopped.wait(self._interval_s):
            for service in self.services:
                try:
                    service.check_alive()
                except QuickstartError as error:
                    self.failure = error
                    # A real signal to the main thread: it also wakes it from a sleep.
                    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
                    return


# -- the command --------------------------------------------------------------------


_interrupted = threading.Event()
"""Set by Ctrl-C (or SIGTERM), cleared only as the command starts: the KeyboardInterrupt
the handler raises can be lost (Python ignores an exception raised while a finalizer or
weakref callback runs, and the signal may land in one), so the training's progress and the
serving loop raise it again until the command stops."""


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    _interrupted.set()
    raise KeyboardInterrupt


def _stop_if_interrupted() -> None:
    if _interrupted.is_set():
        raise KeyboardInterrupt


class InterruptibleProgress:
    """A progress display that raises an interrupt its signal handler could not deliver."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    def step(self, description: str, total: int | None = None) -> None:
        _stop_if_interrupted()
        self._progress.step(description, total)

    def advance(self, amount: int) -> None:
        _stop_if_interrupted()
        self._progress.advance(amount)

    def detail(self, text: str) -> None:
        _stop_if_interrupted()
        self._progress.detail(text)


@dataclass
class DemoDomains:
    """The demo's domains: those published already, those still to train, and how."""

    domains: list[DemoDomain]
    adapters: DemoAdapters
    ready: dict[str, str] = field(default_factory=dict)

    @property
    def pending(self) -> list[DemoDomain]:
        return [domain for domain in self.domains if domain.name not in self.ready]

    def find_reusable(self, retrain: bool) -> None:
        """Each domain whose unchanged adapter is published already, unless `retrain`."""
        if retrain:
            return
        registry = self.adapters.registry
        for domain in self.domains:
            ref = self.adapters.reusable(domain)
            if ref is not None:
                self.ready[domain.name] = ref
                err.print(f"{domain.name}: reusing {ref}")
                # Published before capture existed: on, like a new demo domain. A setting
                # made since (an operator's --off) stays.
                if registry.index(domain.name).capture is None:
                    registry.set_capture(domain.name, enabled=True)

    def train(self, domain: DemoDomain) -> str:
        """Train, evaluate and publish one domain, with its progress on stderr."""
        with progress_display(err) as progress:
            ref = self.adapters.train(
                domain, guard_for(domain.name), InterruptibleProgress(progress)
            )
        self.ready[domain.name] = ref
        return ref


def quickstart(
    examples: Annotated[
        Path, typer.Option(help="Demo folder: one sub-folder with a train.yaml per domain.")
    ] = DEMO_DIR,
    max_steps: Annotated[
        int | None, typer.Option(min=1, help="Train each domain for at most N steps (quicker).")
    ] = None,
    retrain: Annotated[
        bool, typer.Option("--retrain", help="Train again even if nothing changed.")
    ] = False,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve/--no-serve",
            help="Start the gateway (and engine) and the UI first, and train while they "
            "run; --no-serve only trains.",
        ),
    ] = True,
    ui: Annotated[bool, typer.Option("--ui/--no-ui", help="Start the chat UI.")] = True,
    gateway_port: Annotated[int | None, typer.Option(help="Gateway port.")] = None,
    ui_port: Annotated[int | None, typer.Option(help="UI port.")] = None,
) -> None:
    """Serve the base model at once, then train, publish and serve the demo brand
    assistants one after another; Ctrl-C stops everything."""
    config = settings()
    home = config.home / "quickstart"
    state = DemoState.load(home / STATE_NAME)
    adapters = DemoAdapters(state, config, model_store(), registry(), max_steps)
    demo = DemoDomains(find_domains(examples.resolve()), adapters)
    with progress_display(err) as progress:
        model_store().pull_bundled(progress)
    demo.find_reusable(retrain)
    if not serve:
        for domain in demo.pending:
            err.print(f"{domain.name}: published {demo.train(domain)}")
        for domain in demo.domains:
            out.print(f"{domain.name}: {demo.ready[domain.name]}")
        return
    gateway_port = gateway_port or config.gateway.port
    ui_port = ui_port or config.ui.port
    host = "127.0.0.1"
    _check_port_free(host, gateway_port, "gateway")
    if ui:
        _check_port_free(host, ui_port, "ui")
    keys = demo_keys(home)
    api = f"http://{host}:{gateway_port}"
    env = {
        "LORASTACK_GATEWAY__HOST": host,
        "LORASTACK_GATEWAY__PORT": str(gateway_port),
        "LORASTACK_GATEWAY__KEYS_FILE": str(keys.keys_file),
        "LORASTACK_GATEWAY__ADMIN_KEY": keys.admin_key,
    }
    # Explicit handlers: a shell starting this in the background may have ignored SIGINT.
    _interrupted.clear()
    previous = {
        sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    watch: ServiceWatch | None = None
    try:
        with services() as running:
            with progress_display(err) as progress:
                gateway = start_service("gateway", cli_argv("serve"), home / "gateway.log", env)
                running.append(gateway)
                wait_http(gateway, f"{api}/ready", config.engine.startup_timeout_s + 60, progress)
                ui_url = None
                if ui:
                    ui_args = ["ui", "--api", api, "--api-key", keys.client_key]
                    ui_args += ["--admin-key", keys.admin_key, "--port", str(ui_port)]
                    for domain in demo.pending:
                        ui_args += ["--expect", domain.name]
                    ui_service = start_service("UI", cli_argv(*ui_args), home / "ui.log", env)
                    running.append(ui_service)
                    ui_url = f"http://{host}:{ui_port}/"
                    wait_http(ui_service, ui_url, 120, progress)
            _print_summary(api, ui_url, keys, demo, config.base_model)
            with ServiceWatch(running) as watch:
                _train_while_serving(demo)
                while True:
                    _stop_if_interrupted()
                    time.sleep(1.0)
    except KeyboardInterrupt:
        if watch is not None and watch.failure is not None:
            raise watch.failure from None
        err.print("stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _train_while_serving(demo: DemoDomains) -> None:
    """Each pending domain in turn; a domain that fails is reported and the rest go on."""
    pending = demo.pending
    for index, domain in enumerate(pending, 1):
        err.print(f"training {domain.name} ({index} of {len(pending)}) while the demo serves")
        try:
            ref = demo.train(domain)
        except LorastackError as error:
            err.print(f"[red]{domain.name} was not published:[/red] {error}")
            continue
        out.print(f'{domain.name} is ready ({ref}): pick it in the UI, or model="{domain.name}"')
    if pending:
        out.print("every demo domain is served; Ctrl-C stops everything.")


def _print_summary(
    api: str, ui_url: str | None, keys: DemoKeys, demo: DemoDomains, base_model: str
) -> None:
    domain = next(iter(demo.ready), base_model)
    body = {"model": domain, "messages": [{"role": "user", "content": "Hi! What do you offer?"}]}
    ready = ", ".join(f"{name} ({ref})" for name, ref in demo.ready.items()) or "none yet"
    lines: list[Any] = [
        "",
        "[bold]lorastack is running[/bold]",
        f"  UI:        {ui_url}" if ui_url else "  UI:        (not started)",
        f"  API:       {api}/v1",
        f"  API key:   {keys.client_key}",
        f"  admin key: {keys.admin_key}  (the UI's Adapters tab, the /admin API)",
        f"  models:    {base_model} (the base model), domains: {ready}",
    ]
    if demo.pending:
        names = ", ".join(domain.name for domain in demo.pending)
        lines.append(f"  training:  {names}, one after another; each is served once published")
    lines += [
        "",
        "curl:",
        f"  curl -s {api}/v1/chat/completions -H 'Authorization: Bearer {keys.client_key}' "
        f"-H 'Content-Type: application/json' -d '{json.dumps(body)}'",
        "",
        "python (pip install openai):",
        "  from openai import OpenAI",
        f'  client = OpenAI(base_url="{api}/v1", api_key="{keys.client_key}")',
        f'  answer = client.chat.completions.create(model="{domain}", '
        'messages=[{"role": "user", "content": "Hi! What do you offer?"}])',
        "  print(answer.choices[0].message.content)",
        "",
        READY_LINE,
    ]
    for line in lines:
        out.print(line, markup=line.startswith("[bold]"))
