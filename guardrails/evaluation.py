"""Measure a guard on labelled data: per-entity precision, recall, F2, and leaks.

Recall matters more than precision for personal data (a missed card number is
worse than a masked product code), hence F2. The leak rate is the fraction of
labelled values that still appear, verbatim, in the protected text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lorastack.guardrails.entities import Direction
from lorastack.guardrails.guard import Guard


@dataclass(frozen=True)
class LabelledSpan:
    start: int
    end: int
    type: str


@dataclass(frozen=True)
class LabelledExample:
    text: str
    spans: tuple[LabelledSpan, ...]

    @classmethod
    def from_record(cls, record: Any) -> LabelledExample:
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise ValueError('expected an object with a "text" string')
        text = record["text"]
        spans = []
        for span in record.get("spans") or []:
            try:
                start, end, kind = int(span["start"]), int(span["end"]), str(span["type"])
            except (KeyError, TypeError, ValueError):
                raise ValueError('each span needs integer "start", "end" and a "type"') from None
            if not 0 <= start < end <= len(text):
                raise ValueError(f"span {start}-{end} is outside the text")
            spans.append(LabelledSpan(start, end, kind))
        return cls(text, tuple(spans))


@dataclass
class EntityScore:
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        labelled = self.true_positives + self.false_negatives
        return self.true_positives / labelled if labelled else 1.0

    @property
    def f2(self) -> float:
        p, r = self.precision, self.recall
        return 5 * p * r / (4 * p + r) if p + r else 0.0

    @property
    def support(self) -> int:
        return self.true_positives + self.false_negatives


@dataclass
class EvaluationReport:
    examples: int = 0
    entities: dict[str, EntityScore] = field(default_factory=dict)
    labelled_values: int = 0
    leaked_values: int = 0
    negative_examples: int = 0
    negatives_changed: int = 0

    @property
    def leak_rate(self) -> float:
        return self.leaked_values / self.labelled_values if self.labelled_values else 0.0

    @property
    def negative_change_rate(self) -> float:
        return self.negatives_changed / self.negative_examples if self.negative_examples else 0.0

    def overall(self) -> EntityScore:
        total = EntityScore()
        for score in self.entities.values():
            total.true_positives += score.true_positives
            total.false_positives += score.false_positives
            total.false_negatives += score.false_negatives
        return total

    def to_dict(self) -> dict[str, Any]:
        def row(score: EntityScore) -> dict[str, Any]:
            return {
                "precision": round(score.precision, 4),
                "recall": round(score.recall, 4),
                "f2": round(score.f2, 4),
                "support": score.support,
                "false_positives": score.false_positives,
            }

        return {
            "examples": self.examples,
            "entities": {name: row(s) for name, s in sorted(self.entities.items())},
            "overall": row(self.overall()),
            "leak_rate": round(self.leak_rate, 4),
            "leaked_values": self.leaked_values,
            "labelled_values": self.labelled_values,
            "negatives_changed_rate": round(self.negative_change_rate, 4),
        }


def evaluate(guard: Guard, examples: Iterable[LabelledExample]) -> EvaluationReport:
    """Scan every example with the guard's input policy and score the findings."""
    report = EvaluationReport()
    for example in examples:
        report.examples += 1
        result = guard.scan(example.text, Direction.INPUT)
        predicted = [applied.finding for applied in result.findings]
        matched_predictions: set[int] = set()
        for span in example.spans:
            score = report.entities.setdefault(span.type, EntityScore())
            hits = [
                i
                for i, p in enumerate(predicted)
                if p.type == span.type and p.start < span.end and span.start < p.end
            ]
            if hits:
                score.true_positives += 1
                matched_predictions.update(hits)
            else:
                score.false_negatives += 1
            report.labelled_values += 1
            if example.text[span.start : span.end] in result.redacted:
                report.leaked_values += 1
        for i, prediction in enumerate(predicted):
            if i not in matched_predictions:
                report.entities.setdefault(prediction.type, EntityScore()).false_positives += 1
        if not example.spans:
            report.negative_examples += 1
            if result.redacted != example.text:
                report.negatives_changed += 1
    return report
