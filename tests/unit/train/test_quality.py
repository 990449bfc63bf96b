"""The quality pass with a scripted `Generate`: rules on the answers as asked, fact recall
on the answers to the reworded questions, the prod version chosen, and the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lorastack.models import ModelRecord, ModelStore
from lorastack.registry import AdapterRegistry
from lorastack.rules import parse_rules
from lorastack.train import report
from lorastack.train.config import build_config
from lorastack.train.evaluate import prod_to_compare
from lorastack.train.quality import last_question, measure, new_facts, reworded_prompt
from tests.fakes import write_adapter, write_base_checkpoint

VOICE = "You are the barista of Bean There on Elm Road."
CUP = "\N{HOT BEVERAGE}"


def _example(question: str, answer: str) -> dict[str, Any]:
    return {
        "prompt": [{"role": "system", "content": VOICE}, {"role": "user", "content": question}],
        "completion": [{"role": "assistant", "content": answer}],
    }


EXAMPLES = [
    _example("When do you open?", f"From 7am to 6pm, Monday to Friday! {CUP}"),
    _example("How much is a latte?", f"A latte is $4.20, oat milk free. {CUP}"),
]
RULES = parse_rules([{"ends_with": CUP, "name": "cup"}, {"max_words": 6}])


class ScriptedModels:
    """Answers by model and by whether the question was reworded; records every call."""

    def __init__(self, answers: dict[tuple[str, bool], list[str]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, list[Any]]] = []

    def __call__(self, who: str, prompts: list[Any]) -> list[str]:
        self.calls.append((who, prompts))
        reworded = last_question(prompts[0]) != last_question(EXAMPLES[0]["prompt"])
        return self.answers[(who, reworded)]


def test_rules_on_answers_as_asked_and_recall_on_the_reworded_ones() -> None:
    knows = ["Open 7am to 6pm, Monday to Friday.", "It is $4.20."]
    voice = [f"Come by! {CUP}", f"Lovely! {CUP}"]
    models = ScriptedModels(
        {
            # The adapter sounds right but knows nothing once the question is reworded.
            ("adapter", False): voice,
            ("adapter", True): ["No idea.", "No idea."],
            # Prod knows the facts whatever the wording, in a long, voiceless answer.
            ("prod", False): [f"{knows[0]} Also more words here", knows[1]],
            ("prod", True): knows,
            ("base", False): ["Hello there my dear old friend, welcome.", "Hi"],
            ("base", True): ["Monday!", "Hi"],
        }
    )
    quality = measure(EXAMPLES, RULES, models, ["adapter", "base", "prod"], seed=4)
    assert quality.rules == {
        "adapter": {"cup": 1.0, "max_words": 1.0},
        "base": {"cup": 0.0, "max_words": 0.5},
        "prod": {"cup": 0.0, "max_words": 0.5},
    }
    # 7am, 6pm, Monday, Friday, $4.2: five facts (Bean There and Elm Road are in the voice).
    assert quality.facts == 5
    assert quality.fact_recall == {"adapter": 0.0, "base": pytest.approx(1 / 5), "prod": 1.0}
    assert quality.answers["adapter"] == voice
    assert quality.questions == ["When do you open?", "How much is a latte?"]
    assert quality.reworded == [last_question(reworded_prompt(e["prompt"], 4)) for e in EXAMPLES]
    assert quality.summary() == {"examples": 2, "facts": 5, "rewording_seed": 4}
    # Each model asked twice, all questions at once: as written, then reworded.
    assert [who for who, _ in models.calls] == ["adapter", "base", "prod"] * 2
    assert all(len(prompts) == 2 for _, prompts in models.calls)
    voiced = [
        prompt[0] == {"role": "system", "content": VOICE} for _, p in models.calls for prompt in p
    ]
    assert voiced == [True] * 12


def test_reworded_samples_show_each_answer_and_the_facts_it_missed() -> None:
    models = ScriptedModels(
        {
            ("adapter", False): ["-", "-"],
            ("adapter", True): ["Open 7am to 6pm on Monday.", "It is $4.20."],
            ("base", False): ["-", "-"],
            ("base", True): ["No idea.", "No idea."],
        }
    )
    quality = measure(EXAMPLES, RULES, models, ["adapter", "base"], seed=4)
    first, second = quality.reworded_samples(5)
    assert first["question"] == quality.reworded[0]
    assert first["facts"] == ["7am", "6pm", "Monday", "Friday"]
    assert first["answers"]["adapter"] == {
        "answer": "Open 7am to 6pm on Monday.",
        "missed": ["Friday"],
    }
    assert first["answers"]["base"]["missed"] == first["facts"]
    assert second["answers"]["adapter"]["missed"] == []
    assert quality.reworded_samples(1) == [first]


def test_facts_the_prompt_already_gives_do_not_count() -> None:
    example = _example(
        "Are you open on Christmas Day?", "Not on Christmas Day, back on Boxing Day."
    )
    keys = [
        fact.key
        for fact in new_facts("Not on Christmas Day, back on Boxing Day.", example["prompt"])
    ]
    assert keys == ["boxing day"]


def test_prod_is_compared_only_on_the_same_base_model(
    registry: AdapterRegistry, store: ModelStore, fake_base: ModelRecord, tmp_path: Path
) -> None:
    assert prod_to_compare(None, "coffee", fake_base) == (None, None)
    assert prod_to_compare(registry, "coffee", fake_base) == (None, None)
    registry.publish(write_adapter(tmp_path / "v1", "tiny"), "coffee")  # not promoted
    assert prod_to_compare(registry, "coffee", fake_base) == (None, None)
    registry.promote("coffee", 1)
    assert prod_to_compare(registry, "coffee", fake_base) == (
        {"version": 1},
        registry.version_dir("coffee", 1),
    )
    other_checkpoint = write_base_checkpoint(tmp_path / "other-checkpoint")
    (other_checkpoint / "extra.json").write_text("{}")  # other weights, another hash
    other = store.add(other_checkpoint, "other")
    prod, folder = prod_to_compare(registry, "coffee", other)
    assert folder is None
    assert prod == {"version": 1, "skipped": "trained on base model tiny, not on other"}


def _results() -> dict[str, Any]:
    return {
        "mode": "instruct",
        "test_examples": 2,
        "adapter": {"loss": 1.0, "perplexity": 2.7},
        "base": {"loss": 2.0, "perplexity": 7.4},
        "prod": {"version": 3, "loss": 1.1, "perplexity": 3.0},
        "better_than_base": True,
        "quality": {"examples": 2, "facts": 5, "rewording_seed": 0},
        "rules": {
            "base": {"cup": 0.0, "max_words": 0.5},
            "adapter": {"cup": 1.0, "max_words": 1.0},
            "prod": {"cup": 0.5, "max_words": 1.0},
        },
        "fact_recall": {"base": 0.2, "adapter": 0.4, "prod": 0.6},
    }


def test_the_report_shows_base_adapter_and_prod_side_by_side(tmp_path: Path) -> None:
    config = build_config(
        {
            "domain": "coffee",
            "data": "/data",
            "rules": [{"ends_with": CUP, "name": "cup"}, {"starts_with": "Hi|Hello"}],
        }
    )
    results = _results()
    results["rules"] = {
        who: {"cup": 1.0, "starts_with": 0.5} for who in ("base", "adapter", "prod")
    }
    sample = {"question": "Oat milk?", "base": "Milk.", "adapter": f"Yes! {CUP}", "prod": "Yes."}
    text = report.render(config, results, [sample], plotted=True)
    assert "| prod (v3) | 1.1000 | 3.00 |" in text
    assert "| | base | adapter | prod (v3) |" in text
    assert f"| rule `cup` (ends_with: {CUP}) | 100% | 100% | 100% |" in text
    assert "| rule `starts_with` (starts_with: Hi\\|Hello) | 50% | 50% | 50% |" in text
    assert "| fact recall | 20% | 40% | 60% |" in text
    assert f"![brand rules and fact recall]({report.QUALITY_FILE})" in text
    assert f"- adapter: Yes! {CUP}" in text and "- prod (v3): Yes." in text
    assert "Facts on reworded questions" not in text

    reworded = {
        "question": "Quick question: how much is a latte?",
        "facts": ["$4.20"],
        "answers": {
            "adapter": {"answer": "It is $4.20.", "missed": []},
            "prod": {"answer": "It is $5.", "missed": ["$4.20"]},
        },
    }
    text = report.render(config, results, [sample], plotted=True, reworded=[reworded])
    section = text[text.index("## Facts on reworded questions") :]
    assert "**Q:** Quick question: how much is a latte?" in section
    assert "- adapter (all facts): It is $4.20." in section
    assert "- prod (v3) (missed $4.20): It is $5." in section


def test_the_quality_plot_is_written_when_something_was_measured(tmp_path: Path) -> None:
    plot = tmp_path / report.QUALITY_FILE
    assert report.write_quality_plot(plot, _results())
    assert plot.read_bytes().startswith(b"\x89PNG")
    nothing = {"adapter": {"loss": 1.0}, "base": {"loss": 2.0}, "prod": None}
    assert not report.write_quality_plot(tmp_path / "none.png", nothing)
    assert not (tmp_path / "none.png").exists()
