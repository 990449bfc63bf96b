"""`lorastack improve`: feedback -> preference run -> evaluation -> publish -> canary, for real
on the tiny trainable Llama, with the in-memory feedback store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from lorastack.models import ModelRecord, ModelStore
from lorastack.registry import AdapterRegistry
from lorastack.rules import parse_rules
from lorastack.settings import get_settings
from lorastack.train import improve as improve_module
from lorastack.train.config import ConfigError, build_config
from lorastack.train.data import DataError
from lorastack.train.gate import PublishRefused
from lorastack.train.improve import ImproveRefused, RetryOptions, improve
from lorastack.train.replay import ReplayOptions
from lorastack.train.run import RunPaths, dataset_sha256, load_run_config
from lorastack.train.trainer import run_training
from tests.fakes import write_trainable_checkpoint
from tests.unit.train.test_feedback_export import Feedback

DOMAIN = "bean-there"
VOICE = "You are Bean There."
# (question, a good answer, a bad one): words the tiny tokenizer knows.
EXCHANGES = [
    ("do you have oat milk?", "yes we do! great", "no."),
    ("when do you open?", "we open at 7 am!", "rude answer."),
    ("can i order online?", "sure you can order online!", "no. bad question"),
    ("is it cake?", "yes! great cake", "short answer."),
    ("do you have tea?", "yes we have tea and coffee!", "sorry no."),
    ("when do you close?", "we close at 9 pm!", "a long time."),
]
TINY = {  # a run of two steps that moves the weights little (the default learning rate)
    "max_steps": 2,
    "eval_steps": 2,
    "save_steps": 2,
    "logging_steps": 1,
    "per_device_train_batch_size": 2,
    "per_device_eval_batch_size": 2,
    "max_length": 64,
}


def _chat(question: str, answer: str) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
    }


@pytest.fixture
def trainable(store: ModelStore, tmp_path: Path) -> ModelRecord:
    return store.add(write_trainable_checkpoint(tmp_path / "trainable-checkpoint"), "trainable")


@pytest.fixture
def prod(
    store: ModelStore, registry: AdapterRegistry, trainable: ModelRecord, tmp_path: Path
) -> int:
    """bean-there@v1, prod: an adapter trained on the good answers, so better than the base
    model, as a published prod version is."""
    data = tmp_path / "original"
    data.mkdir()
    rows = [json.dumps(_chat(q, good)) for q, good, _ in EXCHANGES]
    for split, size in {"train": 12, "validation": 4, "test": 4}.items():
        lines = [rows[i % len(rows)] for i in range(size)]
        (data / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    config = build_config(
        {
            "domain": DOMAIN,
            "data": str(data),
            "base_model": "trainable",
            "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]},
            "training": {
                **TINY,
                "max_steps": 12,
                "eval_steps": 6,
                "save_steps": 6,
                "learning_rate": 1e-2,
            },
        }
    )
    run = run_training(config, RunPaths(tmp_path / "prod-run"), store, "trainable", 16)
    return registry.publish(
        run.paths.adapter,
        DOMAIN,
        display_name="Bean There",
        system_prompt=VOICE,
        base_model="trainable",
        dataset_sha256=dataset_sha256(data),
        training={"mode": "instruct", "data": str(data)},
        rules=parse_rules([{"max_words": 12}], "rules"),
        promote="prod",
    ).version


def rated(count: int = len(EXCHANGES)) -> Feedback:
    """For each question: a good answer up-voted, a bad one down-voted and corrected."""
    f = Feedback()
    for n, (question, good, bad) in enumerate(EXCHANGES[:count]):
        f.exchange(f"good-{n}", question, good, 10 * n, domain=DOMAIN)
        f.rate(f"good-{n}", 1, 10 * n + 1)
        f.exchange(f"bad-{n}", question, bad, 10 * n + 2, domain=DOMAIN)
        f.rate(f"bad-{n}", -1, 10 * n + 3, correction=f"{good} thanks")
    return f


def _improve(registry: AdapterRegistry, store: ModelStore, f: Feedback, **options: Any) -> Any:
    options.setdefault("training", TINY)
    return improve(DOMAIN, f.store, registry, store, get_settings(), examples=2, **options)


def test_the_loop_publishes_a_version_and_starts_a_canary(
    store: ModelStore, registry: AdapterRegistry, prod: int
) -> None:
    result = _improve(registry, store, rated(), fmt="dpo", weight=15)
    assert result.prod == prod == 1
    assert result.manifest.ref == f"{DOMAIN}@v2" and result.manifest.started_from == "bean-there@v1"
    assert result.manifest.forced is None  # through the gate, not past it
    index = registry.index(DOMAIN)
    assert index.aliases["prod"] == 1  # not promoted: the canary decides
    assert index.canary is not None and index.canary.version == 2 and index.canary.weight == 15
    assert index.canary.guard is not None  # the default guard stops a worse canary

    # The dataset is under $LORASTACK_HOME/feedback, the run under runs/, both new.
    home = get_settings().home
    assert result.export.out.parent == home / "feedback"
    assert result.export.out.name.startswith(f"{DOMAIN}-")
    assert result.run.parent == home / "runs" and (result.run / "metrics.json").is_file()
    assert json.loads((result.export.out / "export.json").read_text())["format"] == "dpo"

    names = [m.name for m in result.comparison]
    assert names == [
        "preference accuracy",
        "preference margin",
        "rule max_words",
        "fact recall",
        "test loss",
    ]
    for measure in result.comparison:
        assert measure.candidate is not None and measure.prod is not None, measure


def test_no_canary_publishes_without_one(
    store: ModelStore, registry: AdapterRegistry, prod: int
) -> None:
    result = _improve(registry, store, rated(), weight=None, replay=ReplayOptions(share=1))
    assert result.manifest.version == 2 and result.index is None
    assert registry.index(DOMAIN).canary is None
    assert result.manifest.training["mode"] == "kto"
    # kto (the default) with replay: prod's 6 distinct train chats, found by the dataset hash.
    replayed = json.loads((result.export.out / "export.json").read_text())["replay"]
    assert replayed["version"] == f"{DOMAIN}@v1" and replayed["added"] == 6
    train = (result.export.out / "train.jsonl").read_text()
    assert train.count(VOICE) == 6  # prod's voice, added to the replayed prompts only


def test_too_little_feedback_publishes_nothing(
    store: ModelStore, registry: AdapterRegistry, prod: int
) -> None:
    f = Feedback()
    f.exchange("only", "do you have oat milk?", "yes we do!", 0, domain=DOMAIN)
    f.rate("only", 1, 1)
    with pytest.raises(DataError, match="gives 1 kto row; at least 3 are needed"):
        _improve(registry, store, f)
    assert [m.version for m in registry.versions(DOMAIN)] == [1]
    assert not get_settings().runs_dir.exists()  # refused before any training


def test_a_domain_without_prod_is_refused_before_anything(
    store: ModelStore, registry: AdapterRegistry, trainable: ModelRecord
) -> None:
    with pytest.raises(ConfigError, match="bean-there has no prod version to improve"):
        _improve(registry, store, rated())
    assert not (get_settings().home / "feedback").exists()


GATE_RATE = 1e-3
"""Above this learning rate the gate of the retry tests refuses a candidate."""


@pytest.fixture
def gate_refusing_fast_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real gate, refusing besides every run trained above `GATE_RATE`.

    The tiny random model's logits are all near zero, so whether a rate of 1.0 tips its
    greedy answers over the rule depends on the CPU's rounding; the loop's retries are what
    these tests check (the gate's own decisions: test_gate.py)."""
    real = improve_module.publish_run

    def publish_run(paths: RunPaths, registry: AdapterRegistry, **options: Any) -> Any:
        rate = float(load_run_config(paths).training_fields()["learning_rate"])
        if rate > GATE_RATE:
            raise PublishRefused(DOMAIN, [f"test loss worse than for prod v1 (rate {rate:g})"])
        return real(paths, registry, **options)

    monkeypatch.setattr(improve_module, "publish_run", publish_run)


