"""The guard: one object per configured policy, used by serve and train.

`find` detects; `scan` detects and applies a direction's actions;
`protect_messages` masks a conversation before the model sees it;
`protect_output` and `stream` make the model's answer safe to show;
`restore` puts a user's own masked values back. An answer is also checked for
a copy of the domain's system prompt, when the caller gives its `LeakIndex`;
`screen_injection` looks for prompt-injection patterns in what users sent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lorastack.errors import GuardUnavailable
from lorastack.guardrails.audit import AuditEvent, AuditSink
from lorastack.guardrails.detector import Detector
from lorastack.guardrails.entities import Action, Direction, Finding
from lorastack.guardrails.injection import find_in_texts
from lorastack.guardrails.leaks import LeakIndex, blocked_error, with_leaks
from lorastack.guardrails.normalize import NormalizedText, normalize
from lorastack.guardrails.policy import GuardPolicy
from lorastack.guardrails.screening import ScreeningPool, default_pool
from lorastack.guardrails.vault import PLACEHOLDER, Vault
from lorastack.texts import map_message, message_texts

if TYPE_CHECKING:
    from lorastack.guardrails.streaming import StreamRedactor

logger = logging.getLogger(__name__)

INJECTION = "PROMPT_INJECTION"
"""How audit events name the injection screen's findings (counted by kind of pattern)."""


@dataclass(frozen=True)
class AppliedFinding:
    """A finding and the action the policy took on it."""

    finding: Finding
    action: Action

    @property
    def type(self) -> str:
        return self.finding.type


@dataclass
class ScanResult:
    """A text after one direction's policy: the safe text and what was found."""

    text: str
    redacted: str
    findings: list[AppliedFinding]
    failed_open: bool = False

    @property
    def blocked_types(self) -> list[str]:
        return sorted({f.type for f in self.findings if f.action is Action.BLOCK})

    def counts(self) -> dict[str, int]:
        return _count_types(self.findings)


