"""What every command builds from the settings: the stores and the consoles."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

from lorastack.models import ModelStore
from lorastack.registry import AdapterRegistry
from lorastack.settings import Settings, get_settings

# Results go to stdout (one value per line where scripts read it); progress to stderr.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


def settings() -> Settings:
    return get_settings()


def model_store() -> ModelStore:
    return ModelStore(settings().models_dir)


def registry() -> AdapterRegistry:
    config = settings()
    return AdapterRegistry(config.adapters_dir, model_store(), config.max_lora_rank)


def print_json(data: Any) -> None:
    out.out(json.dumps(data, indent=2, default=str), highlight=False)