@pytest.mark.usefixtures("gate_refusing_fast_runs")
def test_a_candidate_the_gate_refuses_is_not_published(
    store: ModelStore, registry: AdapterRegistry, prod: int
) -> None:
    # Learning rates far too high for preference tuning: the gate refuses both.
    training = {**TINY, "learning_rate": 1.0}
    barely_gentler = RetryOptions(times=1, rate_factor=0.9)
    refusal = r"refusing to publish bean-there.*runs tried: 2"
    with pytest.raises(ImproveRefused, match=refusal) as refused:
        _improve(registry, store, rated(), fmt="dpo", training=training, retries=barely_gentler)
    assert any("for prod v1" in problem for problem in refused.value.problems)
    assert (refused.value.run / "metrics.json").is_file()  # evaluated, kept for a look
    attempts = refused.value.attempts
    assert [a.learning_rate for a in attempts] == [1.0, 0.9]  # tried again, more gently
    assert all(a.problems for a in attempts) and attempts[-1].run == refused.value.run
    assert attempts[0].run != attempts[1].run  # each run is a folder of its own
    assert [m.version for m in registry.versions(DOMAIN)] == [1]
    assert registry.index(DOMAIN).canary is None


@pytest.mark.usefixtures("gate_refusing_fast_runs")
def test_a_refused_candidate_is_trained_again_more_gently_and_published(
    store: ModelStore, registry: AdapterRegistry, prod: int
) -> None:
    training = {**TINY, "learning_rate": 1.0}
    gentle = RetryOptions(times=3, rate_factor=5e-5)  # 1.0, then the default rate at once
    result = _improve(registry, store, rated(), fmt="dpo", training=training, retries=gentle)
    assert [a.learning_rate for a in result.attempts] == [1.0, 5e-5]
    assert result.attempts[0].problems and not result.attempts[1].problems
    assert result.run == result.attempts[1].run
    assert result.manifest.version == 2
    assert result.manifest.training["training"]["learning_rate"] == 5e-5


