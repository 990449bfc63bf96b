"""Read tensor names and shapes from safetensors headers without loading weights.

The header is plain JSON, so inspecting an untrusted file never runs its code
and never needs torch.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

_MAX_HEADER_BYTES = 100 * 1024 * 1024


class SafetensorsHeaderError(ValueError):
    """The file is not a readable safetensors file."""


def tensor_shapes(path: Path) -> dict[str, list[int]]:
    """Map every tensor name in a safetensors file to its shape."""
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) != 8:
            raise SafetensorsHeaderError(f"{path.name} is too short to be a safetensors file")
        (length,) = struct.unpack("<Q", prefix)
        if length > _MAX_HEADER_BYTES:
            raise SafetensorsHeaderError(f"{path.name} has an implausible header size")
        raw = handle.read(length)
    if len(raw) != length:
        raise SafetensorsHeaderError(f"{path.name} is truncated")
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SafetensorsHeaderError(f"{path.name} has a header that is not JSON") from None
    if not isinstance(header, dict):
        raise SafetensorsHeaderError(f"{path.name} has a malformed header")
    shapes: dict[str, list[int]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or not isinstance(info.get("shape"), list):
            raise SafetensorsHeaderError(f"{path.name} has a malformed entry for {name!r}")
        shapes[name] = [int(dim) for dim in info["shape"]]
    return shapes


def checkpoint_module_names(checkpoint: Path) -> set[str]:
    """Names of the modules holding weights in a Hugging Face checkpoint folder.

    `model.layers.0.self_attn.q_proj.weight` gives `model.layers.0.self_attn.q_proj`.
    """
    names: set[str] = set()
    for file in sorted(checkpoint.glob("*.safetensors")):
        for tensor in tensor_shapes(file):
            names.add(tensor.rsplit(".", 1)[0])
    return names
