"""Training configs, and every refusal before training starts."""

import json
from pathlib import Path

import pytest

from lorastack.models import ModelRecord
from lorastack.train.config import ConfigError, build_config, load_config
from lorastack.train.trainer import preflight, to_examples

ROOT = Path(__file__).resolve().parents[3]


def _config(**fields: object) -> object:
    return build_config({"domain": "coffee-shop", "data": "/data", **fields})


def test_yaml_fields_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(
        "domain: coffee-shop\ndata: prepared/\nmode: sft\n"
        "lora: {r: 8}\ntraining: {learning_rate: 1.0e-4, max_steps: 50}\n"
    )
    config = load_config(path, {"training": {"max_steps": 3}, "system_prompt": "Be kind."})
    assert config.mode == "sft"
    assert config.lora_fields()["r"] == 8
    assert config.lora_fields()["target_modules"] == "all-linear"  # our default kept
    assert config.training_fields()["learning_rate"] == 1.0e-4
    assert config.training_fields()["max_steps"] == 3
    assert config.system_prompt == "Be kind."


def test_numbers_written_like_1e_3_are_numbers(tmp_path: Path) -> None:
    # YAML 1.1 (PyYAML) reads `1e-3` as a string; the optimizer would fail on it mid-start.
    path = tmp_path / "run.yaml"
    path.write_text(
        "domain: shop\ndata: prepared/\n"
        "lora: {lora_dropout: 5E-2}\ntraining: {learning_rate: 1e-3, weight_decay: +2e-1, "
        "optim: adamw_torch, run_name: 3e5x}\n"
    )
    config = load_config(path)
    assert config.training_fields()["learning_rate"] == 0.001
    assert config.training_fields()["weight_decay"] == 0.2
    assert config.lora_fields()["lora_dropout"] == 0.05
    assert config.training["optim"] == "adamw_torch" and config.training["run_name"] == "3e5x"
    empty = tmp_path / "empty.yaml"
    empty.write_text("domain: shop\ndata: prepared/\nlora:\ntraining:\n")  # both null
    assert load_config(empty).lora == {} and load_config(empty).training == {}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mode": "chat"}, "mode must be one of pretrain, sft, instruct"),
        ({"domain": "../x"}, "not a plain name"),
        ({"learning_rate": 1}, "unknown field(s) learning_rate"),
        ({"early_stopping_patience": 0}, "at least 1"),
        ({"training": [1e-3]}, "training: expected a mapping of field: value, not list"),
        ({"lora": "r16"}, "lora: expected a mapping of field: value, not str"),
    ],
)
def test_bad_configs_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _config(**fields)


def test_brand_rules_are_parsed_and_kept_json_able(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(
        "domain: coffee-shop\ndata: prepared/\nrules:\n"
        "  - ends_with: '\u2615'\n    name: cup\n"
        "  - max_sentences: 3\n"
        "  - must_not_mention: [Starbucks, Costa]\n"
    )
    config = load_config(path)
    assert [rule.label for rule in config.rules] == ["cup", "max_sentences", "must_not_mention"]
    assert config.rules[0].passes("See you soon! \u2615")
    assert not config.rules[2].passes("Better than Costa!")
    resolved = json.loads(json.dumps(config.to_dict()))
    assert resolved["rules"] == [
        {"name": "cup", "ends_with": "\u2615"},
        {"max_sentences": 3},
        {"must_not_mention": ["Starbucks", "Costa"]},
    ]
    assert build_config(resolved).rules == config.rules  # a run's config.yaml reads back
    assert _config().rules == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{"shout": True}], "rules: rule 1: shout: Extra inputs are not permitted"),
        ([{"must_match": "[a-"}], "rules: rule 1: must_match: not a valid regular expression"),
        ([{"max_words": 5, "no_emoji": True}], r"exactly one of .*\(found: max_words, no_emoji\)"),
        ([{"max_words": 5}, {"max_words": 9}], "more than one rule is named max_words"),
        ({"max_words": 5}, "`rules` must be a list of rules"),
    ],
)
def test_bad_rules_are_refused_naming_the_problem(rules: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _config(rules=rules)


def test_required_fields(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="`data` is required"):
        build_config({"domain": "coffee-shop"})
    path = tmp_path / "bad.yaml"
    path.write_text("- not a mapping")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(path)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"lora": {"modules_to_save": ["lm_head"]}}, "modules_to_save is set"),
        ({"lora": {"r": 64}}, "LoRA rank 64 is above the maximum 16"),
        ({"lora": {"target_modules": ["q_proj", "nope_proj"]}}, "nope_proj do not exist"),
        ({"lora": {"use_dora": True}}, "use_dora is true"),
        ({"lora": {"trainable_token_indices": [1, 2]}}, "changes the embeddings"),
        ({"training": {"chat_template_path": "x.jinja"}}, "changes the tokenizer"),
    ],
)
def test_unservable_adapters_are_refused_before_training(
    fields: dict[str, object], message: str, fake_base: ModelRecord
) -> None:
    config = _config(mode="sft", **fields)
    with pytest.raises(ConfigError, match="refusing to train") as raised:
        preflight(config, fake_base, max_rank=16)  # type: ignore[arg-type]
    assert message in str(raised.value)


