"""The defaults' quality benchmark: numbers read from a run's metrics, held against goals."""

from __future__ import annotations

import json
from pathlib import Path

from lorastack.train.config import load_config
from lorastack.train.defaults_bench import (
    DefaultsReport,
    Goals,
    quality_of,
    render_markdown,
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


def test_a_brand_without_facts_is_not_held_to_the_fact_goal() -> None:
    brand = quality_of("router", 10.0, 5, Path("/r"), {**METRICS, "fact_recall": {}})
    assert brand.fact_recall is None
    assert not any("fact" in miss for miss in brand.misses(Goals()))


def test_the_report_shows_adapter_against_base_and_the_verdict(tmp_path: Path) -> None:
    report = DefaultsReport(Goals(), [quality_of("trailhead", 200.0, 40, tmp_path, METRICS)])
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


def test_the_test_brand_follows_its_own_rules_and_states_its_facts() -> None:
    config = load_config(REPO / "tests" / "data" / "trailhead" / "train.yaml")
    rows = [json.loads(line) for line in (REPO / config.data).read_text().splitlines()]
    replies = [row["messages"][-1]["content"] for row in rows]
    assert len(replies) >= 100
    for rule in config.rules:
        assert all(rule.passes(reply) for reply in replies), rule.label
    assert {row["messages"][0]["content"] for row in rows} == {config.system_prompt}
