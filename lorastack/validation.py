"""Check that an adapter folder is one vLLM can serve on a registered base model.

Everything is read as data (JSON and safetensors headers): an untrusted adapter
is never unpickled and never imported. Each failure is an `AdapterInvalid`
whose message is one line naming the problem.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorastack.errors import AdapterInvalid
from lorastack.fsutil import sha256_file
from lorastack.manifest import AdapterManifest, LoraSpec
from lorastack.models import ModelRecord, ModelStore
from lorastack.tensors import SafetensorsHeaderError, checkpoint_module_names, tensor_shapes

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PICKLE_WEIGHTS = ("adapter_model.bin", "adapter_model.pt", "adapter_model.pth")
# PEFT saves `base_model.model.<module path>.lora_A.weight` (and lora_B, lora_embedding_*).
_ANY_RANK = 1 << 30
_LORA_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?:A|B|embedding_A|embedding_B)")


@dataclass(frozen=True)
class ValidatedAdapter:
    """An adapter folder that passed every check, with what the manifest records of it."""

    path: Path
    base_model: ModelRecord
    lora: LoraSpec


def _load_config(folder: Path) -> dict[str, Any]:
    config_path = folder / ADAPTER_CONFIG
    if not config_path.is_file():
        raise AdapterInvalid(f"{ADAPTER_CONFIG} is missing from {folder}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AdapterInvalid(f"{ADAPTER_CONFIG} is not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise AdapterInvalid(f"{ADAPTER_CONFIG} must hold a JSON object")
    return config


def check_lora_options(config: dict[str, Any], max_rank: int) -> LoraSpec:
    peft_type = config.get("peft_type")
    if peft_type != "LORA":
        raise AdapterInvalid(f"peft_type is {peft_type!r}; only LORA adapters can be served")
    rank = config.get("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise AdapterInvalid(f"r (the LoRA rank) is {rank!r}; expected a positive integer")
    ranks = [rank, *(config.get("rank_pattern") or {}).values()]
    if max(ranks) > max_rank:
        raise AdapterInvalid(
            f"LoRA rank {max(ranks)} is above the maximum {max_rank} "
            "(raise LORASTACK_MAX_LORA_RANK or train with a smaller r)"
        )
    if config.get("modules_to_save"):
        raise AdapterInvalid(
            f"modules_to_save is set ({config['modules_to_save']}); vLLM cannot serve "
            "adapters that replace whole modules"
        )
    if config.get("use_dora"):
        raise AdapterInvalid("use_dora is true; vLLM cannot serve DoRA adapters")
    bias = config.get("bias", "none")
    if bias != "none":
        raise AdapterInvalid(f"bias is {bias!r}; only bias 'none' can be served")
    targets = config.get("target_modules")
    if isinstance(targets, str):
        target_list = [targets]
    elif isinstance(targets, list) and targets and all(isinstance(t, str) for t in targets):
        target_list = sorted(targets)
    else:
        raise AdapterInvalid(f"target_modules is {targets!r}; expected names or a pattern")
    alpha = config.get("lora_alpha", rank)
    if not isinstance(alpha, int | float) or isinstance(alpha, bool):
        raise AdapterInvalid(f"lora_alpha is {alpha!r}; expected a number")
    return LoraSpec(rank=rank, alpha=alpha, target_modules=target_list)


def _resolve_base_model(
    config: dict[str, Any], store: ModelStore, base_model: str | None
) -> ModelRecord:
    if base_model is not None:
        return store.get(base_model)
    recorded = config.get("base_model_name_or_path")
    if not isinstance(recorded, str) or not recorded:
        raise AdapterInvalid(
            "base_model_name_or_path is not set; name the base model with --base-model"
        )
    record = store.find(recorded)
    if record is None:
        known = ", ".join(r.name for r in store.list()) or "none"
        raise AdapterInvalid(
            f"base_model_name_or_path {recorded!r} is not a registered base model "
            f"(registered: {known}); register it with `lorastack model add` or pass --base-model"
        )
    return record


def _target_matches(target: str, module: str) -> bool:
    # PEFT's rule: a list entry matches a module name or its last dotted parts.
    return module == target or module.endswith(f".{target}")


def check_targets(lora: LoraSpec, base_modules: set[str], base: ModelRecord) -> None:
    targets = lora.target_modules
    if targets == ["all-linear"]:
        return
    if len(targets) == 1 and not re.fullmatch(r"[\w.]+", targets[0]):
        pattern = targets[0]
        try:
            matched = any(re.fullmatch(pattern, module) for module in base_modules)
        except re.error as error:
            raise AdapterInvalid(
                f"target_modules pattern {pattern!r} is invalid: {error}"
            ) from None
        if not matched:
            raise AdapterInvalid(
                f"target_modules pattern {pattern!r} matches no module of {base.name}"
            )
        return
    missing = [t for t in targets if not any(_target_matches(t, m) for m in base_modules)]
    if missing:
        raise AdapterInvalid(
            f"target modules {', '.join(missing)} do not exist in base model {base.name}"
        )


def _check_weights(folder: Path, max_rank: int, base_modules: set[str], base: ModelRecord) -> None:
    weights = folder / ADAPTER_WEIGHTS
    if not weights.is_file():
        pickled = [name for name in _PICKLE_WEIGHTS if (folder / name).exists()]
        if pickled:
            raise AdapterInvalid(
                f"weights are in {pickled[0]} (a pickle, which is never loaded); "
                f"save them as {ADAPTER_WEIGHTS} (PEFT: safe_serialization=True)"
            )
        raise AdapterInvalid(f"{ADAPTER_WEIGHTS} is missing from {folder}")
    try:
        shapes = tensor_shapes(weights)
    except (SafetensorsHeaderError, OSError) as error:
        raise AdapterInvalid(f"{ADAPTER_WEIGHTS} cannot be read: {error}") from None
    if not shapes:
        raise AdapterInvalid(f"{ADAPTER_WEIGHTS} holds no tensors")
    for key, shape in shapes.items():
        match = _LORA_KEY.match(key)
        if match is None:
            raise AdapterInvalid(
                f"{ADAPTER_WEIGHTS} holds {key!r}, which is not a LoRA weight "
                "(full module weights cannot be served)"
            )
        module = match["module"]
        if module not in base_modules:
            raise AdapterInvalid(f"weights target {module}, which base model {base.name} lacks")
        if ".lora_A." in key and shape and shape[0] > max_rank:
            raise AdapterInvalid(f"{key} has rank {shape[0]}, above the maximum {max_rank}")


def validate_adapter(
    folder: Path, store: ModelStore, max_rank: int, base_model: str | None = None
) -> ValidatedAdapter:
    """Run every check on `folder`; `base_model` overrides the one its config names."""
    if not folder.is_dir():
        raise AdapterInvalid(f"{folder} is not a folder")
    config = _load_config(folder)
    lora = check_lora_options(config, max_rank)
    base = _resolve_base_model(config, store, base_model)
    base_modules = checkpoint_module_names(base.path)
    if not base_modules:
        raise AdapterInvalid(f"base model {base.name} at {base.path} has no safetensors weights")
    check_targets(lora, base_modules, base)
    _check_weights(folder, max_rank, base_modules, base)
    return ValidatedAdapter(path=folder, base_model=base, lora=lora)


def check_published_weights(folder: Path, manifest: AdapterManifest) -> None:
    """Refuse weights that changed since publishing: the manifest records their sha256."""
    if sha256_file(folder / ADAPTER_WEIGHTS) != manifest.adapter_sha256:
        raise AdapterInvalid(f"{manifest.ref}: adapter weights do not match the published hash")


def check_published(folder: Path, manifest: AdapterManifest) -> None:
    """Refuse a copy of a published adapter that is not what was published: its weights'
    hash, and the LoRA shape its config declares (rank, alpha, targets), against the manifest.
    """
    check_published_weights(folder, manifest)
    try:
        # Ranks were held to the registry's maximum when it was published; only the shape
        # is compared here.
        lora = check_lora_options(_load_config(folder), max_rank=_ANY_RANK)
    except AdapterInvalid as error:
        raise AdapterInvalid(f"{manifest.ref}: {error}") from None
    if lora != manifest.lora:
        raise AdapterInvalid(
            f"{manifest.ref}: {ADAPTER_CONFIG} declares {lora.model_dump()}, "
            f"not the published {manifest.lora.model_dump()}"
        )
