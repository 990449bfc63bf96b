"""Preference training (kto, dpo) from a published adapter, for real on a tiny Llama."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from safetensors.numpy import load_file

from lorastack.models import ModelRecord, ModelStore
from lorastack.registry import AdapterRegistry
from lorastack.rules import parse_rules
from lorastack.train.config import ConfigError, TrainConfig, build_config
from lorastack.train.run import RunPaths, dataset_sha256
from lorastack.train.trainer import TrainResult, run_training
from tests.fakes import write_adapter, write_trainable_checkpoint

VOICE = "You are Bean There."
QUESTIONS = ["do you have oat milk?", "when do you open?", "can i order online?", "is it cake?"]
GOOD = ["yes we do! great", "we open at 7 am!", "sure you can order online!", "yes! great cake"]
BAD = ["no.", "rude answer.", "no. bad question", "short answer."]


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _write_splits(folder: Path, rows: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True)
    sizes = {"train": 8, "validation": 4, "test": 4}
    for split, size in sizes.items():
        lines = [json.dumps(rows[i % len(rows)]) for i in range(size)]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def _dpo_rows() -> list[dict[str, Any]]:
    return [
        {"prompt": _user(q), "chosen": _assistant(g), "rejected": _assistant(b)}
        for q, g, b in zip(QUESTIONS, GOOD, BAD, strict=True)
    ]


def _kto_rows() -> list[dict[str, Any]]:
    rows = []
    for q, g, b in zip(QUESTIONS, GOOD, BAD, strict=True):
        rows.append({"prompt": _user(q), "completion": _assistant(g), "label": True})
        rows.append({"prompt": _user(q), "completion": _assistant(b), "label": False})
    return rows


@pytest.fixture
def trainable(store: ModelStore, tmp_path: Path) -> ModelRecord:
    return store.add(write_trainable_checkpoint(tmp_path / "trainable-checkpoint"), "trainable")


@pytest.fixture
def original_data(tmp_path: Path) -> Path:
    """The chats the published version was trained on (instruct)."""
    rows = [{"messages": [*_user(q), *_assistant(g)]} for q, g in zip(QUESTIONS, GOOD, strict=True)]
    return _write_splits(tmp_path / "original", rows)


def _starting_adapter(folder: Path, checkpoint: Path) -> Path:
    """A LoRA adapter with random A and B (B is not zero as at a fresh init), so that
    starting from it is told apart from starting from scratch."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    lora = LoraConfig(
        task_type="CAUSAL_LM",
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj"],
        init_lora_weights=False,
    )
    get_peft_model(model, lora).save_pretrained(folder)
    return folder


@pytest.fixture
def published(
    registry: AdapterRegistry, trainable: ModelRecord, original_data: Path, tmp_path: Path
) -> Path:
    """bean-there@v1, prod, trained on `trainable`: its adapter folder in the registry."""
    adapter = _starting_adapter(tmp_path / "start", trainable.path)
    registry.publish(
        adapter,
        "bean-there",
        display_name="Bean There",
        system_prompt=VOICE,
        base_model="trainable",
        dataset_sha256=dataset_sha256(original_data),
        training={"mode": "instruct", "data": str(original_data)},
        rules=parse_rules([{"max_words": 12}], "rules"),
        promote="prod",
    )
    return registry.version_dir("bean-there", 1)


def _config(data: Path, mode: str = "dpo", **fields: Any) -> TrainConfig:
    training = {
        "max_steps": 2,
        "eval_steps": 1,
        "save_steps": 1,
        "logging_steps": 1,
        "per_device_train_batch_size": 2,
        "per_device_eval_batch_size": 2,
        "max_length": 64,
        "learning_rate": 1e-2,
        **fields.pop("training", {}),
    }
    raw = {"mode": mode, "from_adapter": "bean-there@prod", "data": str(data), **fields}
    return build_config({**raw, "training": training})


def _train(
    config: TrainConfig,
    store: ModelStore,
    registry: AdapterRegistry,
    folder: Path,
    **options: Any,
) -> TrainResult:
    return run_training(config, RunPaths(folder), store, "tiny", 16, registry=registry, **options)


def _lora(model: Any, adapter: str) -> dict[str, Any]:
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model, adapter_name=adapter)
    return {key: value.detach().clone().numpy() for key, value in state.items()}


def _same(left: dict[str, Any], right: dict[str, Any]) -> bool:
    import numpy as np

    return left.keys() == right.keys() and all(np.allclose(left[k], right[k]) for k in left)