@pytest.mark.usefixtures("gate_refusing_fast_runs")
def test_without_retries_the_first_refusal_ends_the_loop(
    store: ModelStore, registry: AdapterRegistry, prod: int
) -> None:
    training, no_retry = {**TINY, "learning_rate": 1.0}, RetryOptions(times=0)
    with pytest.raises(ImproveRefused) as refused:
        _improve(registry, store, rated(), fmt="dpo", training=training, retries=no_retry)
    assert [a.learning_rate for a in refused.value.attempts] == [1.0]
    with pytest.raises(ConfigError, match="rate factor"):
        RetryOptions(rate_factor=1.0)


def test_the_command_runs_the_loop_and_prints_the_comparison(
    cli: Any,
    fake_pii_detector: Any,
    monkeypatch: pytest.MonkeyPatch,
    registry: AdapterRegistry,
    prod: int,
) -> None:
    import lorastack.db

    filled = rated()
    monkeypatch.setattr(lorastack.db, "open_feedback_store", lambda settings: _opened(filled))
    bad = cli("improve", DOMAIN, "--no-canary", "--weight", "5")
    assert bad.code == 2 and "--no-canary" in bad.err
    assert cli("improve", DOMAIN, "--replay", "-1").code == 2
    assert cli("improve", DOMAIN, "--retries", "-1").code == 2
    done = cli("improve", DOMAIN, "--format", "dpo", "--weight", "20")
    assert done.code == 0, done.err
    lines = done.out.strip().splitlines()
    assert lines[-1] == f"{DOMAIN}@v2"
    assert Path(lines[-2]).parent == get_settings().runs_dir
    assert "preference accuracy" in done.out and "test loss" in done.out
    assert "candidate v2" in done.out and "prod v1" in done.out
    assert "v2 answers 20% of conversations, prod v1 the rest" in done.out
    assert registry.index(DOMAIN).canary is not None

    empty = Feedback()
    monkeypatch.setattr(lorastack.db, "open_feedback_store", lambda settings: _opened(empty))
    refused = cli("improve", DOMAIN)
    assert refused.code == 1
    assert refused.err.strip().splitlines()[-1].startswith("error: the feedback of bean-there")
    assert "Traceback" not in refused.err


@contextmanager
def _opened(f: Feedback) -> Iterator[Any]:
    """What the command's `open_feedback_store(settings)` gives: the in-memory store."""
    yield f.store
