"""Reworded questions: the same for the same seed, always different, facts kept."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from lorastack.train.facts import extract_facts
from lorastack.train.quality import reworded_prompt
from lorastack.train.rewording import (
    CLAUSE_PROBABILITY,
    QUESTION_TEMPLATES,
    STATEMENT_TEMPLATES,
    reword,
)

ROOT = Path(__file__).resolve().parents[3]
QUESTIONS = [
    "What time do you open on weekdays?",
    "How do I change the invoice numbering?",
    "If I cancel my plan, do I get a refund for the 30-day trial?",
    "Can I pay by card when I order online?",
    "I was charged £4.50 twice on 12 March. Can you refund me?",
    "Is LedgerLine Payroll included in Premium for 10 users?",
    "when do u close today its tuesday",
    "My latte was cold this morning.",
]


def _demo_questions() -> list[str]:
    questions = []
    for name in ("bean-there", "ledgerline"):
        with (ROOT / "train" / "demo" / name / "chat.jsonl").open(encoding="utf-8") as handle:
            for line in handle:
                messages = json.loads(line)["messages"]
                questions += [m["content"] for m in messages if m["role"] == "user"]
    return questions


def _facts(text: str) -> set[tuple[str, str]]:
    return {(fact.kind, fact.key) for fact in extract_facts(text)}


def _words(text: str) -> list[str]:
    return text.lower().split()


@pytest.mark.parametrize("question", QUESTIONS)
def test_the_same_seed_gives_the_same_rewording(question: str) -> None:
    assert reword(question, 7) == reword(question, 7)
    assert reword(question) == reword(question, 0)


def test_seeds_give_different_rewordings() -> None:
    assert len({reword(QUESTIONS[2], seed) for seed in range(10)}) > 2


@pytest.mark.parametrize("question", QUESTIONS)
def test_the_wording_changes_but_the_facts_stay(question: str) -> None:
    for seed in range(5):
        reworded = reword(question, seed)
        assert _words(reworded) != _words(question)
        assert _facts(question) <= _facts(reworded), reworded


def test_every_demo_question_keeps_its_facts() -> None:
    for question in _demo_questions():
        reworded = reword(question)
        assert _words(reworded) != _words(question)
        assert _facts(question) <= _facts(reworded), (question, reworded)


def test_a_template_frames_every_rewording() -> None:
    for question in QUESTIONS:
        reworded = reword(question)
        templates = QUESTION_TEMPLATES if "?" in question else STATEMENT_TEMPLATES
        heads = [t.split("{")[0] for t in templates if not t.startswith("{")]
        tails = [t.split("}")[-1] for t in templates if t.startswith("{")]
        assert any(reworded.startswith(h) for h in heads) or any(
            reworded.endswith(t) for t in tails
        )


def test_clauses_swap_places_and_names_keep_their_case() -> None:
    seeds = range(40)
    leading = {reword("If I cancel, do I get a refund?", seed) for seed in seeds}
    assert any("Do I get a refund if I cancel?" in r for r in leading)
    trailing = {reword("Can LedgerLine export when I am offline?", seed) for seed in seeds}
    assert any("When I am offline, can LedgerLine export?" in r for r in trailing)
    assert all("LedgerLine" in r for r in trailing)
    story = {reword("I was charged twice. Can you refund me?", seed) for seed in seeds}
    assert any("Can you refund me? I was charged twice." in r for r in story)
    assert 0 < CLAUSE_PROBABILITY < 1


def test_synonyms_are_swapped_in_lower_case_words_only() -> None:
    swapped = {reword("How do I delete a problem invoice?", seed) for seed in range(30)}
    assert any("remove" in r for r in swapped)
    assert any("issue" in r for r in swapped)
    kept = {reword("Is Problem Solver a product of yours?", seed) for seed in range(30)}
    assert all("Problem Solver" in r for r in kept)  # a name, not the word "problem"


def test_the_prompt_keeps_its_voice_and_history() -> None:
    prompt = [
        {"role": "system", "content": "You are Bean There's barista."},
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hey! What can I get you?"},
        {"role": "user", "content": "Do you have oat milk?"},
    ]
    reworded = reworded_prompt(prompt, seed=3)
    assert reworded[:3] == prompt[:3]
    assert reworded[3]["role"] == "user"
    assert reworded[3]["content"] == reword("Do you have oat milk?", 3)
    assert prompt[3]["content"] == "Do you have oat milk?"  # the original is untouched


def test_the_rewording_does_not_use_the_global_random_state() -> None:
    random.seed(1)
    first = reword(QUESTIONS[0], 5)
    random.seed(2)
    assert reword(QUESTIONS[0], 5) == first
