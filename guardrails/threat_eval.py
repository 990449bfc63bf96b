"""Measure the injection screen and the system prompt leak check on labelled sets.

`evaluate_injection` reads records `{"text", "label": "injection" | "benign",
"category", "split"}` (guardrails/data/injection_eval.jsonl) and reports, per split,
precision, recall and F1 of `find_injection`, with the misses and false alarms counted
by category. `evaluate_leaks` reads `{"system_prompt", "answer", "leaked": bool}`
(guardrails/data/leak_eval.jsonl) and reports the detection rate and false positives of
`LeakIndex`. Reports hold counts and indices, never a message's text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lorastack.guardrails.injection import find_injection
from lorastack.guardrails.leaks import MIN_WORDS, LeakIndex


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


@dataclass
class Detection:
    """Counts of one binary detector on one set of examples."""

    true_pos: int = 0
    false_pos: int = 0
    false_neg: int = 0
    true_neg: int = 0
    missed: Counter[str] = field(default_factory=Counter)
    """Positives not detected, by category."""
    false_alarms: Counter[str] = field(default_factory=Counter)
    """Negatives detected, by category."""

    def add(self, actual: bool, predicted: bool, category: str) -> None:
        if actual and predicted:
            self.true_pos += 1
        elif actual:
            self.false_neg += 1
            self.missed[category] += 1
        elif predicted:
            self.false_pos += 1
            self.false_alarms[category] += 1
        else:
            self.true_neg += 1

    @property
    def precision(self) -> float:
        return _ratio(self.true_pos, self.true_pos + self.false_pos)

    @property
    def recall(self) -> float:
        return _ratio(self.true_pos, self.true_pos + self.false_neg)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def false_positive_rate(self) -> float:
        return _ratio(self.false_pos, self.false_pos + self.true_neg)

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": round(self.precision, 3),
            "recall": round(self.recall, 3),
            "f1": round(self.f1, 3),
            "false_positive_rate": round(self.false_positive_rate, 3),
            "positives": self.true_pos + self.false_neg,
            "negatives": self.false_pos + self.true_neg,
            "true_pos": self.true_pos,
            "false_pos": self.false_pos,
            "false_neg": self.false_neg,
            "missed": dict(sorted(self.missed.items())),
            "false_alarms": dict(sorted(self.false_alarms.items())),
        }


def _field(record: Mapping[str, Any], name: str, kind: type, number: int) -> Any:
    value = record.get(name)
    if not isinstance(value, kind):
        raise ValueError(f"record {number}: `{name}` must be a {kind.__name__}")
    return value


def evaluate_injection(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Precision, recall and F1 of the injection screen per split, and over all records."""
    splits: dict[str, Detection] = {}
    overall = Detection()
    for number, record in enumerate(records, start=1):
        text = _field(record, "text", str, number)
        label = _field(record, "label", str, number)
        if label not in ("injection", "benign"):
            raise ValueError(f"record {number}: `label` must be injection or benign")
        category = str(record.get("category") or "other")
        split = str(record.get("split") or "all")
        predicted = bool(find_injection(text))
        splits.setdefault(split, Detection()).add(label == "injection", predicted, category)
        overall.add(label == "injection", predicted, category)
    return {
        "splits": {name: d.to_dict() for name, d in sorted(splits.items())},
        "overall": overall.to_dict(),
    }


def evaluate_leaks(
    records: Iterable[Mapping[str, Any]], min_words: int = MIN_WORDS
) -> dict[str, Any]:
    """How many leaking answers are caught (detection rate) and how many others are flagged
    (false positives), with runs of `min_words` words."""
    result = Detection()
    for number, record in enumerate(records, start=1):
        prompt = _field(record, "system_prompt", str, number)
        answer = _field(record, "answer", str, number)
        leaked = _field(record, "leaked", bool, number)
        category = str(record.get("category") or "other")
        found = bool(LeakIndex(prompt, min_words).find(answer))
        result.add(leaked, found, category)
    report = result.to_dict()
    report["detection_rate"] = report.pop("recall")
    report["min_words"] = min_words
    return report
