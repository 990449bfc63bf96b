"""`lorastack quickstart` (`make demo`): demo brand assistants trained, published and served.

Every domain folder under the demo directory (a `train.yaml` beside its data) is trained,
evaluated against the base model and published as its domain's `prod` version. A second
run reuses each adapter whose config, data and base model are unchanged (the library's
`lorastack.train.quickstart` does both; this command only calls it). Then the gateway
(with its vLLM engine) and the UI start as child processes; Ctrl-C stops all of them.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
import yaml

from lorastack.cli.context import err, guard_for, model_store, out, registry, settings
from lorastack.processes import ChildProcess
from lorastack.progress import Progress, RichProgress
from lorastack.train.quickstart import (
    DEMO_DIR,
    DemoState,
    QuickstartError,
    ensure_adapter,
    find_domains,
)

STATE_NAME = "state.json"
KEYS_NAME = "keys.yaml"
ADMIN_KEY_NAME = "admin.key"
DEMO_KEY_NAME = "demo"
STOP_GRACE_S = 40.0  # the gateway stops its engine within this


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
    service.wait_ready(url, timeout_s)


def _check_port_free(host: str, port: int, what: str) -> None:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            raise QuickstartError(
                f"port {port} on {host} is in use; pick another with --{what}-port"
            ) from None


# -- the command --------------------------------------------------------------------


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


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
        bool, typer.Option("--serve/--no-serve", help="Start the gateway (and engine).")
    ] = True,
    ui: Annotated[bool, typer.Option("--ui/--no-ui", help="Start the chat UI.")] = True,
    gateway_port: Annotated[int | None, typer.Option(help="Gateway port.")] = None,
    ui_port: Annotated[int | None, typer.Option(help="UI port.")] = None,
) -> None:
    """Train, publish and serve the demo brand assistants; Ctrl-C stops everything."""
    config = settings()
    home = config.home / "quickstart"
    domains = find_domains(examples.resolve())
    state = DemoState.load(home / STATE_NAME)
    refs: dict[str, str] = {}
    with RichProgress(err) as progress:
        model_store().pull_bundled(progress)
        for domain in domains:
            scrub = guard_for(domain.name)
            ref, reused = ensure_adapter(
                domain,
                state,
                settings=config,
                store=model_store(),
                registry=registry(),
                scrub=scrub,
                max_steps=max_steps,
                retrain=retrain,
                progress=progress,
            )
            refs[domain.name] = ref
            progress.step(f"{domain.name}: {'reusing' if reused else 'published'} {ref}")
    if not serve:
        for name, ref in refs.items():
            out.print(f"{name}: {ref}")
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
    previous = {
        sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        with services() as running:
            with RichProgress(err) as progress:
                gateway = start_service("gateway", cli_argv("serve"), home / "gateway.log", env)
                running.append(gateway)
                wait_http(gateway, f"{api}/ready", config.engine.startup_timeout_s + 60, progress)
                ui_url = None
                if ui:
                    ui_args = ["ui", "--api", api, "--api-key", keys.client_key]
                    ui_args += ["--admin-key", keys.admin_key, "--port", str(ui_port)]
                    ui_service = start_service("UI", cli_argv(*ui_args), home / "ui.log", env)
                    running.append(ui_service)
                    ui_url = f"http://{host}:{ui_port}/"
                    wait_http(ui_service, ui_url, 120, progress)
            _print_summary(api, ui_url, keys, refs)
            while True:
                for service in running:
                    service.check_alive()
                time.sleep(1.0)
    except KeyboardInterrupt:
        err.print("stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_summary(api: str, ui_url: str | None, keys: DemoKeys, refs: dict[str, str]) -> None:
    domain = next(iter(refs))
    body = {"model": domain, "messages": [{"role": "user", "content": "Hi! What do you offer?"}]}
    lines: list[Any] = [
        "",
        "[bold]lorastack is running[/bold]",
        f"  UI:        {ui_url}" if ui_url else "  UI:        (not started)",
        f"  API:       {api}/v1",
        f"  API key:   {keys.client_key}",
        f"  admin key: {keys.admin_key}  (the UI's Adapters tab, the /admin API)",
        f"  domains:   {', '.join(f'{name} ({ref})' for name, ref in refs.items())}",
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
        "Ctrl-C stops everything.",
    ]
    for line in lines:
        out.print(line, markup=line.startswith("[bold]"))
