"""The publish gate: its decisions against base and prod, and `publish_run` applying it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from lorastack.manifest import CaptureSetting
from lorastack.models import ModelRecord
from lorastack.registry import AdapterRegistry
from lorastack.settings import PublishSettings
from lorastack.train.config import ConfigError, build_config
from lorastack.train.evaluate import publish_run
from lorastack.train.gate import DEFAULT_FORCE_REASON, PublishRefused, gate_decision
from lorastack.train.run import RunPaths
from tests.fakes import write_adapter

TOLERANCES = PublishSettings(loss_tolerance=0.02, rate_tolerance=0.05)


def _metrics(
    loss: float = 1.0,
    prod_loss: float | None = 1.0,
    prod_version: int | None = 3,
    rules: dict[str, float] | None = None,
    prod_rules: dict[str, float] | None = None,
    recall: float | None = 0.5,
    prod_recall: float | None = 0.5,
    base_loss: float = 2.0,
) -> dict[str, Any]:
    prod: dict[str, Any] | None = None
    if prod_version is not None:
        prod = {"version": prod_version}
        if prod_loss is not None:
            prod["loss"] = prod_loss
    metrics: dict[str, Any] = {
        "adapter": {"loss": loss},
        "base": {"loss": base_loss},
        "prod": prod,
        "better_than_base": loss < base_loss,
        "rules": {"adapter": rules or {}, "base": {}},
        "fact_recall": {"adapter": recall, "base": 0.0},
    }
    if prod is not None and prod_loss is not None:
        metrics["rules"]["prod"] = prod_rules or {}
        metrics["fact_recall"]["prod"] = prod_recall
    return metrics


def test_a_candidate_as_good_as_prod_passes() -> None:
    rates = {"closing": 0.9, "no_emoji": 1.0}
    metrics = _metrics(rules=rates, prod_rules=rates)
    assert gate_decision(metrics, 3, TOLERANCES) == []


def test_worse_than_the_base_model_is_refused_with_both_losses() -> None:
    (problem,) = gate_decision(_metrics(loss=3.0, base_loss=2.0, prod_loss=3.0), 3, TOLERANCES)
    assert problem == (
        "the adapter does worse than the base model on the test split (loss 3.0000 vs 2.0000)"
    )


@pytest.mark.parametrize(
    ("loss", "refused"),
    [(1.02, False), (1.019, False), (1.0201, True), (1.5, True), (0.5, False)],
)
def test_loss_against_prod_up_to_the_relative_tolerance(loss: float, refused: bool) -> None:
    problems = gate_decision(_metrics(loss=loss, prod_loss=1.0), 3, TOLERANCES)
    assert bool(problems) is refused
    if refused:
        (problem,) = problems
        assert problem.startswith(f"test loss {loss:.4f} vs 1.0000 for prod v3 (")
        assert problem.endswith("higher; tolerance 2%)")


@pytest.mark.parametrize(
    ("rate", "refused"),
    [(0.85, False), (0.86, False), (0.849, True), (0.5, True), (1.0, False)],
)
def test_each_rule_against_prod_up_to_the_absolute_tolerance(rate: float, refused: bool) -> None:
    metrics = _metrics(
        rules={"closing": rate, "no_emoji": 1.0}, prod_rules={"closing": 0.9, "no_emoji": 1.0}
    )
    problems = gate_decision(metrics, 3, TOLERANCES)
    assert bool(problems) is refused
    if refused:
        (problem,) = problems
        assert problem.startswith(f"rule `closing` passes {rate:.0%} vs 90% for prod v3 (")
        assert problem.endswith("points lower; tolerance 5)")


def test_every_worse_rule_is_named() -> None:
    metrics = _metrics(rules={"a": 0.1, "b": 0.2, "c": 1.0}, prod_rules={"a": 1, "b": 1, "c": 1})
    problems = gate_decision(metrics, 3, TOLERANCES)
    assert [p.split(" passes")[0] for p in problems] == ["rule `a`", "rule `b`"]
    assert "90 points lower" in problems[0] and "80 points lower" in problems[1]


@pytest.mark.parametrize(
    ("recall", "refused"), [(0.45, False), (0.4499, True), (None, False), (0.9, False)]
)
def test_fact_recall_against_prod(recall: float | None, refused: bool) -> None:
    problems = gate_decision(_metrics(recall=recall, prod_recall=0.5), 3, TOLERANCES)
    assert bool(problems) is refused
    if refused:
        assert problems[0].startswith("fact recall 45% vs 50% for prod v3 (5 points lower")


def test_exact_match_against_prod() -> None:
    metrics = _metrics()
    metrics["adapter"]["exact_match"] = 0.5
    metrics["prod"]["exact_match"] = 0.7
    (problem,) = gate_decision(metrics, 3, TOLERANCES)
    assert problem.startswith("exact match 50% vs 70% for prod v3 (20 points lower")


def test_wider_tolerances_let_more_through() -> None:
    metrics = _metrics(loss=1.1, rules={"a": 0.7}, prod_rules={"a": 0.9})
    assert len(gate_decision(metrics, 3, TOLERANCES)) == 2
    loose = PublishSettings(loss_tolerance=0.1, rate_tolerance=0.2)
    assert gate_decision(metrics, 3, loose) == []


@pytest.mark.parametrize(
    ("evaluated", "current", "message"),
    [
        (3, 4, "prod is v4 now, but the run was evaluated against v3; run `lorastack eval`"),
        (None, 4, "prod is v4 now, but the run was evaluated against no prod version"),
        (3, None, "the domain has no prod version now, but the run was evaluated against v3"),
    ],
)
def test_a_prod_that_changed_since_the_evaluation_is_refused(
    evaluated: int | None, current: int | None, message: str
) -> None:
    # Even a candidate far better than the prod it was measured against.
    metrics = _metrics(loss=0.1, prod_version=evaluated)
    (problem,) = gate_decision(metrics, current, TOLERANCES)
    assert problem.startswith(message)


def test_metrics_from_before_the_gate_knew_prod() -> None:
    metrics = {"adapter": {"loss": 1.0}, "base": {"loss": 2.0}, "better_than_base": True}
    assert gate_decision(metrics, None, TOLERANCES) == []
    assert "evaluated against no prod version" in gate_decision(metrics, 1, TOLERANCES)[0]


def test_a_prod_on_another_base_model_is_not_compared() -> None:
    metrics = _metrics(loss=5.0, base_loss=6.0, prod_loss=None)
    metrics["prod"]["skipped"] = "trained on base model other, not on tiny"
    assert gate_decision(metrics, 3, TOLERANCES) == []
    assert gate_decision(metrics, 4, TOLERANCES)[0].startswith("prod is v4 now")


# -- publish_run applies the gate ------------------------------------------------------


def _run(tmp_path: Path, metrics: dict[str, Any]) -> RunPaths:
    paths = RunPaths(tmp_path / "run")
    paths.data.mkdir(parents=True)
    for split in ("train", "validation", "test"):
        (paths.data / f"{split}.jsonl").write_text('{"text": "x"}\n')
    config = build_config(
        {
            "domain": "coffee",
            "data": str(paths.data),
            "base_model": "tiny",
            "rules": [{"no_emoji": True}, {"max_words": 40, "name": "short"}],
        }
    )
    paths.config.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    write_adapter(paths.adapter, "tiny")
    paths.metrics.write_text(json.dumps(metrics))
    return paths


def _promote_a_prod(registry: AdapterRegistry, tmp_path: Path) -> int:
    manifest = registry.publish(write_adapter(tmp_path / "prod", "tiny"), "coffee", promote="prod")
    return manifest.version


def test_publishing_records_the_rules_and_no_force(
    registry: AdapterRegistry, tmp_path: Path, fake_base: ModelRecord
) -> None:
    prod = _promote_a_prod(registry, tmp_path)
    paths = _run(tmp_path, _metrics(prod_version=prod))
    manifest = publish_run(paths, registry, promote=True)
    assert [rule.label for rule in manifest.rules] == ["no_emoji", "short"]
    assert manifest.vocabulary == []  # its data has no report
    assert manifest.forced is None
    assert "gate" not in manifest.metrics
    assert registry.index("coffee").aliases["prod"] == manifest.version


def test_publishing_records_the_names_its_data_kept_and_those_of_the_version_it_tuned(
    registry: AdapterRegistry, tmp_path: Path, fake_base: ModelRecord
) -> None:
    start = registry.publish(
        write_adapter(tmp_path / "start", "tiny"), "coffee", vocabulary=["Galley Cafe", "Leeds"]
    )
    paths = _run(tmp_path, _metrics(prod_version=None))
    report = {"pii": {"scrubbed": True, "vocabulary": ["Leeds", "Skerry Point"]}}
    (paths.data / "report.json").write_text(json.dumps(report))
    assert publish_run(paths, registry).vocabulary == ["Leeds", "Skerry Point"]

    config = yaml.safe_load(paths.config.read_text())
    paths.config.write_text(
        yaml.safe_dump({**config, "lora": None, "mode": "kto", "from_adapter": start.ref})
    )
    assert publish_run(paths, registry).vocabulary == ["Leeds", "Skerry Point", "Galley Cafe"]


def test_a_refusal_is_one_typed_line_and_publishes_nothing(
    registry: AdapterRegistry, tmp_path: Path, fake_base: ModelRecord
) -> None:
    prod = _promote_a_prod(registry, tmp_path)
    paths = _run(tmp_path, _metrics(loss=1.5, prod_version=prod))
    with pytest.raises(PublishRefused) as raised:
        publish_run(paths, registry, promote=True)
    message = str(raised.value)
    assert isinstance(raised.value, ConfigError)
    assert "\n" not in message
    assert message.startswith("refusing to publish coffee: test loss 1.5000 vs 1.0000 for prod v1")
    assert message.endswith("publish anyway with --force --reason '...'")
    assert raised.value.problems == gate_decision(
        _metrics(loss=1.5, prod_version=prod), 1, TOLERANCES
    )
    assert [m.version for m in registry.versions("coffee")] == [prod]
    # Tolerances come from the caller (the settings): wide enough, it passes.
    loose = PublishSettings(loss_tolerance=0.6)
    assert publish_run(paths, registry, tolerances=loose).version == prod + 1


def test_force_publishes_past_the_gate_and_records_why(
    registry: AdapterRegistry, tmp_path: Path, fake_base: ModelRecord
) -> None:
    _promote_a_prod(registry, tmp_path)
    paths = _run(tmp_path, _metrics(prod_version=None))  # prod v1 appeared since
    with pytest.raises(PublishRefused, match="run `lorastack eval` again"):
        publish_run(paths, registry)
    manifest = publish_run(paths, registry, force=True, reason="hotfix for the menu")
    assert manifest.forced == "hotfix for the menu"
    assert manifest.metrics["gate"]["overridden"][0].startswith("prod is v1 now")
    stored = registry.manifest("coffee", manifest.version)
    assert stored.forced == "hotfix for the menu"
    assert publish_run(paths, registry, force=True).forced == DEFAULT_FORCE_REASON


def test_an_unevaluated_run_is_refused(
    registry: AdapterRegistry, tmp_path: Path, fake_base: ModelRecord
) -> None:
    paths = _run(tmp_path, {})
    paths.metrics.unlink()
    with pytest.raises(ConfigError, match="has not been evaluated"):
        publish_run(paths, registry, force=True)


def test_publish_sets_the_domains_capture(  # type: ignore[no-untyped-def]
    cli, registry: AdapterRegistry, tmp_path: Path, fake_base: ModelRecord
) -> None:
    prod = _promote_a_prod(registry, tmp_path)
    paths = _run(tmp_path, _metrics(prod_version=prod))
    result = cli("publish", str(paths.root), "--capture", "--retention-days", "14")
    assert result.code == 0, result.err
    assert registry.index("coffee").capture == CaptureSetting(enabled=True, retention_days=14)
