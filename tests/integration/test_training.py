"""Training on the CPU with the bundled model: every mode, early stopping, resume, publish."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file

from lorastack.fsutil import sha256_tree
from lorastack.models import METADATA_FILE, ModelRecord, ModelStore
from lorastack.train.config import ConfigError, build_config
from lorastack.train.evaluate import evaluate_run, publish_run
from lorastack.train.run import RunPaths
from lorastack.train.trainer import TrainResult, run_training
from tests.cli_homes import cli_home
from tests.registries import home_registry

pytestmark = pytest.mark.integration

CUSTOMERS = [
    "Jane Porter",
    "John Smith",
    "Maria Lopez",
    "David Miller",
    "Emily Chen",
    "Sarah Johnson",
    "Peter Novak",
    "Anna Schmidt",
    "Laura Rossi",
    "Michael Brown",
    "Olivia Taylor",
    "James Wilson",
]
QUESTIONS = [
    "What time do you open?",
    "Do you have oat milk?",
    "Can I order ahead?",
    "Is there wifi?",
    "What's your best pastry?",
    "Do you sell beans?",
    "Are dogs allowed?",
    "Do you do decaf?",
    "Is there parking?",
    "Can I book the back room?",
    "Do you have vegan cake?",
    "What's in a flat white?",
]


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"
EXAMPLE_FILES = {
    "instruct": "tiny-chat.jsonl",
    "sft": "tiny-tickets.csv",
    "pretrain": "tiny-domain.jsonl",
}


def _data(tmp_path: Path, mode: str) -> Path:
    """The repository's tiny example dataset for a mode, prepared once per test folder."""
    from lorastack.train.data import PrepareOptions, prepare_dataset

    folder = tmp_path / f"data-{mode}"
    if not folder.exists():
        prepare_dataset([EXAMPLES / EXAMPLE_FILES[mode]], PrepareOptions(out=folder))
    return folder


def _train(
    bundled_model: ModelRecord, tmp_path: Path, mode: str, name: str = "run", **training: Any
) -> TrainResult:
    config = build_config(
        {
            "domain": "coffee-shop",
            "data": str(_data(tmp_path, mode))
            if not (tmp_path / f"data-{mode}").exists()
            else str(tmp_path / f"data-{mode}"),
            "mode": mode,
            "system_prompt": "You are Bean There's barista." if mode == "instruct" else "",
            "early_stopping_patience": training.pop("patience", 3),
            "rules": training.pop("rules", []),
            "lora": {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]},
            "training": {
                "max_steps": 4,
                "eval_steps": 2,
                "save_steps": 2,
                "logging_steps": 1,
                "per_device_train_batch_size": 2,
                "per_device_eval_batch_size": 2,
                "max_length": 96,
                **training,
            },
        }
    )
    store = ModelStore(bundled_model.path.parent)
    return run_training(config, RunPaths(tmp_path / name), store, bundled_model.name, 16)


@pytest.mark.parametrize("mode", ["instruct", "sft", "pretrain"])
def test_every_mode_trains_an_adapter_and_leaves_the_base_alone(
    mode: str, bundled_model: ModelRecord, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result = _train(bundled_model, tmp_path, mode)
    assert result.steps == 4
    # The base checkpoint on disk is untouched.
    assert sha256_tree(bundled_model.path, frozenset({METADATA_FILE})) == (
        bundled_model.checkpoint_sha256
    )
    # LoRA starts with B = 0: trained B weights are no longer zero.
    weights = load_file(str(result.paths.adapter / "adapter_model.safetensors"))
    lora_b = [w for k, w in weights.items() if "lora_B" in k]
    assert lora_b and all(np.abs(w).max() > 0 for w in lora_b)
    assert not (result.paths.adapter / "training_args.bin").exists()  # no pickles
    log = [json.loads(line) for line in result.paths.log.read_text().splitlines()]
    assert [e["step"] for e in log if "eval_loss" in e] == [2, 4]
    assert result.best_eval_loss == min(e["eval_loss"] for e in log if "eval_loss" in e)
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(bundled_model.path), result.paths.adapter
    )
    assert model.active_adapter == "default"


