"""Canary rollouts in the gateway: which version answers a conversation, and when to stop one.

A domain's canary (`DomainIndex.canary`, set with `lorastack adapters canary` or the admin
API) gets `weight` percent of the conversations that ask for the domain itself (`domain` or
`domain@prod`); the others go to `prod`. The choice is a stable hash of who is talking
(the client key, and the request's `user` when sent, else the conversation's first user
message), so a conversation never switches version halfway, and every gateway replica
(and a restarted one) makes the same choice. Pinned references (`domain@v3`, other
aliases) are never split.

`CanaryMonitor` compares the two sides of each running canary, as this gateway saw them
since the canary started: answers, errors, and the pass rates of the canary's brand rules
on both sides' answers. Past the canary's guard it ends the canary in the registry (which
every replica reads), logs why, and counts it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from lorastack.errors import RegistryCorrupt, RegistryError
from lorastack.manifest import DEFAULT_ALIAS, Canary, CanaryGuard, DomainIndex
from lorastack.registry import AdapterRef, AdapterRegistry
from lorastack.serve.keys import ClientKey
from lorastack.serve.metrics import Metrics
from lorastack.serve.schemas import ChatRequest, CompletionRequest
from lorastack.texts import content_texts

logger = logging.getLogger(__name__)

Side = Literal["canary", "prod"]


@dataclass(frozen=True)
class Split:
    """A request that the domain's running canary shared with prod, and where it went."""

    canary: Canary
    prod: int
    """The prod version it was shared with."""
    side: Side

    @property
    def version(self) -> int:
        return self.canary.version if self.side == "canary" else self.prod


# -- routing: pure functions ----------------------------------------------------------


def opening(request: ChatRequest | CompletionRequest) -> str:
    """What a conversation starts with: its first user message (text parts joined), or a
    text completion's prompt (the first, for a list)."""
    if isinstance(request, CompletionRequest):
        prompt = request.prompt
        return prompt if isinstance(prompt, str) else (prompt[0] if prompt else "")
    for message in request.messages:
        if message.role == "user":
            return "\n".join(content_texts(message.content))
    return ""


def conversation_identity(request: ChatRequest | CompletionRequest, key: ClientKey | None) -> str:
    """Who is talking, as the split sees it: the client key, and the request's `user` if
    sent, else the conversation's opening (the same in every later turn of the chat)."""
    user = (request.model_extra or {}).get("user")
    who = f"user:{user}" if isinstance(user, str) and user else f"opening:{opening(request)}"
    return f"{key.digest.hex() if key is not None else 'open'}\x00{who}"


