"""The quality gate of `lorastack publish`: what a run must show before it is published.

Read from the run's `metrics.json` (`lorastack eval`), a candidate is refused when:

- its test loss is not lower than the base model's;
- the domain's `prod` version is not the one it was evaluated against (promoted,
  rolled back or removed since): the comparison below would be stale;
- against that `prod` version, measured in the same evaluation: its test loss is
  higher by more than `loss_tolerance` (relative), or any brand rule's pass rate,
  its fact recall or (sft) its exact match is lower by more than `rate_tolerance`
  (absolute). A prod version trained on another base model is not compared.

`gate_decision` returns the problems, one line each; no problems means publish.
`--force --reason "..."` publishes past them and records the reason in the manifest.
"""

from __future__ import annotations

from typing import Any

from lorastack.settings import PublishSettings
from lorastack.train.config import ConfigError

# Rates and losses equal up to float noise are equal (0.9 - 0.05 is 0.8500000000000001).
_EPSILON = 1e-9
DEFAULT_FORCE_REASON = "no reason given (publish --force without --reason)"


class PublishRefused(ConfigError):
    """The quality gate refused a run; `problems` says what is worse, one line each."""

    def __init__(self, domain: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            f"refusing to publish {domain}: {'; '.join(problems)}; "
            "publish anyway with --force --reason '...'"
        )


def _points(rate: float) -> str:
    return f"{round(rate * 100, 1):g}"


def _worse_rate(what: str, candidate: Any, prod: Any, ref: str, tolerance: float) -> str | None:
    if not isinstance(candidate, int | float) or not isinstance(prod, int | float):
        return None
    if candidate >= prod - tolerance - _EPSILON:
        return None
    return (
        f"{what} {candidate:.0%} vs {prod:.0%} for {ref} ({_points(prod - candidate)} points "
        f"lower; tolerance {_points(tolerance)})"
    )


def _prod_changed(measured: Any, current: int | None) -> str | None:
    version = measured.get("version") if isinstance(measured, dict) else None
    if version == current:
        return None
    against = f"v{version}" if version is not None else "no prod version"
    now = f"prod is v{current}" if current is not None else "the domain has no prod version"
    return f"{now} now, but the run was evaluated against {against}; run `lorastack eval` again"


def gate_decision(
    metrics: dict[str, Any], current_prod: int | None, tolerances: PublishSettings
) -> list[str]:
    """What keeps the evaluated run from being published, one line each (none: publish).

    `current_prod` is the domain's `prod` version now (None: it has none).
    """
    problems = []
    adapter, base = metrics.get("adapter", {}), metrics.get("base", {})
    if not metrics.get("better_than_base"):
        nan = float("nan")
        problems.append(
            f"the adapter does worse than the base model on the test split "
            f"(loss {adapter.get('loss', nan):.4f} vs {base.get('loss', nan):.4f})"
        )
    prod = metrics.get("prod")
    changed = _prod_changed(prod, current_prod)
    if changed is not None:
        return [*problems, changed]
    if not isinstance(prod, dict) or "loss" not in prod:
        return problems  # no prod, or one on another base model: nothing to compare
    ref = f"prod v{prod['version']}"
    limit = prod["loss"] * (1 + tolerances.loss_tolerance)
    if adapter.get("loss", float("inf")) > limit + _EPSILON:
        above = adapter["loss"] / prod["loss"] - 1 if prod["loss"] else float("inf")
        problems.append(
            f"test loss {adapter['loss']:.4f} vs {prod['loss']:.4f} for {ref} "
            f"({above:.1%} higher; tolerance {_points(tolerances.loss_tolerance)}%)"
        )
    rates = tolerances.rate_tolerance
    candidate_rules = metrics.get("rules", {}).get("adapter", {})
    for label, prod_rate in metrics.get("rules", {}).get("prod", {}).items():
        problem = _worse_rate(
            f"rule `{label}` passes", candidate_rules.get(label), prod_rate, ref, rates
        )
        problems += [problem] if problem else []
    recall = metrics.get("fact_recall", {})
    for what, candidate, against in (
        ("fact recall", recall.get("adapter"), recall.get("prod")),
        ("exact match", adapter.get("exact_match"), prod.get("exact_match")),
    ):
        problem = _worse_rate(what, candidate, against, ref, rates)
        problems += [problem] if problem else []
    return problems