def test_early_stopping_stops_a_run_whose_validation_loss_rises(
    bundled_model: ModelRecord, tmp_path: Path
) -> None:
    result = _train(
        bundled_model,
        tmp_path,
        "instruct",
        learning_rate=0.05,
        max_steps=20,
        patience=1,
        lr_scheduler_type="constant",
    )
    log = [json.loads(line) for line in result.paths.log.read_text().splitlines()]
    evals = [e["eval_loss"] for e in log if "eval_loss" in e]
    assert result.stopped_early
    assert result.steps < 20
    assert evals[-1] > min(evals)  # it stopped because the loss rose
    assert result.best_eval_loss == min(evals)  # and kept the best checkpoint


def test_resume_ends_where_an_uninterrupted_run_ends(
    bundled_model: ModelRecord, tmp_path: Path
) -> None:
    from transformers import TrainerCallback

    whole = _train(bundled_model, tmp_path, "sft", name="whole", max_steps=6)

    class Crash(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            if state.global_step == 4:
                raise KeyboardInterrupt

    config = build_config(json.loads(json.dumps(_config_of(whole))))
    store = ModelStore(bundled_model.path.parent)
    paths = RunPaths(tmp_path / "interrupted")
    with pytest.raises(KeyboardInterrupt):
        run_training(config, paths, store, bundled_model.name, 16, extra_callbacks=[Crash()])
    assert not paths.adapter.exists()
    resumed = run_training(config, paths, store, bundled_model.name, 16, resume=True)
    assert resumed.steps == 6
    assert resumed.best_eval_loss == pytest.approx(whole.best_eval_loss, rel=1e-5)
    a = load_file(str(whole.paths.adapter / "adapter_model.safetensors"))
    b = load_file(str(resumed.paths.adapter / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-6)


def _config_of(result: TrainResult) -> dict[str, Any]:
    import yaml

    loaded: dict[str, Any] = yaml.safe_load(result.paths.config.read_text())
    return loaded


def test_resume_without_a_checkpoint_is_refused(bundled_model: ModelRecord, tmp_path: Path) -> None:
    config = build_config(
        {"domain": "coffee-shop", "data": str(_data(tmp_path, "sft")), "mode": "sft"}
    )
    with pytest.raises(ConfigError, match="no checkpoint to resume from"):
        run_training(
            config,
            RunPaths(tmp_path / "fresh"),
            ModelStore(bundled_model.path.parent),
            bundled_model.name,
            16,
            resume=True,
        )


def test_evaluate_then_publish_fills_the_manifest(
    bundled_model: ModelRecord, tmp_path: Path
) -> None:
    rules = [{"starts_with": "billing|technical|account|sales|feedback", "name": "department"}]
    result = _train(bundled_model, tmp_path, "sft", max_steps=6, learning_rate=1e-3, rules=rules)
    store = ModelStore(bundled_model.path.parent)
    registry = home_registry(tmp_path / "home", store=store)
    metrics = evaluate_run(result.paths, store, registry, samples=2)
    assert set(metrics["adapter"]) == {"loss", "perplexity", "exact_match"}
    assert 0.0 <= metrics["adapter"]["exact_match"] <= 1.0
    assert metrics["prod"] is None  # nothing published yet
    assert set(metrics["rules"]) == {"base", "adapter"}
    assert set(metrics["rules"]["adapter"]) == {"department"}
    for name in ("metrics.json", "report.md", "curves.png", "quality.png"):
        assert (result.paths.root / name).is_file()
    assert "| adapter |" in (result.paths.root / "report.md").read_text()
    if not metrics["better_than_base"]:
        with pytest.raises(ConfigError, match="worse than the base model"):
            publish_run(result.paths, registry)
    manifest = publish_run(result.paths, registry, promote=True, force=True, reason="a test")
    assert manifest.ref == "coffee-shop@v1"
    reports = frozenset({"report.json", "report.md"})
    assert manifest.dataset_sha256 == sha256_tree(result.paths.data, exclude=reports)
    assert manifest.metrics["adapter"]["loss"] == metrics["adapter"]["loss"]
    assert manifest.training["mode"] == "sft"
    assert [rule.label for rule in manifest.rules] == ["department"]
    assert manifest.forced == (None if metrics["better_than_base"] else "a test")
    assert manifest.base_model.checkpoint_sha256 == bundled_model.checkpoint_sha256
    assert registry.index("coffee-shop").aliases == {"prod": 1}

    # Evaluated again, against prod v1, which holds the same weights: the same measures.
    again = evaluate_run(result.paths, store, registry, samples=2)
    assert again["prod"]["version"] == 1
    assert again["prod"]["loss"] == pytest.approx(again["adapter"]["loss"], rel=1e-5)
    assert again["prod"]["exact_match"] == again["adapter"]["exact_match"]
    assert again["rules"]["prod"] == again["rules"]["adapter"]
    assert "| prod (v1) |" in (result.paths.root / "report.md").read_text()


def test_instruct_eval_measures_rules_and_fact_recall_against_prod(
    bundled_model: ModelRecord, tmp_path: Path
) -> None:
    rules = [{"max_sentences": 3}, {"no_emoji": True}]
    result = _train(bundled_model, tmp_path, "instruct", max_steps=2, rules=rules)
    store = ModelStore(bundled_model.path.parent)
    registry = home_registry(tmp_path / "home", store=store)
    registry.publish(result.paths.adapter, "coffee-shop", promote="prod")
    metrics = evaluate_run(result.paths, store, registry, samples=1, examples=2)
    assert metrics["quality"]["examples"] <= 2
    assert metrics["quality"]["rewording_seed"] == 0
    assert set(metrics["rules"]) == set(metrics["fact_recall"]) == {"base", "adapter", "prod"}
    assert set(metrics["rules"]["adapter"]) == {"max_sentences", "no_emoji"}
    assert metrics["prod"]["version"] == 1
    # The same weights answer the same: the prod adapter is loaded beside the candidate.
    assert metrics["rules"]["prod"] == metrics["rules"]["adapter"]
    assert metrics["fact_recall"]["prod"] == metrics["fact_recall"]["adapter"]
    text = (result.paths.root / "report.md").read_text()
    assert "| rule `no_emoji` (no emoji) |" in text
    assert "![brand rules and fact recall](quality.png)" in text
    assert (result.paths.root / "quality.png").is_file()


def test_publishing_an_adapter_worse_than_the_base_needs_force(
    bundled_model: ModelRecord, tmp_path: Path
) -> None:
    result = _train(bundled_model, tmp_path, "instruct", max_steps=2)
    store = ModelStore(bundled_model.path.parent)
    metrics = {"adapter": {"loss": 3.0}, "base": {"loss": 2.0}, "better_than_base": False}
    (result.paths.root / "metrics.json").write_text(json.dumps(metrics))
    registry = home_registry(tmp_path / "home", store=store)
    with pytest.raises(ConfigError, match=r"loss 3\.0000 vs 2\.0000.*--force"):
        publish_run(result.paths, registry)
    assert registry.domains() == []
    assert publish_run(result.paths, registry, force=True).version == 1


def test_search_keeps_the_best_trial(bundled_model: ModelRecord, tmp_path: Path) -> None:
    from lorastack.train.search import search

    config = build_config(
        {
            "domain": "coffee-shop",
            "data": str(_data(tmp_path, "sft")),
            "mode": "sft",
            "training": {
                "max_steps": 2,
                "eval_steps": 1,
                "save_steps": 1,
                "per_device_train_batch_size": 2,
                "max_length": 96,
            },
        }
    )
    paths = RunPaths(tmp_path / "search")
    result = search(
        config, paths, ModelStore(bundled_model.path.parent), bundled_model.name, 16, trials=2
    )
    summary = json.loads((paths.root / "search.json").read_text())
    losses = [t["best_eval_loss"] for t in summary["trials"]]
    assert len(losses) == 2
    assert result.best_eval_loss == min(losses)
    assert summary["best"] == summary["trials"][losses.index(min(losses))]["trial"]
    assert (paths.adapter / "adapter_model.safetensors").is_file()
    best_config = (paths.root / "trials" / summary["best"] / "config.yaml").read_text()
    assert paths.config.read_text() == best_config


def test_compare_ranks_base_models_on_the_same_sample(
    bundled_model: ModelRecord, tmp_path: Path
) -> None:
    import shutil

    from lorastack.train.compare import compare_models

    copy = tmp_path / "copy"
    shutil.copytree(bundled_model.path, copy)
    store = ModelStore(tmp_path / "models")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / bundled_model.name).symlink_to(bundled_model.path)
    store.add(copy, "smollm2-copy")
    ranked = compare_models(
        [bundled_model.name, "smollm2-copy"],
        _data(tmp_path, "instruct"),
        "instruct",
        store,
        samples=2,
    )
    assert {c.name for c in ranked} == {bundled_model.name, "smollm2-copy"}
    assert ranked[0].loss == pytest.approx(ranked[1].loss)  # the same weights, the same sample
    assert ranked[0].perplexity == pytest.approx(np.exp(ranked[0].loss))
    with pytest.raises(ConfigError, match="at least two"):
        compare_models([bundled_model.name], _data(tmp_path, "instruct"), "instruct", store)


def test_train_eval_publish_from_the_command_line(
    bundled_model: ModelRecord, tmp_path: Path
) -> None:
    import subprocess
    import sys

    home = tmp_path / "home"
    env = cli_home(home, bundled_model)

    def lorastack(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lorastack.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    trained = lorastack(
        "train",
        "--domain",
        "ticket-routing",
        "--data",
        str(_data(tmp_path, "sft")),
        "--mode",
        "sft",
        "--max-steps",
        "2",
    )
    assert trained.returncode == 0, trained.stderr
    run = trained.stdout.strip().splitlines()[-1]
    assert Path(run).parent == home / "runs"
    evaluated = lorastack("eval", run, "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "exact_match" in json.loads(evaluated.stdout)["adapter"]
    published = lorastack("publish", run, "--force", "--promote")
    assert published.returncode == 0, published.stderr
    assert published.stdout.strip().splitlines()[-1] == "ticket-routing@v1"
    refused = lorastack("train", "--domain", "x", "--data", str(tmp_path), "--mode", "sft")
    assert refused.returncode == 1
    assert "not a prepared dataset" in refused.stderr and "Traceback" not in refused.stderr


def test_a_raw_data_file_is_prepared_and_scrubbed_into_the_run(
    bundled_model: ModelRecord, tmp_path: Path
) -> None:
    from lorastack.guardrails import Guard, PresidioDetector, default_policy

    raw = tmp_path / "chats.jsonl"
    # A customer per chat: a name in every chat of a dataset would be the business's own
    # (guardrails/vocabulary.py) and kept.
    raw.write_text(
        "".join(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": f"Hi, I'm {name}. {q}"},
                        {"role": "assistant", "content": f"Hello! {q[:-1]}: yes."},
                    ]
                }
            )
            + "\n"
            for name, q in zip(CUSTOMERS, QUESTIONS, strict=True)
        )
    )
    config = build_config(
        {
            "domain": "coffee-shop",
            "data": str(raw),
            "mode": "instruct",
            "training": {
                "max_steps": 2,
                "eval_steps": 1,
                "save_steps": 1,
                "max_length": 96,
                "per_device_train_batch_size": 2,
            },
        }
    )
    result = run_training(
        config,
        RunPaths(tmp_path / "raw-run"),
        ModelStore(bundled_model.path.parent),
        bundled_model.name,
        16,
        scrub=Guard(default_policy(), PresidioDetector()),
    )
    train_text = (result.paths.data / "train.jsonl").read_text()
    every_split = "".join(path.read_text() for path in result.paths.data.glob("*.jsonl"))
    assert not [name for name in CUSTOMERS if name in every_split]
    assert "<PERSON_1>" in train_text
    assert (result.paths.data / "report.json").is_file()
    assert result.steps == 2
