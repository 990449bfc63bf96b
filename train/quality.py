"""Quality you can see: brand rules and fact recall of each model's answers.

`lorastack eval` answers test questions greedily with each model it compares
(`base`, `adapter`, and the domain's `prod` version when there is one), through a
`Generate` function, and measures here:

- **rules**: each brand rule's pass rate (`lorastack/rules.py`) on the answers to
  the test questions as written;
- **fact recall**: the same questions reworded (`train/rewording.py`), the share
  of the reference answers' facts (`train/facts.py`) that the answers state. Facts
  the prompt already holds (the brand voice, the question) are left out: echoing
  the question proves nothing.

Nothing here loads a model; `train/evaluate.py` does, and passes `Generate`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lorastack.rules import BrandRule, pass_rates
from lorastack.train.facts import Fact, extract_facts, recalled
from lorastack.train.rewording import reword

DEFAULT_EXAMPLES = 24
"""Test examples answered for the rules and fact recall."""
REWORDING_SEED = 0
"""The rewording's seed: fixed, so every evaluation asks the same reworded questions."""

Generate = Callable[[str, list[Any]], list[str]]
"""(model name, prompts) -> one greedy answer per prompt."""


def text_of(content: Any) -> str:
    """The text of a completion or a message list (contents joined by spaces)."""
    if isinstance(content, list):
        return " ".join(str(m.get("content", "")) for m in content)
    return str(content)


def last_question(prompt: Any) -> str:
    """The last user turn of a chat prompt (a plain prompt is its own question)."""
    if isinstance(prompt, list):
        users = [m for m in prompt if m.get("role") == "user"]
        return text_of(users[-1:])
    return str(prompt)


def reworded_prompt(prompt: Any, seed: int = REWORDING_SEED) -> Any:
    """`prompt` with its last user turn reworded (the brand voice and history kept)."""
    if not isinstance(prompt, list):
        return reword(str(prompt), seed)
    last = max(i for i, m in enumerate(prompt) if m.get("role") == "user")
    turn = {**prompt[last], "content": reword(text_of([prompt[last]]), seed)}
    return [*prompt[:last], turn, *prompt[last + 1 :]]


def new_facts(reference: str, prompt: Any) -> list[Fact]:
    """The reference answer's facts that the prompt does not already hold."""
    said = text_of(prompt)
    facts = extract_facts(reference)
    given = recalled(facts, said)
    return [fact for fact, known in zip(facts, given, strict=True) if not known]


def recall_of(facts: Sequence[Sequence[Fact]], answers: Sequence[str]) -> float | None:
    """The share of all `facts` (one list per answer) that their answers state; None
    without any facts."""
    total = sum(len(group) for group in facts)
    if not total:
        return None
    hits = sum(sum(recalled(group, a)) for group, a in zip(facts, answers, strict=True))
    return hits / total


def rule_rates(
    rules: Sequence[BrandRule], answers: Mapping[str, Sequence[str]]
) -> dict[str, dict[str, float]]:
    """Each model's pass rate of each rule, by the rule's label."""
    return {who: pass_rates(rules, said) for who, said in answers.items()}


@dataclass
class Quality:
    """What the quality pass measured, and the answers it measured it on."""

    rules: dict[str, dict[str, float]]
    """Model -> rule label -> pass rate on the answers to the test questions."""
    fact_recall: dict[str, float | None]
    """Model -> fact recall on the reworded questions (None: the references hold no facts)."""
    answers: dict[str, list[str]]
    """Model -> its answers to the test questions as written."""
    questions: list[str]
    reworded: list[str]
    facts: int
    """The facts to recall, over all the examples."""
    seed: int
    reworded_answers: dict[str, list[str]]
    """Model -> its answers to the reworded questions."""
    example_facts: list[list[Fact]]
    """Each example's facts to recall."""

    def reworded_samples(self, count: int) -> list[dict[str, Any]]:
        """The first `count` reworded questions with facts: the facts, and each model's
        answer with the facts it missed (for the report)."""
        samples: list[dict[str, Any]] = []
        for index, facts in enumerate(self.example_facts):
            if len(samples) >= count:
                break
            if not facts:
                continue
            answers = {}
            for who, said in self.reworded_answers.items():
                found = recalled(facts, said[index])
                missed = [fact.text for fact, hit in zip(facts, found, strict=True) if not hit]
                answers[who] = {"answer": said[index], "missed": missed}
            samples.append(
                {
                    "question": self.reworded[index],
                    "facts": [fact.text for fact in facts],
                    "answers": answers,
                }
            )
        return samples

    def summary(self) -> dict[str, Any]:
        return {
            "examples": len(self.questions),
            "facts": self.facts,
            "rewording_seed": self.seed,
        }


def measure(
    examples: Sequence[dict[str, Any]],
    rules: Sequence[BrandRule],
    generate: Generate,
    models: Sequence[str],
    seed: int = REWORDING_SEED,
) -> Quality:
    """Answer `examples` (prompt/completion) as written and reworded with each of
    `models`; the rules' pass rates and the fact recall of each."""
    prompts = [example["prompt"] for example in examples]
    reworded = [reworded_prompt(prompt, seed) for prompt in prompts]
    facts = [new_facts(text_of(example["completion"]), example["prompt"]) for example in examples]
    answers = {who: generate(who, prompts) for who in models}
    reworded_answers = {who: generate(who, reworded) for who in models}
    return Quality(
        rules=rule_rates(rules, answers),
        fact_recall={who: recall_of(facts, said) for who, said in reworded_answers.items()},
        answers=answers,
        questions=[last_question(prompt) for prompt in prompts],
        reworded=[last_question(prompt) for prompt in reworded],
        facts=sum(len(group) for group in facts),
        seed=seed,
        reworded_answers=reworded_answers,
        example_facts=facts,
    )
