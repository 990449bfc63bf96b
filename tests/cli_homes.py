"""A lorastack home for `lorastack` commands run as child processes in the tests."""

from __future__ import annotations

from pathlib import Path

from lorastack.models import ModelRecord


def cli_home(home: Path, model: ModelRecord) -> dict[str, str]:
    """Make `home`'s model store hold `model` (linked, not copied) and return the
    environment a `lorastack` child runs with there: offline, nothing else on PATH."""
    models = home / "models"
    models.mkdir(parents=True, exist_ok=True)
    link = models / model.name
    if not link.exists():
        link.symlink_to(model.path)
    return {"LORASTACK_HOME": str(home), "PATH": "", "HF_HUB_OFFLINE": "1"}