def _count_types(findings: Iterable[AppliedFinding]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for applied in findings:
        counts[applied.type] = counts.get(applied.type, 0) + 1
    return counts


@dataclass
class ProtectedTexts:
    """Texts as the model may see them, in order, and what was masked in them."""

    texts: list[str]
    findings: list[AppliedFinding] = field(default_factory=list)

    @property
    def masked_count(self) -> int:
        return count_masked(self.findings)


@dataclass
class ProtectedMessages:
    """A conversation as the model may see it, and what was masked in it."""

    messages: list[dict[str, Any]]
    findings: list[AppliedFinding] = field(default_factory=list)

    @property
    def masked_count(self) -> int:
        return count_masked(self.findings)


def count_masked(findings: Iterable[AppliedFinding]) -> int:
    """How many values were masked or redacted (what a user may be told, as a number)."""
    return sum(1 for f in findings if f.action in (Action.MASK, Action.REDACT))


def _resolve_overlaps(findings: Iterable[Finding]) -> list[Finding]:
    """Keep the strongest of overlapping findings (then the longest), in text order."""
    ranked = sorted(findings, key=lambda f: (-f.score, -(f.end - f.start), f.start))
    kept: list[Finding] = []
    for finding in ranked:
        if not any(finding.overlaps(other) for other in kept):
            kept.append(finding)
    return sorted(kept)


class Guard:
    """Applies one policy with one detector, reporting to an optional audit sink.

    The detector is the caller's: a process loads its models once and shares
    it between guards (the gateway's one per domain, the command line's one).
    """

    def __init__(
        self,
        policy: GuardPolicy,
        detector: Detector,
        audit: AuditSink | None = None,
        domain: str | None = None,
        pool: ScreeningPool | None = None,
    ) -> None:
        self.policy = policy
        # Detection runs on a screening thread so that a hung detector can be timed
        # out (fail closed); a caller already on one (the gateway) runs it inline.
        self.pool = pool if pool is not None else default_pool()
        self.detector = detector
        self.audit = audit
        self.domain = domain
        self._types = policy.entity_types()
        self._prepared = False
        self._custom = policy.custom_entities()

    def allowing(self, values: Sequence[str]) -> Guard:
        """A guard like this one whose policy also leaves `values` unmasked (a domain's
        vocabulary, guardrails/vocabulary.py); itself when that changes nothing."""
        policy = self.policy.allowing(values)
        if policy is self.policy:
            return self
        allowing = Guard(policy, self.detector, self.audit, self.domain, self.pool)
        allowing._prepared = self._prepared
        return allowing

    # -- detection -----------------------------------------------------------

    def prepare(self) -> None:
        """Load the detector's models now, outside any request's time limit."""
        if not self._prepared:
            self.detector.prepare()
            self._prepared = True

    def _detect(self, texts: Sequence[str]) -> list[list[Finding]]:
        self.prepare()  # loading models is not detection: it must not count as a timeout
        try:
            # Each text gets the policy's time limit: a batch's deadline grows with it.
            return self.pool.call(
                lambda: self.detector.detect_many(texts, self._types, self._custom),
                self.policy.timeout_s * max(1, len(texts)),
            )
        except GuardUnavailable:
            raise
        except Exception as error:
            # The type only: a traceback or message could quote the text being scanned.
            logger.error("PII detection failed: %s", type(error).__name__)
            raise GuardUnavailable(f"PII detection failed: {type(error).__name__}") from None

    def find(self, text: str) -> list[Finding]:
        """Entities in `text` above their thresholds, with offsets into `text`.

        Raises `GuardUnavailable` when detection fails: the caller must not
        pass the text on (`scan` and the stream redactor apply `fail_open`).
        """
        return self.find_many([text])[0]

    def find_many(self, texts: Sequence[str]) -> list[list[Finding]]:
        """`find` for each of `texts`, detected together (a dataset's records: the NER
        runs over a batch at once). Raises `GuardUnavailable` as `find` does."""
        normalized = [normalize(text) for text in texts]
        raw = self._detect([n.text for n in normalized])
        kept = zip(texts, normalized, raw, strict=True)
        return [self._kept(text, norm, found) for text, norm, found in kept]

    def _kept(self, text: str, normalized: NormalizedText, raw: list[Finding]) -> list[Finding]:
        """The detector's findings above the policy's thresholds, mapped back onto `text`."""
        mapped = []
        for finding in raw:
            if finding.score < self.policy.threshold(finding.type):
                continue
            start, end = normalized.to_original(finding.start, finding.end)
            if start >= end:
                continue
            if self.policy.is_allowed_value(normalized.text[finding.start : finding.end]):
                continue
            mapped.append(Finding(start, end, finding.type, finding.score))
        mapped = self.without_allowed(text, mapped)
        # Placeholders are our own tokens, never personal data.
        placeholders = [
            Finding(m.start(), m.end(), "_PLACEHOLDER", 2.0) for m in PLACEHOLDER.finditer(text)
        ]
        resolved = _resolve_overlaps([*mapped, *placeholders])
        return [f for f in resolved if f.type != "_PLACEHOLDER"]

    def without_allowed(self, text: str, findings: Sequence[Finding]) -> list[Finding]:
        """`findings` in `text` less those whose value the policy allows."""
        return [f for f in findings if not self.policy.is_allowed_value(text[f.start : f.end])]

    def find_leaks(self, text: str, leaks: LeakIndex | None, from_char: int = 0) -> list[Finding]:
        """Spans of an answer copying the system prompt `leaks` indexes (none when the
        policy allows leaks). No model runs: this never fails, not even where PII
        detection failed open."""
        if leaks is None or self.policy.system_prompt_leak == "allow":
            return []
        return leaks.find(text, from_char)

    # -- actions -------------------------------------------------------------

    def apply(
        self,
        text: str,
        findings: Sequence[Finding],
        direction: Direction,
        vault: Vault | None = None,
    ) -> tuple[str, list[AppliedFinding]]:
        """Replace each finding as the policy says; `vault` issues mask placeholders."""
        vault = vault if vault is not None else Vault()
        pieces: list[str] = []
        applied: list[AppliedFinding] = []
        position = 0
        for finding in sorted(findings):
            action = self.policy.action(finding.type, direction)
            applied.append(AppliedFinding(finding, action))
            if action is Action.ALLOW:
                continue
            pieces.append(text[position : finding.start])
            value = text[finding.start : finding.end]
            if action is Action.MASK:
                restorable = direction is Direction.INPUT
                pieces.append(vault.placeholder_for(finding.type, value, restorable))
            else:  # redact, and block (the text is refused, but never kept raw)
                pieces.append(f"<{finding.type}>")
            position = finding.end
        pieces.append(text[position:])
        return "".join(pieces), applied

    def scan(
        self,
        text: str,
        direction: Direction = Direction.INPUT,
        vault: Vault | None = None,
        request_id: str | None = None,
        leaks: LeakIndex | None = None,
    ) -> ScanResult:
        """Detect and apply one direction's actions; report blocks, don't raise them.

        `leaks`: for an answer, the domain's system prompt to look for in it."""
        return self.scan_found(
            text, self.find_or_fail_open(text), direction, vault, request_id, leaks
        )

    def scan_found(
        self,
        text: str,
        findings: list[Finding] | None,
        direction: Direction = Direction.INPUT,
        vault: Vault | None = None,
        request_id: str | None = None,
        leaks: LeakIndex | None = None,
    ) -> ScanResult:
        """`scan` of a text whose entities were found already (`find_many_or_fail_open`;
        None: detection failed open)."""
        leaked = self.find_leaks(text, leaks)
        found = with_leaks(findings or [], leaked) if leaked else findings or []
        redacted, applied = self.apply(text, found, direction, vault)
        result = ScanResult(text, redacted, applied, failed_open=findings is None)
        self.record(result.findings, direction, request_id, failed_open=result.failed_open)
        return result

    def find_or_fail_open(self, text: str) -> list[Finding] | None:
        """`find`, or None when detection failed and the policy fails open (logged loudly)."""
        found = self.find_many_or_fail_open([text])
        return None if found is None else found[0]

    def find_many_or_fail_open(self, texts: Sequence[str]) -> list[list[Finding]] | None:
        """`find_many`, or None when detection failed and the policy fails open."""
        try:
            return self.find_many(texts)
        except GuardUnavailable as error:
            if not self.policy.fail_open:
                raise
            logger.error(
                "FAIL OPEN: domain %s passes text unscanned because %s",
                self.domain or self.policy.name,
                error,
            )
            return None

    def record(
        self,
        findings: Sequence[AppliedFinding],
        direction: Direction,
        request_id: str | None,
        failed_open: bool = False,
    ) -> None:
        """Send one audit event (types, counts, actions, scores; never values)."""
        if self.audit is None or not (findings or failed_open):
            return
        max_scores: dict[str, float] = {}
        actions: dict[str, str] = {}
        for applied in findings:
            max_scores[applied.type] = max(max_scores.get(applied.type, 0.0), applied.finding.score)
            actions[applied.type] = applied.action.value
        self.audit.record(
            AuditEvent(
                request_id=request_id,
                domain=self.domain,
                direction=direction.value,
                counts=_count_types(findings),
                actions=actions,
                max_scores={k: round(v, 3) for k, v in max_scores.items()},
                blocked=any(a.action is Action.BLOCK for a in findings),
                failed_open=failed_open,
            )
        )

    # -- prompt injection ------------------------------------------------------

    def screen_injection(self, texts: Sequence[str], request_id: str | None = None) -> list[str]:
        """The kinds of prompt-injection pattern in `texts` (the user's messages, never the
        domain's own prompt), logged and audited by kind, never the text; empty when none,
        or when the policy does not screen. Raises nothing: the caller applies `block`."""
        if self.policy.prompt_injection == "allow" or not texts:
            return []
        kinds = find_in_texts(texts)
        if not kinds:
            return []
        action = self.policy.prompt_injection
        logger.warning(
            "prompt injection %s for domain %s: %s (request %s)",
            "blocked" if action == "block" else "flagged",
            self.domain or self.policy.name,
            ", ".join(kinds),
            request_id,
        )
        if self.audit is not None:
            self.audit.record(
                AuditEvent(
                    request_id=request_id,
                    domain=self.domain,
                    direction=Direction.INPUT.value,
                    counts={INJECTION: len(kinds)},
                    actions={INJECTION: action},
                    blocked=action == "block",
                )
            )
        return kinds

    # -- conversations ---------------------------------------------------------

    def protect_text(self, text: str, vault: Vault, request_id: str | None = None) -> ScanResult:
        """Mask one input text (a prompt); raise `PiiBlocked` if the policy blocks it."""
        vault.reserve_literals(text)
        result = self.scan(text, Direction.INPUT, vault, request_id)
        if result.blocked_types:
            raise blocked_error(result.blocked_types, "input")
        return result

    def protect_texts(
        self, texts: Sequence[str], vault: Vault, request_id: str | None = None
    ) -> ProtectedTexts:
        """Mask the input texts of one request with one vault, in order.

        The same value gets the same placeholder in every text. Raises
        `PiiBlocked` naming the entity types if any text holds blocked data.
        """
        for text in texts:
            vault.reserve_literals(text)
        # Detected together: one NER pass over the batch (a conversation's turns), one
        # deadline that grows with it, as each text would have had alone.
        found = self.find_many_or_fail_open(texts) if texts else []
        each: Sequence[list[Finding] | None] = [None] * len(texts) if found is None else found
        masked: list[str] = []
        findings: list[AppliedFinding] = []
        blocked: set[str] = set()
        for text, text_found in zip(texts, each, strict=True):
            result = self.scan_found(text, text_found, Direction.INPUT, vault, request_id)
            masked.append(result.redacted)
            findings.extend(result.findings)
            blocked.update(result.blocked_types)
        if blocked:
            raise blocked_error(sorted(blocked), "input")
        return ProtectedTexts(masked, findings)

    def protect_messages(
        self, messages: Sequence[dict[str, Any]], vault: Vault, request_id: str | None = None
    ) -> ProtectedMessages:
        """Mask every message of a chat conversation, keeping its structure.

        Earlier assistant turns are masked too: they were shown restored, so
        they hold the user's values. Raises `PiiBlocked` naming the entity
        types if any message holds blocked data.
        """
        texts = [text for message in messages for text in message_texts(message)]
        protected = self.protect_texts(texts, vault, request_id)
        replacements = iter(protected.texts)
        masked = [map_message(message, lambda _: next(replacements)) for message in messages]
        return ProtectedMessages(masked, protected.findings)

    def protect_output(
        self,
        text: str,
        vault: Vault,
        request_id: str | None = None,
        *,
        restore: bool = True,
        leaks: LeakIndex | None = None,
    ) -> ScanResult:
        """Make a whole answer safe to show: output actions, then the user's values restored.

        `restore=False` leaves the user's values masked (what may be stored of the answer);
        `restore` on that text is then what the user would be shown. `leaks`: the domain's
        system prompt, redacted as `<SYSTEM_PROMPT>` where copied (or `SystemPromptLeaked`).
        """
        result = self.scan(text, Direction.OUTPUT, vault, request_id, leaks)
        if result.blocked_types:
            raise blocked_error(result.blocked_types, "output")
        if restore:
            result.redacted = self.restore(result.redacted, vault)
        return result

    def restore(self, text: str, vault: Vault) -> str:
        """Put back the values this conversation's vault masked, if the policy says so."""
        return vault.restore(text) if self.policy.restore_output else text

    def stream(
        self,
        vault: Vault,
        request_id: str | None = None,
        *,
        restore: bool = True,
        leaks: LeakIndex | None = None,
    ) -> StreamRedactor:
        """A `StreamRedactor` for one streamed answer (`restore`, `leaks`: as `protect_output`)."""
        from lorastack.guardrails.streaming import StreamRedactor

        return StreamRedactor(self, vault, request_id, restore=restore, leaks=leaks)
