"""A training run's folder, and the prepared dataset inside it.

Every run lives in one folder under the settings' `runs_dir`, named after its
domain and start time (`coffee-20261127-120000`): its resolved `config.yaml`,
its own copy of the data (`data/`: the three split files and the data report),
checkpoints, a JSONL log, the best adapter and the evaluation's reports.
`RunPaths` names each of them; the functions here find runs, read the splits
and hash them, so that training, evaluation, publishing and the demo agree.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lorastack.fsutil import sha256_file
from lorastack.train.config import ConfigError, TrainConfig, build_config
from lorastack.train.distributed import agreed

SPLITS = ("train", "validation", "test")
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
DATA_REPORTS = (REPORT_JSON, REPORT_MD)
"""The data report `lorastack data prepare` writes beside the splits."""
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
EVAL_REPORT_FILE = "report.md"
CURVES_FILE = "curves.png"


def split_file(split: str) -> str:
    """The file name of one split of a prepared dataset (`train.jsonl`)."""
    return f"{split}.jsonl"


@dataclass(frozen=True)
class RunPaths:
    """The files and folders of one training run."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def adapter(self) -> Path:
        return self.root / "adapter"

    @property
    def log(self) -> Path:
        return self.root / "log.jsonl"

    @property
    def result(self) -> Path:
        return self.root / "train_result.json"

    @property
    def metrics(self) -> Path:
        return self.root / METRICS_FILE

    @property
    def report(self) -> Path:
        return self.root / EVAL_REPORT_FILE

    @property
    def curves(self) -> Path:
        return self.root / CURVES_FILE


# -- runs ----------------------------------------------------------------------------


def new_run_dir(runs_dir: Path, domain: str) -> RunPaths:
    """A fresh run folder for `domain` (not created yet), named after the time.

    Under a launcher, the main process names it and the others take its name.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = runs_dir / f"{domain}-{stamp}"
    suffix = 1
    while root.exists():
        suffix += 1
        root = runs_dir / f"{domain}-{stamp}-{suffix}"
    return RunPaths(agreed(root))


def latest_run(runs_dir: Path, domain: str) -> RunPaths:
    """The domain's most recent run (by modification time)."""
    # `coffee-20261127-120000` is coffee's; `coffee-shop-20261127-120000` is not.
    own = re.compile(rf"{re.escape(domain)}-\d{{8}}-\d{{6}}(-\d+)?")
    runs = sorted(
        (
            p
            for p in runs_dir.glob(f"{domain}-*")
            if own.fullmatch(p.name) and (p / CONFIG_FILE).is_file()
        ),
        key=lambda p: p.stat().st_mtime,
    )
    if not runs:
        raise ConfigError(f"no earlier run of {domain} to resume under {runs_dir}")
    return RunPaths(runs[-1])


def run_from(folder: Path) -> RunPaths:
    """An existing run folder (one with its config), as given on the command line."""
    paths = RunPaths(folder)
    if not paths.config.is_file():
        raise ConfigError(f"{folder} is not a training run (no {CONFIG_FILE})")
    return paths


def load_run_config(paths: RunPaths) -> TrainConfig:
    raw = yaml.safe_load(paths.config.read_text(encoding="utf-8"))
    return build_config(raw, source=str(paths.config))


# -- the prepared dataset ------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL file (a split, or a run's log)."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def check_prepared(folder: Path) -> None:
    missing = [split_file(s) for s in SPLITS if not (folder / split_file(s)).is_file()]
    if missing:
        raise ConfigError(
            f"{folder} is not a prepared dataset (missing {', '.join(missing)}); "
            "run `lorastack data prepare` first"
        )


def load_splits(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """The records of each split of a prepared dataset folder."""
    check_prepared(folder)
    return {split: read_jsonl(folder / split_file(split)) for split in SPLITS}


def copy_dataset(source: Path, target: Path) -> None:
    """Copy a prepared dataset's splits and data report (nothing else) into `target`.

    A run keeps its own copy, so that its dataset hash stays true whatever
    happens to the folder it was prepared in.
    """
    target.mkdir()
    for name in [*map(split_file, SPLITS), *DATA_REPORTS]:
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)


def dataset_sha256(folder: Path) -> str:
    """Hex sha256 over the three split files of a prepared dataset.

    The same value as `lorastack.fsutil.sha256_tree(folder, exclude=...)` over
    a folder holding only the split files, so a manifest can recompute it.
    """
    digest = hashlib.sha256()
    for name in sorted(split_file(split) for split in SPLITS):
        digest.update(f"{name}\0{sha256_file(folder / name)}\n".encode())
    return digest.hexdigest()


def dataset_vocabulary(folder: Path) -> list[str]:
    """The business's own names its scrubbing left unmasked (`report.json`'s
    `pii.vocabulary`); none for a dataset prepared without a report or before it."""
    try:
        report = json.loads((folder / REPORT_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    names = (report.get("pii") or {}).get("vocabulary") if isinstance(report, dict) else None
    return [name for name in names if isinstance(name, str)] if isinstance(names, list) else []
