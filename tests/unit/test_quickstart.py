"""`lorastack quickstart`'s pieces with fakes: finding the demo domains, reusing unchanged
adapters, the demo keys, the reduced training budget and stopping the services."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from lorastack.cli import context, quickstart
from lorastack.cli.quickstart import demo_keys, start_service
from lorastack.models import ModelRecord, ModelStore
from lorastack.progress import NullProgress
from lorastack.registry import AdapterRegistry
from lorastack.serve.errors import Unauthorized
from lorastack.serve.keys import KeyStore
from lorastack.settings import PublishSettings, get_settings
from lorastack.train import quickstart as demo
from lorastack.train import trainer
from lorastack.train.quality import DEFAULT_EXAMPLES
from lorastack.train.quickstart import (
    DEMO_DIR,
    QUICK_QUALITY_EXAMPLES,
    DemoAdapters,
    DemoState,
    QuickstartError,
    find_domains,
    fingerprint,
    shortened,
)
from lorastack.train.run import METRICS_FILE, RunPaths
from tests.fakes import write_adapter
from tests.servers import free_port


def _demo(folder: Path, base: str = "tiny", **extra: Any) -> Path:
    """A demo folder with one domain, `coffee`, whose data is a chat file."""
    domain = folder / "coffee"
    domain.mkdir(parents=True)
    chat = {
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey!"}]
    }
    (domain / "chat.jsonl").write_text(json.dumps(chat) + "\n")
    config = {"domain": "coffee", "data": str(domain / "chat.jsonl"), "base_model": base, **extra}
    (domain / "train.yaml").write_text(yaml.safe_dump(config))
    return folder


class FakeTraining:
    """Stands in for train, eval and publish: publishes a real adapter into the registry."""

    def __init__(self, registry: AdapterRegistry, base: ModelRecord, tmp_path: Path) -> None:
        self.registry, self.base, self.tmp_path = registry, base, tmp_path
        self.trained: list[dict[str, Any]] = []
        self.evaluate_options: dict[str, Any] = {}
        self.publish_options: dict[str, Any] = {}
        self.scrubs: list[Any] = []

    def run_training(self, config: Any, paths: RunPaths, *args: Any, **kwargs: Any) -> Any:
        self.trained.append(config.training_fields())
        self.scrubs.append(kwargs.get("scrub"))
        paths.root.mkdir(parents=True)
        return SimpleNamespace(paths=paths)

    def evaluate_run(self, paths: RunPaths, *args: Any, **options: Any) -> None:
        self.evaluate_options = options
        (paths.root / METRICS_FILE).write_text("{}")

    def publish_run(self, paths: RunPaths, registry: Any, promote: bool, **options: Any) -> Any:
        assert promote
        self.publish_options = options
        source = write_adapter(self.tmp_path / f"adapter-{len(self.trained)}", self.base.name)
        return self.registry.publish(source, "coffee", promote="prod")


@pytest.fixture
def fake_training(
    monkeypatch: pytest.MonkeyPatch,
    registry: AdapterRegistry,
    fake_base: ModelRecord,
    tmp_path: Path,
    fake_pii_detector: None,
) -> FakeTraining:
    fake = FakeTraining(registry, fake_base, tmp_path)
    # train_new_run (train/trainer.py) calls this module-level name when it trains.
    monkeypatch.setattr(trainer, "run_training", fake.run_training)
    monkeypatch.setattr(demo, "evaluate_run", fake.evaluate_run)
    monkeypatch.setattr(demo, "publish_run", fake.publish_run)
    return fake


def _ensure(
    folder: Path, retrain: bool = False, max_steps: int | None = None, scrub: Any = None
) -> tuple[str, bool]:
    config = get_settings()
    state = DemoState.load(config.home / "quickstart" / "state.json")
    (domain,) = find_domains(folder)
    adapters = DemoAdapters(state, config, context.model_store(), context.registry(), max_steps)
    return adapters.ensure(domain, scrub, retrain=retrain, progress=NullProgress())


def test_an_unchanged_domain_is_reused_and_a_changed_one_retrained(
    fake_training: FakeTraining, tmp_path: Path
) -> None:
    folder = _demo(tmp_path / "demo")
    assert _ensure(folder) == ("coffee@v1", False)
    assert fake_training.evaluate_options["examples"] == DEFAULT_EXAMPLES
    assert fake_training.publish_options["tolerances"] == PublishSettings()
    assert fake_training.publish_options["capture"] is True  # the demo's answers are captured
    assert _ensure(folder) == ("coffee@v1", True)
    assert len(fake_training.trained) == 1

    data = folder / "coffee" / "chat.jsonl"
    data.write_text(data.read_text() + data.read_text().replace("Hey!", "Hello!"))
    assert _ensure(folder) == ("coffee@v2", False)
    assert _ensure(folder, retrain=True) == ("coffee@v3", False)
    assert _ensure(folder, max_steps=4) == ("coffee@v4", False)
    assert fake_training.trained[-1]["max_steps"] == 4
    # A capped demo measures quality on fewer questions: a fraction of the evaluation time.
    assert fake_training.evaluate_options["examples"] == QUICK_QUALITY_EXAMPLES
    assert _ensure(folder, max_steps=4) == ("coffee@v4", True)


def test_the_callers_guard_scrubs_the_data_of_a_domain_it_trains(
    fake_training: FakeTraining, tmp_path: Path
) -> None:
    folder = _demo(tmp_path / "demo")
    guard = object()  # built by the caller (the CLI); the library never makes one
    _ensure(folder, scrub=guard)
    _ensure(folder, scrub=guard)  # reused: nothing to scrub
    assert fake_training.scrubs == [guard]


def test_a_removed_version_is_trained_again(
    fake_training: FakeTraining, registry: AdapterRegistry, tmp_path: Path
) -> None:
    folder = _demo(tmp_path / "demo")
    _ensure(folder)
    _ensure(folder, retrain=True)  # prod moves to v2, so v1 can be removed
    registry.remove("coffee", 1)
    state = get_settings().home / "quickstart" / "state.json"
    entries = json.loads(state.read_text())
    entries["coffee"]["ref"] = "coffee@v1"
    state.write_text(json.dumps(entries))
    assert _ensure(folder) == ("coffee@v3", False)


def test_fingerprint_follows_config_data_base_and_budget(
    fake_base: ModelRecord, tmp_path: Path
) -> None:
    (domain,) = find_domains(_demo(tmp_path / "demo"))
    first = fingerprint(domain, fake_base, None)
    assert fingerprint(domain, fake_base, None) == first
    assert fingerprint(domain, fake_base, 5) != first
    other_base = fake_base.model_copy(update={"checkpoint_sha256": "0" * 64})
    assert fingerprint(domain, other_base, None) != first
    domain.config_path.write_text(domain.config_path.read_text() + "description: new\n")
    assert fingerprint(domain, fake_base, None) != first


@pytest.mark.parametrize(("max_steps", "every"), [(1, 1), (4, 2), (6, 3), (100, 10), (30, 10)])
def test_a_shortened_run_still_validates_and_checkpoints(max_steps: int, every: int) -> None:
    fields = shortened({"eval_steps": 10, "save_steps": 10, "learning_rate": 1e-3}, max_steps)
    assert fields == {
        "eval_steps": every,
        "save_steps": every,
        "learning_rate": 1e-3,
        "max_steps": max_steps,
    }


def test_find_domains_explains_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(QuickstartError, match="no demo folder"):
        find_domains(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(QuickstartError, match=r"no \*/train\.yaml"):
        find_domains(tmp_path / "empty")
    folder = _demo(tmp_path / "demo")
    (folder / "coffee" / "chat.jsonl").unlink()
    with pytest.raises(QuickstartError, match="does not exist"):
        find_domains(folder)


def test_the_shipped_demo_has_two_brands_and_a_labelled_domain() -> None:
    domains = find_domains(DEMO_DIR)
    modes = sorted(domain.config.mode for domain in domains)
    assert modes.count("instruct") >= 2
    assert "sft" in modes
    assert all(domain.config.data.is_file() for domain in domains)


def test_demo_keys_are_made_once_kept_private_and_accepted(tmp_path: Path) -> None:
    keys = demo_keys(tmp_path / "qs")
    assert demo_keys(tmp_path / "qs") == keys
    for path in (keys.keys_file, tmp_path / "qs" / quickstart.ADMIN_KEY_NAME):
        assert path.stat().st_mode & 0o777 == 0o600
    store = KeyStore.from_settings([], keys.keys_file, keys.admin_key)
    assert store.client(f"Bearer {keys.client_key}") is not None
    store.check_admin(f"Bearer {keys.admin_key}")
    with pytest.raises(Unauthorized):
        store.check_admin(f"Bearer {keys.client_key}")


def test_stopping_a_service_ends_its_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time, pathlib;"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        f"pathlib.Path({str(pid_file)!r}).write_text(str(child.pid));"
        "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    )
    service = start_service("stubborn", [sys.executable, "-c", script], tmp_path / "log", {})
    process = service.process
    assert process is not None
    deadline = time.monotonic() + 20
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    service.stop(grace_s=0.5)  # ignores SIGTERM: killed after the grace
    assert process.poll() is not None
    deadline = time.monotonic() + 10
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split()[2] != "Z"


def test_a_dead_service_is_reported_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    log.write_text("starting\nerror: port in use\n")
    service = start_service("gateway", [sys.executable, "-c", "raise SystemExit(3)"], log, {})
    assert service.process is not None
    service.process.wait()
    with pytest.raises(QuickstartError, match=r"exited with code 3(.|\n)*port in use"):
        service.check_alive()


def test_no_serve_prints_each_domain_and_its_version(
    cli: Any, fake_training: FakeTraining, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ModelStore, "pull_bundled", lambda self, progress: (None, False))
    folder = _demo(tmp_path / "demo")
    result = cli("quickstart", "--examples", str(folder), "--no-serve")
    assert result.code == 0, result.err
    assert result.out.strip() == "coffee: coffee@v1"
    again = cli("quickstart", "--examples", str(folder), "--no-serve")
    assert "reusing coffee@v1" in again.err
    # A demo domain published before capture existed is captured once reused...
    registry = fake_training.registry
    capture = registry.index("coffee").capture
    assert capture is not None and capture.enabled
    # ...but an operator's choice since stays.
    registry.set_capture("coffee", False)
    cli("quickstart", "--examples", str(folder), "--no-serve")
    capture = registry.index("coffee").capture
    assert capture is not None and not capture.enabled


class FakeService:
    """A started service that stays up; it records what happens to it."""

    def __init__(self, name: str, argv: list[str], events: list[str]) -> None:
        self.name, self.argv, self.events = name, argv, events
        events.append(f"start {name}")

    def check_alive(self) -> None:
        pass

    def stop(self, grace_s: float) -> None:
        self.events.append(f"stop {self.name}")


def test_the_demo_serves_first_then_trains_and_announces_each_domain(
    cli: Any, fake_training: FakeTraining, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    started: list[FakeService] = []

    def start(name: str, argv: list[str], log_path: Path, env: dict[str, str]) -> FakeService:
        started.append(FakeService(name, argv, events))
        return started[-1]

    def train(config: Any, paths: RunPaths, *args: Any, **kwargs: Any) -> Any:
        events.append("train")
        return FakeTraining.run_training(fake_training, config, paths, *args, **kwargs)

    def stop_waiting(seconds: float) -> None:
        raise KeyboardInterrupt  # the user presses Ctrl-C once everything is served

    monkeypatch.setattr(ModelStore, "pull_bundled", lambda self, progress: (None, False))
    monkeypatch.setattr(quickstart, "start_service", start)
    monkeypatch.setattr(quickstart, "wait_http", lambda *args: events.append("ready"))
    monkeypatch.setattr(trainer, "run_training", train)
    monkeypatch.setattr(quickstart.time, "sleep", stop_waiting)
    folder = _demo(tmp_path / "demo")
    ports = ("--gateway-port", str(free_port()), "--ui-port", str(free_port()))

    result = cli("quickstart", "--examples", str(folder), *ports)
    assert result.code == 0, result.err
    assert events == [
        "start gateway",
        "ready",
        "start UI",
        "ready",
        "train",
        "stop UI",
        "stop gateway",
    ]
    assert started[1].argv[-2:] == ["--expect", "coffee"]  # the UI knows it is coming
    lines = result.out.splitlines()
    assert "  training:  coffee, one after another; each is served once published" in lines
    assert lines.index(quickstart.READY_LINE) < lines.index(
        'coffee is ready (coffee@v1): pick it in the UI, or model="coffee"'
    )
    assert "stopped" in result.err

    # Again: served at once, nothing to train, nothing expected.
    events.clear()
    started.clear()
    again = cli("quickstart", "--examples", str(folder), *ports)
    assert again.code == 0, again.err
    assert "train" not in events
    assert "--expect" not in started[1].argv
    assert "domains: coffee (coffee@v1)" in again.out


def test_a_service_that_dies_while_the_demo_trains_stops_it(tmp_path: Path) -> None:
    script = "import time; time.sleep(0.5); raise SystemExit(3)"
    service = start_service("gateway", [sys.executable, "-c", script], tmp_path / "log", {})
    # SIGINT delivered and raising KeyboardInterrupt, as in the `quickstart` command: a test
    # worker may have been left another handler, or the signal blocked, by what ran before.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        with pytest.raises(KeyboardInterrupt), quickstart.ServiceWatch([service], 0.05) as watch:
            time.sleep(30)  # stands in for training
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, previous)
    assert watch.failure is not None
    assert "exited with code 3" in str(watch.failure)


class _Finalized:
    def __del__(self) -> None:
        # What the handler does when Ctrl-C lands while a finalizer runs: Python prints the
        # KeyboardInterrupt raised here and goes on (the training kept going, once, in CI).
        quickstart._raise_interrupt(signal.SIGINT, None)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ctrl_c_lost_in_a_finalizer_stops_the_training_at_its_next_progress() -> None:
    progress = quickstart.InterruptibleProgress(NullProgress())
    progress.step("training coffee", total=6)  # no interrupt yet: it goes on
    try:
        _Finalized()  # collected at once; its KeyboardInterrupt is lost
        with pytest.raises(KeyboardInterrupt):
            progress.advance(1)
        with pytest.raises(KeyboardInterrupt):  # and at every later one
            progress.detail("loss 1.2")
    finally:
        quickstart._interrupted.clear()
    progress.advance(1)
