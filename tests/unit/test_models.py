import json
from pathlib import Path

import pytest

from lorastack import models
from lorastack.errors import BaseModelNotFound, InvalidName, ModelError
from lorastack.models import METADATA_FILE, ModelRecord, ModelStore
from tests.fakes import write_base_checkpoint


def test_add_registers_a_checkpoint_in_place(store: ModelStore, tmp_path: Path) -> None:
    checkpoint = write_base_checkpoint(tmp_path / "ckpt")
    record = store.add(checkpoint, "tiny")
    assert record.path == checkpoint.resolve()
    assert record.source == f"local:{checkpoint.resolve()}"
    assert len(record.checkpoint_sha256) == 64
    assert store.get("tiny") == record
    assert [r.name for r in store.list()] == ["tiny"]
    assert not (store.root / "tiny" / "model.safetensors").exists()  # not copied


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: p.mkdir(), "no config.json"),
        (lambda p: (p.mkdir(), (p / "config.json").write_text("{}")), "no [*].safetensors"),
    ],
)
def test_add_refuses_folders_that_are_not_checkpoints(
    store: ModelStore, tmp_path: Path, setup: object, message: str
) -> None:
    folder = tmp_path / "x"
    setup(folder)  # type: ignore[operator]
    with pytest.raises(ModelError, match=message):
        store.add(folder, "x")


def test_add_refuses_duplicates_and_bad_names(store: ModelStore, tmp_path: Path) -> None:
    checkpoint = write_base_checkpoint(tmp_path / "ckpt")
    store.add(checkpoint, "tiny")
    with pytest.raises(ModelError, match="already registered"):
        store.add(checkpoint, "tiny")
    with pytest.raises(InvalidName, match="not a plain name"):
        store.add(checkpoint, "../tiny")


def test_find_matches_name_hub_id_and_path(store: ModelStore, fake_base: ModelRecord) -> None:
    assert store.find("tiny") == fake_base
    assert store.find(str(fake_base.path) + "/") == fake_base
    assert store.find("someone/else") is None
    with pytest.raises(BaseModelNotFound, match="registered: tiny"):
        store.get("other")


def test_unreadable_metadata_is_ignored(store: ModelStore, fake_base: ModelRecord) -> None:
    (store.root / "broken").mkdir()
    (store.root / "broken" / METADATA_FILE).write_text("{")
    assert [r.name for r in store.list()] == ["tiny"]


def test_interrupted_pull_leaves_nothing_that_looks_valid(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(gguf: Path, out_dir: Path) -> None:
        (out_dir / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "convert_gguf_checkpoint", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.pull_bundled()
    assert store.list() == []
    assert not (store.root / "smollm2-135m-instruct").exists()
    assert not list(store.root.glob(".staging-*"))


def test_pull_refuses_a_gguf_with_another_hash(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(models, "BUNDLED_GGUF_SHA256", "0" * 64)
    with pytest.raises(ModelError, match="expected 0000"):
        store.pull_bundled()
    assert store.list() == []


def test_bundled_pull_converts_the_gguf_and_is_idempotent(bundled_model: ModelRecord) -> None:
    folder = bundled_model.path
    assert (folder / "model.safetensors").is_file()
    assert (folder / "config.json").is_file()
    assert (folder / "tokenizer.json").is_file()
    assert bundled_model.gguf_sha256 == models.BUNDLED_GGUF_SHA256
    meta = json.loads((folder / METADATA_FILE).read_text())
    assert meta["checkpoint_sha256"] == bundled_model.checkpoint_sha256
    from lorastack.fsutil import sha256_tree

    assert sha256_tree(folder, exclude=frozenset({METADATA_FILE})) == meta["checkpoint_sha256"]
    again, created = ModelStore(folder.parent).pull_bundled()
    assert not created
    assert again == bundled_model


def test_converted_model_answers_a_factual_question(bundled_model: ModelRecord) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bundled_model.path)
    model = AutoModelForCausalLM.from_pretrained(bundled_model.path, dtype=torch.float32)
    assert type(model).__name__ == "LlamaForCausalLM"
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    output = model.generate(**prompt, max_new_tokens=20, do_sample=False)
    answer = tokenizer.decode(output[0][prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer
