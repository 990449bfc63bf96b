"""How each version's served answers fare: counts, brand-rule checks, canary comparisons.

The request path only counts (an answer, an error: a few integers under a lock) and
hands the finished answer's texts to `check`, which queues the brand-rule check on one
worker thread and returns at once. Nothing here can delay an answer:

- a whole answer is queued by a background task that runs after its body was sent;
  a streamed one after its last event (`[DONE]`) was sent;
- the queue is bounded (`max_pending` answers): past it, an answer is left unchecked
  and counted in `lorastack_brand_rule_checks_dropped_total`, so a flood costs a
  bounded amount of memory and never slows the requests themselves;
- a version without rules and no canary running costs no queueing at all.

The worker checks each choice's text against the answering version's rules (the metrics,
and the admin API's per-version counts), and, while a canary runs, against the canary's
rules on both sides for the `CanaryMonitor`, which may then stop the canary (a registry
write, so also off the event loop).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from lorastack.errors import LorastackError
from lorastack.registry import AdapterRegistry
from lorastack.rules import BrandRule, check_answer
from lorastack.serve.canary import CanaryMonitor, Split, Tally
from lorastack.serve.metrics import Metrics
from lorastack.serve.targets import Target

logger = logging.getLogger(__name__)

MAX_PENDING_CHECKS = 256
"""Answers waiting for their rule check, at most; later ones are dropped (and counted)."""


@dataclass(frozen=True)
class _Answer:
    domain: str
    version: int
    rules: tuple[BrandRule, ...]
    split: Split | None
    texts: tuple[str, ...]
    """Each choice's answer text, as the client received it."""


class AnswerQuality:
    """This gateway's view of each version's answers since it started."""

    def __init__(
        self,
        registry: AdapterRegistry,
        metrics: Metrics,
        *,
        max_pending: int = MAX_PENDING_CHECKS,
    ) -> None:
        self._registry = registry
        self._metrics = metrics
        self.monitor = CanaryMonitor(registry, metrics)
        self._max_pending = max_pending
        self._pending = 0
        self._lock = threading.Lock()
        self._versions: dict[tuple[str, int], Tally] = {}
        self._rules_cache: dict[tuple[str, int], tuple[BrandRule, ...]] = {}
        # One thread: checks are cheap, and one at a time keeps them from competing with
        # the event loop for the interpreter.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rule-checks")

    # -- the request path: counts only ------------------------------------------------

    def answered(self, target: Target, *, failed: bool = False) -> None:
        """A request of a domain version ended: answered, or failed at the engine's end."""
        if target.domain is None or target.manifest is None:
            return
        with self._lock:
            tally = self._versions.setdefault((target.domain, target.manifest.version), Tally())
            tally.answers += 1
            tally.errors += int(failed)
        if target.split is not None:
            self.monitor.answered(target.domain, target.split, failed=failed)
            if failed:  # an error can decide a stop too; the worker looks
                self._submit(target.domain, self._decide, target.domain, target.split)

    def check(self, target: Target, texts: list[str]) -> None:
        """Queue the brand-rule check of a finished answer; returns at once."""
        if target.domain is None or target.manifest is None:
            return
        rules = tuple(target.manifest.rules)
        if not rules and target.split is None:
            return
        answer = _Answer(target.domain, target.manifest.version, rules, target.split, tuple(texts))
        self._submit(target.domain, self._check, answer)

    def _submit(self, domain: str, job: Any, *args: Any) -> None:
        with self._lock:
            if self._pending >= self._max_pending:
                full = True
            else:
                full = False
                self._pending += 1
        if full:
            self._metrics.rule_check_dropped(domain)
            return

        def run() -> None:
            try:
                job(*args)
            except Exception:  # a bug must not kill the worker, nor quote an answer
                logger.exception("rule check for %s failed", domain)
            finally:
                with self._lock:
                    self._pending -= 1

        try:
            self._worker.submit(run)
        except RuntimeError:  # shutting down
            with self._lock:
                self._pending -= 1

    # -- the worker ---------------------------------------------------------------

    def _check(self, answer: _Answer) -> None:
        version = f"v{answer.version}"
        results = [check_answer(answer.rules, text) for text in answer.texts]
        for result in results:
            self._metrics.rules_checked(answer.domain, version, result)
        with self._lock:
            tally = self._versions.setdefault((answer.domain, answer.version), Tally())
            tally.add_rules(results)
        split = answer.split
        if split is None:
            return
        if split.side != "canary":  # prod's answers, measured by the canary's rules
            canary_rules = self._rules_of(answer.domain, split.canary.version)
            results = [check_answer(canary_rules, text) for text in answer.texts]
        self.monitor.rules_checked(answer.domain, split, results)
        self._decide(answer.domain, split)

    def _decide(self, domain: str, split: Split) -> None:
        labels = [rule.label for rule in self._rules_of(domain, split.canary.version)]
        self.monitor.check(domain, labels)

    def _rules_of(self, domain: str, version: int) -> tuple[BrandRule, ...]:
        """A version's rules; a version never changes, so they are read once."""
        key = (domain, version)
        if key not in self._rules_cache:
            try:
                rules = tuple(self._registry.manifest(domain, version).rules)
            except LorastackError as error:
                logger.warning("rules of %s@v%d unreadable: %s", domain, version, error)
                return ()
            self._rules_cache[key] = rules
        return self._rules_cache[key]

    # -- reading ------------------------------------------------------------------

    def serving(self, domain: str, version: int) -> dict[str, Any]:
        """One version's answers, errors and rule pass rates here; empty when none."""
        with self._lock:
            tally = self._versions.get((domain, version))
            return tally.public() if tally is not None else {}

    def close(self) -> None:
        """Stop the worker: checks still queued are dropped, a running one finishes."""
        self._worker.shutdown(wait=True, cancel_futures=True)
