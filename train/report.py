"""The evaluation's human side: `report.md`, `curves.png` and `quality.png` in a run.

`train/evaluate.py` measures and writes `metrics.json`; this module turns those
metrics into a report a person reads: losses, brand rules and fact recall of
base, candidate and prod side by side, and a few answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lorastack.rules import BrandRule
from lorastack.train.config import TrainConfig
from lorastack.train.run import CURVES_FILE, RunPaths, read_jsonl

QUALITY_FILE = "quality.png"
MODELS = ("base", "adapter", "prod")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_curves(paths: RunPaths) -> None:
    """Training and validation loss by step, from the run's log."""
    plt = _pyplot()
    entries = read_jsonl(paths.log) if paths.log.is_file() else []
    train = [(e["step"], e["loss"]) for e in entries if "loss" in e]
    validation = [(e["step"], e["eval_loss"]) for e in entries if "eval_loss" in e]
    figure, axes = plt.subplots(figsize=(6, 3.5))
    if train:
        axes.plot(*zip(*train, strict=True), label="training loss")
    if validation:
        axes.plot(*zip(*validation, strict=True), marker="o", label="validation loss")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    if train or validation:
        axes.legend()
    figure.tight_layout()
    figure.savefig(paths.curves, dpi=100)
    plt.close(figure)


def _measured(results: dict[str, Any]) -> list[str]:
    """The models the quality pass answered with, in display order."""
    rules, recall = results.get("rules", {}), results.get("fact_recall", {})
    return [who for who in MODELS if who in rules or who in recall]


def write_quality_plot(path: Path, results: dict[str, Any]) -> bool:
    """A bar chart: each rule's pass rate and the fact recall, one bar per model.
    False (nothing written) when nothing was measured."""
    models = _measured(results)
    rules: dict[str, dict[str, float]] = results.get("rules", {})
    recall: dict[str, float | None] = results.get("fact_recall", {})
    labels = list(rules.get("adapter", {}))
    if any(recall.get(who) is not None for who in models):
        labels.append("fact recall")
    if not models or not labels:
        return False
    plt = _pyplot()
    width = 0.8 / len(models)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.2 * len(labels) + 2), 3.5))
    for index, who in enumerate(models):
        values = [
            (recall.get(who) if label == "fact recall" else rules.get(who, {}).get(label)) or 0.0
            for label in labels
        ]
        offsets = [x + (index - (len(models) - 1) / 2) * width for x in range(len(labels))]
        axes.bar(offsets, values, width, label=_name(who, results))
    axes.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("share of answers / facts")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def _name(who: str, results: dict[str, Any]) -> str:
    if who == "prod":
        return f"prod (v{results['prod']['version']})"
    return who


def _rate(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, int | float) else "n/a"


def _quality_lines(results: dict[str, Any], rules: Sequence[BrandRule], plotted: bool) -> list[str]:
    models = _measured(results)
    if not models:
        return []
    quality = results.get("quality", {})
    about = (
        f"Answers to {quality.get('examples', '?')} test questions (greedy, with the brand "
        "voice). Rules: the share of answers that follow each rule."
    )
    if "fact_recall" in results:
        about += (
            f" Fact recall: the same questions reworded (seed {quality.get('rewording_seed')}),"
            f" the share of the reference answers' {quality.get('facts')} facts (those the"
            " question does not give away) that the answers state."
        )
    lines = [
        "## Brand rules and facts",
        "",
        about,
        "",
        "| | " + " | ".join(_name(who, results) for who in models) + " |",
        "|---|" + "---|" * len(models),
    ]
    for rule in rules:
        cells = [_rate(results["rules"].get(who, {}).get(rule.label)) for who in models]
        described = f"rule `{rule.label}` ({rule.describe()})".replace("|", "\\|")
        lines.append(f"| {described} | " + " | ".join(cells) + " |")
    if "fact_recall" in results:
        cells = [_rate(results["fact_recall"].get(who)) for who in models]
        lines.append("| fact recall | " + " | ".join(cells) + " |")
    lines.append("")
    if plotted:
        lines += [f"![brand rules and fact recall]({QUALITY_FILE})", ""]
    return lines


def render(
    config: TrainConfig,
    results: dict[str, Any],
    side_by_side: list[dict[str, str]],
    plotted: bool = False,
    reworded: Sequence[dict[str, Any]] = (),
) -> str:
    """The run's `report.md`."""
    adapter, base, prod = results["adapter"], results["base"], results.get("prod")
    exact = "exact_match" in adapter
    lines = [
        f"# {config.domain}: {config.mode} adapter on {config.base_model}",
        "",
        f"Test split: {results['test_examples']} examples.",
        "",
        "| model | loss | perplexity |" + (" exact match |" if exact else ""),
        "|---|---|---|" + ("---|" if exact else ""),
    ]
    rows = [("base", base), ("adapter", adapter)]
    if isinstance(prod, dict) and "loss" in prod:
        rows.append((f"prod (v{prod['version']})", prod))
    for name, row in rows:
        cells = f"| {name} | {row['loss']:.4f} | {row['perplexity']:.2f} |"
        if exact:
            cells += f" {_rate(row.get('exact_match'))} |"
        lines.append(cells)
    verdict = "better than" if results["better_than_base"] else "NOT better than"
    lines += ["", f"The adapter is **{verdict}** the base model on test loss."]
    if isinstance(prod, dict) and "skipped" in prod:
        lines.append(f"prod (v{prod['version']}) was not compared: {prod['skipped']}.")
    elif prod is None:
        lines.append("The domain has no prod version to compare with.")
    lines += ["", *_quality_lines(results, config.rules, plotted)]
    lines += [f"![training and validation loss]({CURVES_FILE})", ""]
    for sample in side_by_side:
        lines += [f"**Q:** {sample['question']}", ""]
        lines += [f"- {_name(who, results)}: {sample[who]}" for who in MODELS if who in sample]
        lines.append("")
    return "\n".join(lines + _reworded_lines(results, reworded))


def _reworded_lines(results: dict[str, Any], samples: Sequence[dict[str, Any]]) -> list[str]:
    """Answers to reworded questions, each with the facts it missed: where recall is lost."""
    if not samples:
        return []
    lines = ["## Facts on reworded questions", ""]
    for sample in samples:
        lines += [f"**Q:** {sample['question']}", "", f"Facts: {', '.join(sample['facts'])}", ""]
        for who in MODELS:
            answer = sample["answers"].get(who)
            if answer is None:
                continue
            missed = answer["missed"]
            verdict = f"missed {', '.join(missed)}" if missed else "all facts"
            lines.append(f"- {_name(who, results)} ({verdict}): {answer['answer']}")
        lines.append("")
    return lines
