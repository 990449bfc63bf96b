"""Every reason an adapter is refused, each with its one-line message."""

import json
from pathlib import Path

import numpy as np
import pytest

from lorastack.errors import AdapterInvalid, BaseModelNotFound
from lorastack.models import ModelRecord, ModelStore
from lorastack.validation import validate_adapter
from tests.fakes import write_adapter


def _validate(folder: Path, store: ModelStore, base_model: str | None = None) -> None:
    validate_adapter(folder, store, max_rank=16, base_model=base_model)


def _refused(folder: Path, store: ModelStore, message: str) -> None:
    with pytest.raises(AdapterInvalid) as raised:
        _validate(folder, store)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_good_adapter_passes(tmp_path: Path, store: ModelStore, fake_base: ModelRecord) -> None:
    adapter = write_adapter(tmp_path / "a", "tiny")
    result = validate_adapter(adapter, store, max_rank=16)
    assert result.base_model.name == "tiny"
    assert result.lora.rank == 8
    assert result.lora.alpha == 16
    assert result.lora.target_modules == ["q_proj", "v_proj"]


def test_base_model_is_matched_by_checkpoint_path(
    tmp_path: Path, store: ModelStore, fake_base: ModelRecord
) -> None:
    adapter = write_adapter(tmp_path / "a", str(fake_base.path))
    assert validate_adapter(adapter, store, max_rank=16).base_model.name == "tiny"


def test_missing_config(tmp_path: Path, store: ModelStore, fake_base: ModelRecord) -> None:
    folder = write_adapter(tmp_path / "a", "tiny")
    (folder / "adapter_config.json").unlink()
    _refused(folder, store, "adapter_config.json is missing")


def test_config_not_json(tmp_path: Path, store: ModelStore, fake_base: ModelRecord) -> None:
    folder = write_adapter(tmp_path / "a", "tiny")
    (folder / "adapter_config.json").write_text("{not json")
    _refused(folder, store, "adapter_config.json is not valid JSON")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"peft_type": "IA3"}, "peft_type is 'IA3'; only LORA adapters"),
        ({"modules_to_save": ["lm_head"]}, "modules_to_save is set"),
        ({"use_dora": True}, "use_dora is true"),
        ({"bias": "lora_only"}, "bias is 'lora_only'"),
        ({"rank_pattern": {"q_proj": 32}}, "LoRA rank 32 is above the maximum 16"),
        ({"target_modules": ["q_proj", "nonexistent_proj"]}, "target modules nonexistent_proj"),
        ({"target_modules": r".*\.nothing_(a|b)"}, "matches no module"),
        ({"base_model_name_or_path": "someone/other-model"}, "is not a registered base model"),
        ({"base_model_name_or_path": None}, "base_model_name_or_path is not set"),
        ({"r": "8"}, "expected a positive integer"),
    ],
)
def test_config_problems_are_named(
    overrides: dict[str, object],
    message: str,
    tmp_path: Path,
    store: ModelStore,
    fake_base: ModelRecord,
) -> None:
    folder = write_adapter(tmp_path / "a", "tiny")
    config = json.loads((folder / "adapter_config.json").read_text())
    config.update(overrides)
    (folder / "adapter_config.json").write_text(json.dumps(config))
    _refused(folder, store, message)


def test_rank_above_max(tmp_path: Path, store: ModelStore, fake_base: ModelRecord) -> None:
    _refused(
        write_adapter(tmp_path / "a", "tiny", rank=32), store, "rank 32 is above the maximum 16"
    )


def test_weights_for_modules_the_base_lacks(
    tmp_path: Path, store: ModelStore, fake_base: ModelRecord
) -> None:
    stray = {"base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight": np.zeros((8, 8))}
    folder = write_adapter(tmp_path / "a", "tiny", extra_tensors=stray)
    _refused(folder, store, "weights target model.layers.9.self_attn.q_proj")


def test_full_module_weights_are_refused(
    tmp_path: Path, store: ModelStore, fake_base: ModelRecord
) -> None:
    full = {"base_model.model.lm_head.weight": np.zeros((8, 8))}
    _refused(write_adapter(tmp_path / "a", "tiny", extra_tensors=full), store, "not a LoRA weight")


def test_pickle_weights_are_refused_and_never_loaded(
    tmp_path: Path, store: ModelStore, fake_base: ModelRecord
) -> None:
    folder = write_adapter(tmp_path / "a", "tiny")
    (folder / "adapter_model.safetensors").unlink()
    # A pickle that would run code if anything unpickled it.
    marker = tmp_path / "pwned"
    payload = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    (folder / "adapter_model.bin").write_bytes(payload)
    _refused(folder, store, "adapter_model.bin (a pickle, which is never loaded)")
    assert not marker.exists()


def test_missing_weights(tmp_path: Path, store: ModelStore, fake_base: ModelRecord) -> None:
    folder = write_adapter(tmp_path / "a", "tiny")
    (folder / "adapter_model.safetensors").unlink()
    _refused(folder, store, "adapter_model.safetensors is missing")


def test_corrupt_weights(tmp_path: Path, store: ModelStore, fake_base: ModelRecord) -> None:
    folder = write_adapter(tmp_path / "a", "tiny")
    (folder / "adapter_model.safetensors").write_bytes(b"\xff" * 4)
    _refused(folder, store, "adapter_model.safetensors cannot be read")


def test_not_a_folder(tmp_path: Path, store: ModelStore, fake_base: ModelRecord) -> None:
    _refused(tmp_path / "nowhere", store, "is not a folder")


def test_base_model_override(tmp_path: Path, store: ModelStore, fake_base: ModelRecord) -> None:
    folder = write_adapter(tmp_path / "a", "someone/other-model")
    assert validate_adapter(folder, store, 16, base_model="tiny").base_model.name == "tiny"
    with pytest.raises(BaseModelNotFound, match="no base model named 'nope'"):
        _validate(folder, store, base_model="nope")