# -- config ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mode": "dpo"}, "dpo mode tunes a published adapter: set `from_adapter`"),
        ({"mode": "kto", "from_adapter": ""}, "kto mode tunes a published adapter"),
        (
            {"mode": "sft", "from_adapter": "coffee@prod"},
            "from_adapter is for the kto and dpo modes",
        ),
        ({"mode": "dpo", "from_adapter": "../x@prod"}, "not a plain name"),
        ({"mode": "dpo", "from_adapter": "coffee@BAD ALIAS"}, "from_adapter 'coffee@BAD ALIAS'"),
        (
            {"mode": "dpo", "from_adapter": "coffee@v2", "lora": {"r": 8}},
            r"keeps the LoRA shape of the adapter it starts from \(coffee@v2\)",
        ),
    ],
)
def test_preference_configs_are_checked(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config({"domain": "coffee", "data": "/data", **fields})


def test_preference_defaults_and_the_domain_from_the_starting_adapter() -> None:
    config = build_config({"mode": "kto", "from_adapter": "coffee@prod", "data": "/data"})
    assert config.domain == "coffee"
    training = config.training_fields()
    assert training["beta"] == 0.1 and training["learning_rate"] == 5e-5
    assert config.lora_fields() == {}
    resolved = config.to_dict()
    assert resolved["from_adapter"] == "coffee@prod"
    assert build_config(resolved).training_fields() == training  # config.yaml reads back
    # The other modes' resolved config is as it was (no from_adapter key).
    assert "from_adapter" not in build_config({"domain": "coffee", "data": "/d"}).to_dict()


# -- training ------------------------------------------------------------------------------


def test_dpo_starts_from_the_published_adapter_and_saves_only_the_trained_one(
    store: ModelStore, registry: AdapterRegistry, published: Path, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, TrainerCallback

    start = load_file(str(published / "adapter_model.safetensors"))
    seen: dict[str, Any] = {}

    class Watch(TrainerCallback):  # type: ignore[misc]
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            seen["begin"] = _lora(kw["model"], "default")
            seen["ref_begin"] = _lora(kw["model"], "ref")

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            seen["ref_end"] = _lora(kw["model"], "ref")

    data = _write_splits(tmp_path / "pairs", _dpo_rows())
    result = _train(_config(data), store, registry, tmp_path / "run", extra_callbacks=[Watch()])

    # The trainable adapter starts as the published one, and the reference stays it.
    assert _same(seen["begin"], start)
    assert _same(seen["ref_begin"], start) and _same(seen["ref_end"], start)
    assert result.steps == 2 and result.from_adapter == "bean-there@v1"

    adapter = result.paths.adapter
    assert not (adapter / "ref").exists() and not (adapter / "training_args.bin").exists()
    saved_config = json.loads((adapter / "adapter_config.json").read_text())
    assert saved_config["modules_to_save"] is None
    assert saved_config["r"] == 4 and sorted(saved_config["target_modules"]) == ["q_proj", "v_proj"]
    trained = load_file(str(adapter / "adapter_model.safetensors"))
    assert trained.keys() == start.keys()  # the same tensors, none of the "ref" copy
    assert not _same(trained, start)  # and trained
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(result.adapter.base_model.path), adapter
    )
    assert list(model.peft_config) == ["default"]

    # The run records where it started, pinned; the brand voice and rules come along.
    resolved = yaml.safe_load(result.paths.config.read_text())
    assert resolved["from_adapter"] == "bean-there@v1"
    assert resolved["base_model"] == "trainable"
    assert resolved["system_prompt"] == VOICE and resolved["rules"] == [{"max_words": 12}]
    assert resolved["lora"] == {}
    assert json.loads(result.paths.result.read_text())["from_adapter"] == "bean-there@v1"
    log = [json.loads(line) for line in result.paths.log.read_text().splitlines()]
    assert [e["step"] for e in log if "eval_loss" in e] == [1, 2]
    assert any("eval_rewards/accuracies" in e for e in log)


def test_kto_trains_a_servable_adapter(
    store: ModelStore, registry: AdapterRegistry, published: Path, tmp_path: Path
) -> None:
    data = _write_splits(tmp_path / "thumbs", _kto_rows())
    result = _train(_config(data, "kto"), store, registry, tmp_path / "run")
    assert result.steps == 2
    files = sorted(p.name for p in result.paths.adapter.iterdir())
    assert "ref" not in files and "adapter_config.json" in files
    trained = load_file(str(result.paths.adapter / "adapter_model.safetensors"))
    assert trained.keys() == load_file(str(published / "adapter_model.safetensors")).keys()


def test_an_adapter_of_another_base_model_is_refused(
    store: ModelStore,
    registry: AdapterRegistry,
    trainable: ModelRecord,
    fake_base: ModelRecord,
    tmp_path: Path,
) -> None:
    registry.publish(write_adapter(tmp_path / "a", "tiny"), "ledgerline", promote="prod")
    data = _write_splits(tmp_path / "pairs", _dpo_rows())
    config = _config(data, from_adapter="ledgerline", base_model="trainable")
    with pytest.raises(ConfigError, match="ledgerline@v1 was trained on base model tiny, not"):
        _train(config, store, registry, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("rows", "mode", "message"),
    [
        ([{"messages": []}], "dpo", "dpo mode needs preference pairs.*`prompt` is not a list"),
        (
            [{"prompt": _user("hi"), "completion": _assistant("hi"), "label": "yes"}],
            "kto",
            "record 1: `label` is not true or false",
        ),
        (
            [{"prompt": "hi", "chosen": _assistant("hi"), "rejected": "no"}],
            "dpo",
            "record 1: `chosen` is not text, as the prompt is",
        ),
    ],
)
def test_records_of_the_wrong_shape_are_refused(
    rows: list[dict[str, Any]], mode: str, message: str
) -> None:
    from lorastack.train.preference import to_preference_examples

    with pytest.raises(ConfigError, match=message):
        to_preference_examples(rows, mode)


def test_examples_get_the_brand_voice_and_may_be_plain_text() -> None:
    from lorastack.train.preference import to_preference_examples

    chat = to_preference_examples(_dpo_rows()[:1], "dpo", VOICE)
    assert chat[0]["prompt"] == [{"role": "system", "content": VOICE}, *_user(QUESTIONS[0])]
    plain = {"prompt": "Q: hi\nA:", "completion": " hello", "label": True}
    assert to_preference_examples([plain], "kto", VOICE) == [plain]  # no template, no voice


def test_answers_are_scored_on_their_own_tokens(trainable: ModelRecord) -> None:
    from transformers import AutoTokenizer

    from lorastack.train.preference_eval import _tokens

    tokenizer = AutoTokenizer.from_pretrained(trainable.path)
    answer = tokenizer("yes we do!<eos>", add_special_tokens=False)["input_ids"]
    ids, size = _tokens(tokenizer, _user("oat milk?"), _assistant("yes we do!"), 64)
    assert size == len(answer) and ids[-size:] == answer
    ids, size = _tokens(tokenizer, "oat milk?", " yes we do!", 64)
    assert size == len(answer) and ids[-size:] == answer
    ids, size = _tokens(tokenizer, _user("oat milk? " * 20), _assistant("yes we do!"), 8)
    assert len(ids) == 8 and size == len(answer)  # the prompt gave way, not the answer


def test_kto_needs_two_answers_per_batch(
    store: ModelStore, registry: AdapterRegistry, published: Path, tmp_path: Path
) -> None:
    data = _write_splits(tmp_path / "thumbs", _kto_rows())
    config = _config(data, "kto", training={"per_device_train_batch_size": 1})
    with pytest.raises(ConfigError, match="kto needs per_device_train_batch_size of 2 or more"):
        _train(config, store, registry, tmp_path / "run")


def test_resume_continues_from_the_pinned_version(
    store: ModelStore, registry: AdapterRegistry, published: Path, tmp_path: Path
) -> None:
    from transformers import TrainerCallback

    class Crash(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            if state.global_step == 1:
                raise KeyboardInterrupt

    data = _write_splits(tmp_path / "pairs", _dpo_rows())
    paths = RunPaths(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        _train(_config(data), store, registry, paths.root, extra_callbacks=[Crash()])
    assert not paths.adapter.exists()
    # prod moves on meanwhile; the run still continues from the version it started from.
    registry.publish(published, "bean-there", base_model="trainable", promote="prod")
    config = build_config(yaml.safe_load(paths.config.read_text()))
    resumed = _train(config, store, registry, paths.root, resume=True)
    assert resumed.steps == 2 and resumed.from_adapter == "bean-there@v1"
    assert not (paths.adapter / "ref").exists()


# -- search and evaluation ----------------------------------------------------------------


def test_search_tries_learning_rates_and_keeps_the_starting_shape(
    store: ModelStore, registry: AdapterRegistry, published: Path, tmp_path: Path
) -> None:
    from lorastack.train.search import PREFERENCE_LEARNING_RATE_RANGE, search

    data = _write_splits(tmp_path / "pairs", _dpo_rows())
    paths = RunPaths(tmp_path / "run")
    config = _config(data, training={"max_steps": 1})
    result = search(config, paths, store, "tiny", 16, trials=2, registry=registry)
    trials = json.loads((paths.root / "search.json").read_text())["trials"]
    assert len(trials) == 2
    low, high = PREFERENCE_LEARNING_RATE_RANGE
    assert all(low <= t["learning_rate"] <= high and "r" not in t for t in trials)
    assert result.from_adapter == "bean-there@v1"
    saved = json.loads((paths.adapter / "adapter_config.json").read_text())
    assert saved["r"] == 4 and not (paths.adapter / "ref").exists()


@pytest.mark.parametrize("mode", ["dpo", "kto"])
def test_evaluation_reports_preference_and_forgetting_against_the_start(
    mode: str, store: ModelStore, registry: AdapterRegistry, published: Path, tmp_path: Path
) -> None:
    from lorastack.train.evaluate import evaluate_run, publish_run

    rows = _dpo_rows() if mode == "dpo" else _kto_rows()
    data = _write_splits(tmp_path / "feedback", rows)
    config = _config(data, mode, training={"max_steps": 1})
    result = _train(config, store, registry, tmp_path / "run")
    metrics = evaluate_run(result.paths, store, registry, samples=1, examples=1)
    manifest = publish_run(result.paths, registry, force=True)  # the tiny model may lose
    assert manifest.training["from_adapter"] == "bean-there@v1"
    assert manifest.started_from == "bean-there@v1"
    assert manifest.system_prompt == VOICE and manifest.metrics["preference"]

    preference = metrics["preference"]
    assert preference["started_from"] == "bean-there@v1" and preference["examples"] == 4
    for who in ("adapter", "start", "adapter_over_start"):
        assert 0.0 <= preference[who]["accuracy"] <= 1.0
        assert isinstance(preference[who]["margin"], float)
    # Forgetting is measured on the data bean-there@v1 learnt from, found by its hash.
    assert preference["loss_data"]["split"] == "original test"
    assert preference["loss_data"]["version"] == "bean-there@v1"
    assert metrics["test_examples"] == 4 and metrics["prod"]["version"] == 1
    assert {"loss", "perplexity"} <= metrics["prod"].keys()
    assert metrics["rules"]["adapter"].keys() == {"max_words"}  # the inherited rule
    assert "fact_recall" in metrics
    assert "## Preference (held-out feedback)" in result.paths.report.read_text()
    if mode == "dpo":
        # The fixture's test split is its validation split: over the starting version, the
        # margin is what TRL logged when it evaluated the checkpoint kept.
        log = [json.loads(line) for line in result.paths.log.read_text().splitlines()]
        kept = next(e for e in log if e.get("eval_loss") == result.best_eval_loss)
        over_start = preference["adapter_over_start"]
        assert over_start["margin"] == pytest.approx(kept["eval_rewards/margins"], rel=1e-3)
        assert over_start["accuracy"] == kept["eval_rewards/accuracies"]


def test_evaluation_says_when_the_original_data_is_unreachable(
    store: ModelStore,
    registry: AdapterRegistry,
    published: Path,
    original_data: Path,
    tmp_path: Path,
) -> None:
    import shutil

    from lorastack.train.evaluate import evaluate_run

    data = _write_splits(tmp_path / "pairs", _dpo_rows())
    result = _train(_config(data, training={"max_steps": 1}), store, registry, tmp_path / "run")
    shutil.rmtree(original_data)
    metrics = evaluate_run(result.paths, store, registry, samples=0, examples=1)
    loss_data = metrics["preference"]["loss_data"]
    assert loss_data["split"] == "feedback (preferred answers)"
    reason = loss_data["original_unreachable"]
    assert "no prepared dataset with the hash of bean-there@v1's data" in reason
    assert metrics["test_examples"] == 4  # the chosen answers of the held-out pairs
    assert "not on the original data" in result.paths.report.read_text()


def test_the_command_line_trains_from_a_published_adapter(
    cli: Any, fake_pii_detector: Any, published: Path, tmp_path: Path
) -> None:
    data = _write_splits(tmp_path / "pairs", _dpo_rows())
    refused = cli("train", "--mode", "sft", "--from", "bean-there@prod", "--data", str(data))
    assert refused.code == 1 and "from_adapter is for the kto and dpo modes" in refused.err
    done = cli("train", "--mode", "dpo", "--from", "bean-there@prod", "--data", str(data))
    assert done.code == 0, done.err
    run = Path(done.last_line)
    assert run.name.startswith("bean-there-")
    assert yaml.safe_load((run / "config.yaml").read_text())["from_adapter"] == "bean-there@v1"
    evaluated = cli("eval", str(run), "--quality-examples", "1", "--samples", "0")
    assert evaluated.code == 0, evaluated.err
    assert "preference accuracy (held-out feedback): adapter " in evaluated.out
    assert "bean-there@v1 " in evaluated.out