def test_instruct_needs_a_chat_template(fake_base: ModelRecord) -> None:
    with pytest.raises(ConfigError, match="has no chat template"):
        preflight(_config(mode="instruct"), fake_base, 16)  # type: ignore[arg-type]
    (fake_base.path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{x}}"}))
    preflight(_config(mode="instruct"), fake_base, 16)  # type: ignore[arg-type]


def test_instruct_examples_put_the_loss_on_each_assistant_turn() -> None:
    record = {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello!"},
            {"role": "user", "content": "beans?"},
            {"role": "assistant", "content": "plenty!"},
        ]
    }
    examples = to_examples([record], "instruct", system_prompt="Be warm.")
    assert len(examples) == 2
    assert examples[0]["prompt"] == [
        {"role": "system", "content": "Be warm."},
        {"role": "user", "content": "hi"},
    ]
    assert examples[0]["completion"] == [{"role": "assistant", "content": "hello!"}]
    assert [m["content"] for m in examples[1]["prompt"]] == ["Be warm.", "hi", "hello!", "beans?"]
    assert examples[1]["completion"] == [{"role": "assistant", "content": "plenty!"}]


@pytest.mark.parametrize(
    ("mode", "record", "message"),
    [
        ("instruct", {"text": "x"}, "instruct mode needs chat records"),
        ("sft", {"messages": []}, "sft mode needs prompt/completion"),
        ("pretrain", {"prompt": "a", "completion": "b"}, "pretrain mode needs text"),
    ],
)
def test_mode_and_data_must_match(mode: str, record: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        to_examples([record], mode)


def test_every_shipped_training_config_parses() -> None:
    configs = sorted((ROOT / "examples" / "train").glob("*.yaml"))
    assert {p.stem for p in configs} >= {"pretrain", "sft", "instruct"}
    for path in configs:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# lorastack train --config"), path
        config = load_config(path)
        assert config.mode == path.stem


@pytest.mark.parametrize(
    ("cuda", "bf16", "expected"),
    [
        (False, False, {"use_cpu": True, "bf16": False, "gradient_checkpointing": False}),
        (
            False,
            True,
            {
                "use_cpu": True,
                "bf16": True,
                "gradient_checkpointing": False,
                "model_init_kwargs": {"dtype": "bfloat16"},
            },
        ),
        (True, False, {"use_cpu": False, "bf16": False}),
        (
            True,
            True,
            {"use_cpu": False, "bf16": True, "model_init_kwargs": {"dtype": "bfloat16"}},
        ),
    ],
)
def test_the_device_and_precision_are_chosen_from_the_hardware(
    monkeypatch: pytest.MonkeyPatch, cuda: bool, bf16: bool, expected: dict[str, object]
) -> None:
    import torch

    from lorastack import precision
    from lorastack.train import trainer

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *_: bf16)
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: bf16)
    assert trainer._device_options() == expected


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("fpu sse avx2 avx512f avx512_bf16 avx512_vnni", True),
        ("fpu sse amx_tile amx_bf16", True),
        ("fpu sse avx2 avx512f", False),
    ],
)
def test_a_cpu_computes_in_bf16_only_with_bf16_units(
    tmp_path: Path, flags: str, expected: bool
) -> None:
    from lorastack.precision import cpu_has_bf16

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: x\nflags\t\t: {flags}\n\n")
    assert cpu_has_bf16(cpuinfo) is expected
    assert cpu_has_bf16(tmp_path / "missing") is False


def test_a_cpu_trainer_keeps_freed_memory_on_glibc_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import platform

    from lorastack import precision

    kept: list[bool] = []
    monkeypatch.setattr(precision, "keep_freed_memory", lambda: kept.append(True) or True)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    precision.precision_options()
    assert kept == [True]
    monkeypatch.undo()
    if platform.libc_ver()[0] == "glibc":
        assert precision.keep_freed_memory() is True  # mallopt accepted every parameter
    monkeypatch.setattr(precision.sys, "platform", "darwin")
    assert precision.keep_freed_memory() is False


def test_resume_finds_the_domains_own_latest_run_only(tmp_path: Path) -> None:
    import os

    from lorastack.train.run import latest_run

    for name, age in (
        ("coffee-20261127-110000", 30),
        ("coffee-20261127-120000-2", 20),
        ("coffee-shop-20261127-130000", 10),  # another domain, newer
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text("domain: x\n")
        os.utime(tmp_path / name, (1_000_000 - age, 1_000_000 - age))
    assert latest_run(tmp_path, "coffee").root.name == "coffee-20261127-120000-2"
    assert latest_run(tmp_path, "coffee-shop").root.name == "coffee-shop-20261127-130000"
    with pytest.raises(ConfigError, match="no earlier run of tea"):
        latest_run(tmp_path, "tea")