def bucket(domain: str, identity: str) -> float:
    """A stable number in [0, 100) for this conversation and domain (sha256: the same in
    every process, unlike `hash`). The domain is part of it, so being in one domain's
    canary says nothing about another's."""
    digest = hashlib.sha256(f"{domain}\x00{identity}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def splits(ref: AdapterRef) -> bool:
    """Whether a reference may be shared with a canary: the bare domain or its prod alias."""
    return ref.version is None and ref.alias in (None, DEFAULT_ALIAS)


def choose(index: DomainIndex, identity: str) -> Split | None:
    """Which side of the domain's running canary this conversation is on; None when no
    canary runs (or there is no prod to share with)."""
    canary = index.canary
    prod = index.aliases.get(DEFAULT_ALIAS)
    if canary is None or prod is None:
        return None
    side: Side = "canary" if bucket(index.domain, identity) < canary.weight else "prod"
    return Split(canary, prod, side)


# -- auto-stop --------------------------------------------------------------------------


@dataclass
class Tally:
    """Answers of one version (or one side of a canary) as this gateway saw them."""

    answers: int = 0
    """Requests answered, failed ones included."""
    errors: int = 0
    """Of those, how many failed after the request reached the engine."""
    checked: int = 0
    """Answer texts (one per choice) checked against the brand rules."""
    passes: dict[str, int] = field(default_factory=dict)
    """Per rule label, how many of the checked texts passed it."""

    def add_rules(self, results: Iterable[Mapping[str, bool]]) -> None:
        for result in results:
            self.checked += 1
            for label, passed in result.items():
                self.passes[label] = self.passes.get(label, 0) + int(passed)

    @property
    def error_rate(self) -> float:
        return self.errors / self.answers if self.answers else 0.0

    def pass_rate(self, label: str) -> float:
        return self.passes.get(label, 0) / self.checked if self.checked else 0.0

    def public(self) -> dict[str, Any]:
        """As the admin API shows it; empty when nothing was seen."""
        if not self.answers:
            return {}
        return {
            "answers": self.answers,
            "errors": self.errors,
            "rules": {label: self.pass_rate(label) for label in sorted(self.passes)},
        }


def stop_reason(
    guard: CanaryGuard, canary: Tally, prod: Tally, rules: Sequence[str], version: int = 0
) -> str | None:
    """Why the canary should stop now, or None.

    Nothing is decided before each side has `min_answers` answers (and, for a rule,
    `min_answers` checked answers). Then the canary stops when its error rate exceeds
    prod's by more than `error_margin`, or when a rule's pass rate (`rules`: the canary's
    own rules, checked on both sides' answers) is below prod's by more than `rule_margin`.
    """
    enough = guard.min_answers
    if canary.answers < enough or prod.answers < enough:
        return None
    name = f"v{version}" if version else "the canary"
    if canary.error_rate - prod.error_rate > guard.error_margin:
        return (
            f"error rate {canary.error_rate:.1%} on {name} against {prod.error_rate:.1%} on "
            f"prod (margin {guard.error_margin:.1%}; {canary.answers} and {prod.answers} answers)"
        )
    if canary.checked < enough or prod.checked < enough:
        return None
    for label in rules:
        ours, theirs = canary.pass_rate(label), prod.pass_rate(label)
        if theirs - ours > guard.rule_margin:
            return (
                f"rule {label} passed by {ours:.1%} of {name}'s answers against {theirs:.1%} "
                f"of prod's (margin {guard.rule_margin:.1%}; {canary.checked} and "
                f"{prod.checked} answers checked)"
            )
    return None


@dataclass
class _Run:
    """One running canary of a domain, as this gateway counts it."""

    version: int
    started_at: datetime
    guard: CanaryGuard | None
    sides: dict[Side, Tally] = field(default_factory=lambda: {"canary": Tally(), "prod": Tally()})
    stopping: bool = False

    def same(self, canary: Canary) -> bool:
        return (self.version, self.started_at) == (canary.version, canary.started_at)


class CanaryMonitor:
    """Each domain's running canary, counted per side since this gateway first saw it.

    Counts come from the request path (answers, errors: cheap) and from the rule checks'
    worker (passes). `check` decides, and ends the canary in the registry: it takes the
    registry's file lock, so it is called off the event loop (by that worker).
    """

    def __init__(self, registry: AdapterRegistry, metrics: Metrics) -> None:
        self._registry = registry
        self._metrics = metrics
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()

    def _run(self, domain: str, split: Split) -> _Run:
        # Called with the lock held. A canary started again (even of the same version)
        # has a new start time: its counts start from zero.
        run = self._runs.get(domain)
        if run is None or not run.same(split.canary):
            run = self._runs[domain] = _Run(
                split.canary.version, split.canary.started_at, split.canary.guard
            )
        return run

    def answered(self, domain: str, split: Split, *, failed: bool = False) -> None:
        with self._lock:
            tally = self._run(domain, split).sides[split.side]
            tally.answers += 1
            tally.errors += int(failed)

    def rules_checked(
        self, domain: str, split: Split, results: Iterable[Mapping[str, bool]]
    ) -> None:
        """The canary's rules, checked on one answer of either side."""
        with self._lock:
            run = self._runs.get(domain)
            if run is not None and run.same(split.canary):  # else: a canary since replaced
                run.sides[split.side].add_rules(results)

    def sides(self, domain: str) -> dict[Side, Tally] | None:
        """The running canary's tallies (copies), if this gateway saw one for `domain`."""
        with self._lock:
            run = self._runs.get(domain)
            if run is None:
                return None
            return {
                side: Tally(t.answers, t.errors, t.checked, dict(t.passes))
                for side, t in run.sides.items()
            }

    def check(self, domain: str, rules: Sequence[str]) -> str | None:
        """Stop the domain's canary if its guard says so; return the reason when it did.

        `rules`: the labels of the canary's brand rules. Blocking (the registry's lock).
        """
        with self._lock:
            run = self._runs.get(domain)
            if run is None or run.stopping or run.guard is None:
                return None
            reason = stop_reason(
                run.guard, run.sides["canary"], run.sides["prod"], rules, run.version
            )
            if reason is None:
                return None
            run.stopping = True  # one stop per canary, however many answers follow
            version = run.version
        try:
            self._registry.end_canary(domain, reason, automatic=True, version=version)
        except RegistryError as error:  # stopped, replaced or promoted meanwhile
            logger.info("canary %s@v%d not auto-stopped: %s", domain, version, error)
            return None
        logger.warning("canary %s@v%d stopped automatically: %s", domain, version, reason)
        self._metrics.canary_auto_stopped(domain, f"v{version}")
        return reason

    def refresh_gauges(self) -> None:
        """Each domain's canary weight (0 without one), from the registry. Blocking."""
        for domain in self._registry.domains():
            try:
                canary = self._registry.index(domain).canary
            except RegistryCorrupt:
                continue  # logged where the domain is served
            self._metrics.canary_weight(domain, canary.weight if canary else 0.0)
