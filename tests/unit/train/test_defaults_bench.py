"""The defaults' quality benchmark: numbers read from a run's metrics, held against goals."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from lorastack.train.config import TrainConfig, load_config
from lorastack.train.defaults_bench import (
    BrandQuality,
    BrandRuns,
    DefaultsReport,
    Goals,
    quality_of,
    render_markdown,
    with_seed,
    write_report,
)

REPO = Path(__file__).resolve().parents[3]

METRICS = {
    "test_examples": 13,
    "rules": {
        "base": {"trail-tip": 0.0, "max_sentences": 1.0},
        "adapter": {"trail-tip": 0.92, "max_sentences": 0.85},
    },
    "fact_recall": {"base": 0.1, "adapter": 0.75},
}


def test_a_brand_is_read_from_its_runs_metrics_and_each_miss_is_named() -> None:
    brand = quality_of("trailhead", 320.0, 60, Path("/runs/t"), METRICS)
    assert brand.rules == {"trail-tip": 0.92, "max_sentences": 0.85}
    assert brand.base_fact_recall == 0.1
    assert brand.misses(Goals()) == [
        "rule max_sentences: 85% < 90%",
        "fact recall 75% < 80%",
        "training 320 s > 300 s",
    ]
    assert brand.misses(Goals(rule_rate=0.8, fact_recall=0.7, train_seconds=400)) == []


def test_a_miss_never_reads_as_the_goal_itself() -> None:
    brand = quality_of("trailhead", 100.0, 60, Path("/runs/t"), METRICS)
    brand = dataclasses.replace(brand, fact_recall=0.797, rules={"trail-tip": 0.898})
    assert brand.misses(Goals()) == ["rule trail-tip: 89.8% < 90%", "fact recall 79.7% < 80%"]


def test_a_mean_just_under_the_goal_reads_the_same_in_the_summary_as_in_the_verdict() -> None:
    runs = BrandRuns((_seeded(42, 0.797, 200.0, 1.0), _seeded(7, 0.797, 200.0, 1.0)))
    assert runs.recall(Goals()) == "79.7% (79.7%-79.7%)"
    assert runs.misses(Goals()) == ["fact recall 79.7% < 80%"]
    report = DefaultsReport(Goals(), [runs])
    assert "| 79.7% (79.7%-79.7%) vs 0% | missed: fact recall 79.7% < 80% |" in render_markdown(
        report
    )
    # Whole percent where rounding cannot make a miss look met.
    assert BrandRuns((_seeded(42, 0.804, 200.0, 1.0),)).recall(Goals()) == "80%"


def test_a_rule_rate_just_under_the_goal_reads_the_same_in_its_cell_and_the_verdict() -> None:
    from lorastack.cli.train import _brand_line

    runs = BrandRuns((_seeded(42, 0.9, 200.0, 0.898), _seeded(7, 0.9, 200.0, 0.898)))
    assert runs.misses(Goals()) == ["rule trail-tip: 89.8% < 90%"]
    markdown = render_markdown(DefaultsReport(Goals(), [runs]))
    assert "trail-tip 89.8% vs 0%" in markdown
    assert "trail-tip 90%" not in markdown
    assert "rules trail-tip 89.8%;" in _brand_line(runs, Goals())


def test_a_brand_without_facts_is_not_held_to_the_fact_goal() -> None:
    brand = quality_of("router", 10.0, 5, Path("/r"), {**METRICS, "fact_recall": {}})
    assert brand.fact_recall is None
    assert not any("fact" in miss for miss in brand.misses(Goals()))


def test_the_report_shows_adapter_against_base_and_the_verdict(tmp_path: Path) -> None:
    report = DefaultsReport(Goals())
    report.add(quality_of("trailhead", 200.0, 40, tmp_path, METRICS), new_brand=True)
    markdown = render_markdown(report)
    assert "trail-tip 92% vs 0%" in markdown
    assert "75% vs 10%" in markdown
    assert "missed: rule max_sentences: 85% < 90%; fact recall 75% < 80%" in markdown
    write_report(report, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "quality.json").read_text())
    assert saved["goals"]["fact_recall"] == 0.8
    assert saved["brands"][0]["misses"] == [
        "rule max_sentences: 85% < 90%",
        "fact recall 75% < 80%",
    ]


def _seeded(seed: int, recall: float, seconds: float, tip: float) -> BrandQuality:
    metrics = {
        **METRICS,
        "rules": {"base": {"trail-tip": 0.0}, "adapter": {"trail-tip": tip}},
        "fact_recall": {"base": 0.0, "adapter": recall},
    }
    quality = quality_of("trailhead", seconds, 40, Path(f"/runs/t{seed}"), metrics)
    return dataclasses.replace(quality, seed=seed)


def test_a_brand_with_several_seeds_is_held_to_the_goals_on_their_mean(tmp_path: Path) -> None:
    report = DefaultsReport(Goals())
    report.add(_seeded(42, 0.9, 200.0, 1.0), new_brand=True)
    report.add(_seeded(7, 0.6, 260.0, 0.8), new_brand=False)
    report.add(quality_of("harborline", 100.0, 30, tmp_path, METRICS), new_brand=True)
    assert [brand.domain for brand in report.brands] == ["trailhead", "harborline"]
    trailhead = report.brands[0]
    mean = trailhead.mean()
    assert mean.fact_recall == pytest.approx(0.75)
    assert mean.rules == {"trail-tip": pytest.approx(0.9)}
    assert mean.train_seconds == pytest.approx(230.0)
    assert mean.test_examples == 26  # each seed draws its own test questions
    assert trailhead.recall_range() == (0.6, 0.9)
    # The better seed alone meets the recall goal, the mean does not.
    assert report.brands[0].runs[0].misses(Goals()) == []
    assert trailhead.misses(Goals()) == ["fact recall 75% < 80%"]
    markdown = render_markdown(report)
    assert "| trailhead | 42, 7 | 230 s |" in markdown
    assert "| 75% (60%-90%) vs 0% |" in markdown
    assert "| trailhead | 7 | 260 s | 40 | trail-tip 80% vs 0% | 60% vs 0% | /runs/t7 |" in markdown
    write_report(report, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "quality.json").read_text())["brands"][0]
    assert saved["seeds"] == [42, 7]
    assert saved["fact_recall"] == pytest.approx(0.75)
    assert saved["fact_recall_range"] == [0.6, 0.9]
    assert saved["misses"] == ["fact recall 75% < 80%"]
    assert [run["fact_recall"] for run in saved["runs"]] == [0.9, 0.6]
    assert saved["runs"][0]["misses"] == []


def test_a_brand_without_runs_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one run"):
        BrandRuns(())


def test_a_seed_overrides_the_configs_training_seed_and_keeps_its_other_fields() -> None:
    config = load_config(REPO / "tests" / "data" / "harborline" / "train.yaml")
    config = with_seed(config, 42)
    seeded = with_seed(config, 7)
    assert seeded.training_fields()["seed"] == 7
    assert config.training_fields()["seed"] == 42
    assert seeded.rules == config.rules and seeded.data == config.data


@pytest.mark.parametrize("brand", ["trailhead", "harborline"])
def test_the_test_brands_follow_their_own_rules(brand: str) -> None:
    config = load_config(REPO / "tests" / "data" / brand / "train.yaml")
    rows = [json.loads(line) for line in (REPO / config.data).read_text().splitlines()]
    replies = [row["messages"][-1]["content"] for row in rows]
    assert len(replies) >= 100
    for rule in config.rules:
        assert all(rule.passes(reply) for reply in replies), rule.label
    assert {row["messages"][0]["content"] for row in rows} == {config.system_prompt}


def test_eval_defaults_measures_each_brand_and_reports_the_misses(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    measured: list[str] = []

    def measure(config: TrainConfig, *args: Any) -> BrandQuality:
        measured.append(config.domain)
        return quality_of(config.domain, 120.0, 30, tmp_path / "run", METRICS)

    monkeypatch.setenv("LORASTACK_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("lorastack.cli.train.measure_brand", measure)
    monkeypatch.setattr("lorastack.cli.train.guard_for", lambda domain: None)
    trailhead = REPO / "tests" / "data" / "trailhead" / "train.yaml"
    done = cli("eval-defaults", str(trailhead), "--out", str(tmp_path / "out"))
    assert done.code == 0, done.err
    assert measured == ["trailhead"]
    assert "missed: rule max_sentences: 85% < 90%; fact recall 75% < 80%" in done.out
    assert done.out.strip().splitlines()[-1] == str(tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "quality.json").read_text())
    assert [brand["domain"] for brand in saved["brands"]] == ["trailhead"]


def test_eval_defaults_trains_each_brand_once_per_seed(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recalls = {42: 0.9, 7: 0.6}

    def measure(config: TrainConfig, *args: Any) -> BrandQuality:
        seed = config.training_fields()["seed"]
        return _seeded(seed, recalls[seed], 200.0, 1.0)

    monkeypatch.setenv("LORASTACK_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("lorastack.cli.train.measure_brand", measure)
    monkeypatch.setattr("lorastack.cli.train.guard_for", lambda domain: None)
    trailhead = REPO / "tests" / "data" / "trailhead" / "train.yaml"
    out = str(tmp_path / "out")
    done = cli("eval-defaults", str(trailhead), "--seed", "42", "--seed", "7", "--out", out)
    assert done.code == 0, done.err
    assert "fact recall 75% (60%-90%), mean of seeds 42, 7;" in done.out
    assert "missed: fact recall 75% < 80%" in done.out
    saved = json.loads((tmp_path / "out" / "quality.json").read_text())
    assert saved["brands"][0]["seeds"] == [42, 7]
    # Two configs of one domain (a candidate beside the defaults) stay two brands.
    both = cli("eval-defaults", str(trailhead), str(trailhead), "--seed", "42", "--out", out)
    assert both.code == 0, both.err
    saved = json.loads((tmp_path / "out" / "quality.json").read_text())
    assert [len(brand["runs"]) for brand in saved["brands"]] == [1, 1]
    twice = cli("eval-defaults", str(trailhead), "--seed", "7", "--seed", "7", "--out", out)
    assert twice.code != 0
    assert "--seed given twice" in twice.err


def test_eval_defaults_names_a_brand_whose_data_is_missing(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path
) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("domain: nowhere\ndata: /no/such/file.jsonl\n")
    done = cli("eval-defaults", str(config), "--out", str(tmp_path / "out"))
    assert done.code != 0
    assert "nowhere: data /no/such/file.jsonl does not exist" in done.err
    assert "Traceback" not in done.err
