"""The demo's adapters: find the demo domains, then train, evaluate and publish each one.

`lorastack quickstart` (`make demo`) asks `DemoAdapters` for every domain folder
of the demo (a `train.yaml` beside its data). A domain is trained in a
new run folder, evaluated against its base model and published as its `prod`
version, unless the adapter that the same config, data, base model and
training budget produced is still in the registry: then that one is reused.

The demo ships inside this package (`DEMO_DIR`, package data), so an installed
lorastack, such as the Docker images, has it as well as a checkout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from lorastack import fsutil
from lorastack.errors import AdapterNotFound, LorastackError
from lorastack.guardrails import Guard
from lorastack.manifest import AdapterManifest
from lorastack.models import ModelRecord, ModelStore
from lorastack.progress import NullProgress, Progress
from lorastack.registry import AdapterRegistry
from lorastack.settings import Settings
from lorastack.train.config import TrainConfig, load_config
from lorastack.train.evaluate import evaluate_run, publish_run
from lorastack.train.quality import DEFAULT_EXAMPLES
from lorastack.train.trainer import train_new_run

DEMO_DIR = Path(__file__).resolve().parent / "demo"
# Where the demo's relative data paths (`train/demo/...`) start: the repository in a
# checkout, the installed `lorastack` package folder otherwise (which holds `train/`).
DEMO_ROOT = DEMO_DIR.parents[1]
CONFIG_NAME = "train.yaml"
SAMPLES = 2  # side-by-side answers in each run's report
QUICK_QUALITY_EXAMPLES = 4
"""Test questions whose answers measure rules and facts when training is capped (a
quick demo): enough to see the numbers, a fraction of the full evaluation's time."""


class QuickstartError(LorastackError):
    """The demo could not be set up or one of its services failed."""


@dataclass(frozen=True)
class DemoDomain:
    """One domain of the demo: its training config, and the file it was read from."""

    config_path: Path
    config: TrainConfig

    @property
    def name(self) -> str:
        return self.config.domain


def find_domains(folder: Path) -> list[DemoDomain]:
    """Each `*/train.yaml` under `folder`.

    A relative data path is taken from the current directory, as `lorastack train` does,
    or else from where the demo ships (`DEMO_ROOT`), so `make demo` works from anywhere.
    """
    if not folder.is_dir():
        raise QuickstartError(f"no demo folder at {folder}; pass --examples")
    domains = []
    for config_path in sorted(folder.glob(f"*/{CONFIG_NAME}")):
        config = load_config(config_path)
        if not config.data.is_absolute() and not config.data.exists():
            config.data = DEMO_ROOT / config.data
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
    """Which published version each demo domain's fingerprint produced (a JSON file)."""

    path: Path
    entries: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> DemoState:
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            entries = {}
        return cls(path, entries if isinstance(entries, dict) else {})

    def reusable(self, domain: str, digest: str, registry: AdapterRegistry) -> str | None:
        """The version published for this fingerprint, if the registry still has it."""
        entry = self.entries.get(domain) or {}
        if entry.get("fingerprint") != digest:
            return None
        try:
            return registry.resolve(entry["ref"]).ref
        except (AdapterNotFound, KeyError):
            return None

    def record(self, domain: str, digest: str, ref: str) -> None:
        self.entries[domain] = {"fingerprint": digest, "ref": ref}
        fsutil.write_json_atomic(self.path, self.entries)


def shortened(training: dict[str, Any], max_steps: int) -> dict[str, Any]:
    """Training fields for at most `max_steps`, still validated (and checkpointed) twice."""
    every = max(1, min(int(training.get("eval_steps") or max_steps), max_steps // 2))
    return {**training, "max_steps": max_steps, "eval_steps": every, "save_steps": every}


class Published(NamedTuple):
    """The domain's published reference (`NAME@vN`), and whether it was reused."""

    ref: str
    reused: bool


def train_and_publish(
    config: TrainConfig,
    settings: Settings,
    store: ModelStore,
    registry: AdapterRegistry,
    scrub: Guard | None,
    progress: Progress,
    quality_examples: int = DEFAULT_EXAMPLES,
) -> AdapterManifest:
    """Train `config` in a new run, evaluate it against its base model and prod, publish it
    as prod.

    `scrub` masks personal data in raw training data with its input policy;
    `quality_examples` test questions measure its rules and fact recall.
    """
    paths = train_new_run(
        config, settings.runs_dir, store, settings, scrub=scrub, progress=progress
    ).paths
    evaluate_run(paths, store, registry, SAMPLES, progress, examples=quality_examples)
    # The demo's answers are captured, so that its chat's thumbs have something to rate.
    return publish_run(paths, registry, promote=True, tolerances=settings.publish, capture=True)


@dataclass
class DemoAdapters:
    """The demo domains' adapters in one registry: reused while unchanged, else trained.

    `max_steps` caps training (a quicker demo) and is part of what "unchanged" means.
    """

    state: DemoState
    settings: Settings
    store: ModelStore
    registry: AdapterRegistry
    max_steps: int | None = None

    def _fingerprint(self, domain: DemoDomain) -> str:
        base = self.store.get(domain.config.base_model or self.settings.base_model)
        return fingerprint(domain, base, self.max_steps)

    def reusable(self, domain: DemoDomain) -> str | None:
        """The version published for the domain as it is now (config, data, base, budget),
        if the registry still has it: a quick check, nothing is trained."""
        return self.state.reusable(domain.name, self._fingerprint(domain), self.registry)

    def train(
        self, domain: DemoDomain, scrub: Guard | None, progress: Progress | None = None
    ) -> str:
        """Train, evaluate and publish the domain as its `prod` version; its reference.

        `scrub` masks personal data in the raw training data. Nothing is published unless
        the run ends and its evaluation passes: an interrupted run leaves its run folder.
        """
        digest = self._fingerprint(domain)
        config = dataclasses.replace(domain.config)
        if self.max_steps is not None:
            config.training = shortened(config.training_fields(), self.max_steps)
        manifest = train_and_publish(
            config,
            self.settings,
            self.store,
            self.registry,
            scrub,
            progress or NullProgress(),
            DEFAULT_EXAMPLES if self.max_steps is None else QUICK_QUALITY_EXAMPLES,
        )
        self.state.record(domain.name, digest, manifest.ref)
        return manifest.ref

    def ensure(
        self,
        domain: DemoDomain,
        scrub: Guard | None,
        retrain: bool = False,
        progress: Progress | None = None,
    ) -> Published:
        """The domain's published reference, trained now unless an unchanged one exists
        (or `retrain`). The guard `scrub` is used only when the domain is trained."""
        reused = None if retrain else self.reusable(domain)
        if reused is not None:
            return Published(reused, True)
        return Published(self.train(domain, scrub, progress), False)
