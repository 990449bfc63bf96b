"""`lorastack quickstart` (`make demo`): demo brand assistants trained, published and served.

Every domain folder under the demo directory (a `train.yaml` beside its data) is trained,
evaluated against the base model and published as its domain's `prod` version. A second
run reuses each adapter whose config, data and base model are unchanged. Then the gateway
(with its vLLM engine) and the UI start as child processes; Ctrl-C stops all of them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import httpx
import typer
import yaml

from lorastack import fsutil
from lorastack.cli.context import err, model_store, out, registry, settings
from lorastack.cli.guard import resolve_policy
from lorastack.errors import AdapterNotFound, LorastackError
from lorastack.guardrails import Guard
from lorastack.models import ModelRecord
from lorastack.processes import log_tail, stop_group
from lorastack.progress import Progress, RichProgress
from lorastack.settings import Settings
from lorastack.train.config import TrainConfig, load_config
from lorastack.train.evaluate import evaluate_run, publish_run
from lorastack.train.trainer import new_run_dir, run_training

DEMO_DIR = Path(__file__).resolve().parents[2] / "examples" / "demo"
CONFIG_NAME = "train.yaml"
STATE_NAME = "state.json"
KEYS_NAME = "keys.yaml"
ADMIN_KEY_NAME = "admin.key"
DEMO_KEY_NAME = "demo"
SAMPLES = 2  # side-by-side answers in each run's report
STOP_GRACE_S = 40.0  # the gateway stops its engine within this


class QuickstartError(LorastackError):
    """The demo could not be set up or one of its services failed."""


# -- the demo domains ----------------------------------------------------------


@dataclass(frozen=True)
class DemoDomain:
    config_path: Path
    config: TrainConfig

    @property
    def name(self) -> str:
        return self.config.domain


def find_domains(folder: Path) -> list[DemoDomain]:
    """Each `*/train.yaml` under `folder`.

    A relative data path is taken from the current directory, as `lorastack train` does,
    or else from the repository the demo ships in, so `make demo` works from anywhere.
    """
    if not folder.is_dir():
        raise QuickstartError(f"no demo folder at {folder}; pass --examples")
    domains = []
    for config_path in sorted(folder.glob(f"*/{CONFIG_NAME}")):
        config = load_config(config_path)
        if not config.data.is_absolute() and not config.data.exists():
            config.data = DEMO_DIR.parents[1] / config.data
        config.data = config.data.resolve()
        if not config.data.exists():
            raise QuickstartError(f"{config_path}: data {config.data} does not exist")
        domains.append(DemoDomain(config_path, config))
    if not domains:
        raise QuickstartError(f"no */{CONFIG_NAME} under {folder}")
    return domains


def fingerprint(domain: DemoDomain, base: ModelRecord, max_steps: int | None) -> str:
    """What a trained adapter depends on: its config, its data, the base model, the budget."""
    digest = hashlib.sha256()
    digest.update(domain.config_path.read_bytes())
    data = domain.config.data
    digest.update(
        (fsutil.sha256_tree(data) if data.is_dir() else fsutil.sha256_file(data)).encode()
    )
    digest.update(base.checkpoint_sha256.encode())
    digest.update(str(max_steps).encode())
    return digest.hexdigest()


@dataclass
class DemoState:
    """Which published version each demo domain's fingerprint produced."""

    path: Path
    entries: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> DemoState:
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            entries = {}
        return cls(path, entries if isinstance(entries, dict) else {})

    def reusable(self, domain: str, digest: str) -> str | None:
        entry = self.entries.get(domain) or {}
        if entry.get("fingerprint") != digest:
            return None
        try:
            return registry().resolve(entry["ref"]).ref
        except (AdapterNotFound, KeyError):
            return None

    def record(self, domain: str, digest: str, ref: str) -> None:
        self.entries[domain] = {"fingerprint": digest, "ref": ref}
        fsutil.write_json_atomic(self.path, self.entries)


def ensure_adapter(
    domain: DemoDomain,
    config: Settings,
    state: DemoState,
    max_steps: int | None,
    retrain: bool,
    progress: Progress,
) -> tuple[str, bool]:
    """The domain's published reference, trained now unless an unchanged one exists."""
    base = model_store().get(domain.config.base_model or config.base_model)
    digest = fingerprint(domain, base, max_steps)
    reused = None if retrain else state.reusable(domain.name, digest)
    if reused is not None:
        return reused, True
    train_config = dataclasses.replace(domain.config)
    if max_steps is not None:
        train_config.training = shortened(train_config.training_fields(), max_steps)
    paths = new_run_dir(config.runs_dir, domain.name)
    scrub = Guard(resolve_policy(domain.name, None), domain=domain.name)
    run_training(
        train_config,
        paths,
        model_store(),
        config.base_model,
        config.max_lora_rank,
        scrub=scrub,
        progress=progress,
    )
    evaluate_run(paths, model_store(), SAMPLES, progress)
    manifest = publish_run(paths, registry(), promote=True)
    state.record(domain.name, digest, manifest.ref)
    return manifest.ref, False


def shortened(training: dict[str, Any], max_steps: int) -> dict[str, Any]:
    """Training fields for at most `max_steps`, still validated (and checkpointed) twice."""
    every = max(1, min(int(training.get("eval_steps") or max_steps), max_steps // 2))
    return {**training, "max_steps": max_steps, "eval_steps": every, "save_steps": every}


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


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def check_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            raise QuickstartError(
                f"the {self.name} exited with code {code}; last lines of {self.log_path}:\n"
                f"{log_tail(self.log_path, 15)}"
            )

    def stop(self, grace_s: float) -> None:
        stop_group(self.process, grace_s, self.name)


@contextmanager
def services() -> Iterator[list[Service]]:
    """Children started inside stop when it exits, last started first."""
    started: list[Service] = []
    try:
        yield started
    finally:
        for service in reversed(started):
            err.print(f"stopping the {service.name} ...")
            service.stop(STOP_GRACE_S)


def start_service(name: str, args: list[str], log_path: Path, env: dict[str, str]) -> Service:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "lorastack.cli", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
            # Its own session: Ctrl-C reaches this process, which stops the children in order.
            start_new_session=True,
        )
    return Service(name, process, log_path)


def wait_http(service: Service, url: str, timeout_s: float, progress: Progress) -> None:
    progress.step(f"waiting for the {service.name} at {url}")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        service.check_alive()
        try:
            if httpx.get(url, timeout=2.0, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise QuickstartError(f"the {service.name} was not ready after {timeout_s:.0f} s ({url})")


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
            ref, reused = ensure_adapter(domain, config, state, max_steps, retrain, progress)
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
                gateway = start_service("gateway", ["serve"], home / "gateway.log", env)
                running.append(gateway)
                wait_http(gateway, f"{api}/ready", config.engine.startup_timeout_s + 60, progress)
                ui_url = None
                if ui:
                    ui_args = ["ui", "--api", api, "--api-key", keys.client_key]
                    ui_args += ["--admin-key", keys.admin_key, "--port", str(ui_port)]
                    ui_service = start_service("UI", ui_args, home / "ui.log", env)
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
