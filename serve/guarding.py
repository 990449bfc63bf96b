"""The guardrails in the request path: one guard per domain, and each request's screening.

`GuardProvider` keeps one guard per domain, following policy files as they
change. `Screening` is one request's use of it: the vault that maps the
user's values to placeholders, and every scan of the request run on the
gateway's screening pool (one thread hop each, under the policy's deadline),
with what was found counted in the metrics.

Each scan of a request's texts (its prompt's, a whole answer's) is a span of its own
(tracing.py: how many values were masked, redacted or blocked, of which entity types); a
stream's pieces are not, they are counted in the request's totals (`found`).

Before masking, the user's own messages (not the domain's system prompt, not the client's
system message) are screened for prompt-injection patterns: the policy flags them (logged,
counted, audited) or blocks the request. Every answer text is also checked for a copy of
the domain's system prompt (its manifest's), redacted or blocked by the policy.

An answer's text is `Released` twice: as the user is shown it (their own values
restored) and as the engine wrote it with personal data masked (what capture stores,
serve/capture.py), from one scan.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple, TypeVar

from opentelemetry.trace import Span, Tracer

from lorastack.errors import PiiBlocked, PromptInjectionBlocked
from lorastack.guardrails import (
    Action,
    AppliedFinding,
    AuditSink,
    Detector,
    Direction,
    Guard,
    PolicyStore,
    ProtectedTexts,
    ScanResult,
    StreamRedactor,
    Vault,
)
from lorastack.guardrails.leaks import LeakIndex, leak_index
from lorastack.guardrails.screening import ScreeningBusy, ScreeningPool, ScreeningTimeout
from lorastack.serve import tracing
from lorastack.serve.metrics import Metrics
from lorastack.serve.targets import Target

T = TypeVar("T")

logger = logging.getLogger(__name__)


class Released(NamedTuple):
    """A piece of an answer made safe."""

    shown: str
    """What the user gets: the output policy applied, their own values restored."""
    masked: str
    """The same before their values came back (`<EMAIL_ADDRESS_1>`): what may be stored."""


MAX_GUARDS = 256
"""Guards kept (a domain's, and each served version's with its vocabulary), least recently
used dropped first: a guard is cheap to build again, and without a bound a long-lived
gateway would keep one for every version it ever served."""


class GuardProvider:
    """Guards by domain; a policy file edited, added or removed on disk takes effect on the
    next request. A domain version's vocabulary (names its training data kept, in its
    manifest) is allowed by its guard: its prompts look as they did in training."""

    def __init__(
        self,
        policies: PolicyStore,
        detector: Detector,
        pool: ScreeningPool,
        audit: AuditSink | None,
        metrics: Metrics,
        tracer: Tracer = tracing.NO_TRACER,
    ) -> None:
        self._policies = policies
        self._detector = detector
        self.pool = pool
        self._audit = audit
        self._metrics = metrics
        self._tracer = tracer
        # By domain and vocabulary: a canary's two versions may keep different names.
        # Least recently used first, so versions no longer served leave the cache.
        self._guards: OrderedDict[
            tuple[str | None, tuple[str, ...]], tuple[tuple[Path, float] | None, Guard]
        ] = OrderedDict()
        self._lock = threading.Lock()

    def _version(self, domain: str | None) -> tuple[Path, float] | None:
        """Which file the domain's policy comes from, and when it last changed."""
        path = self._policies.source(domain)
        if path is None:
            return None
        try:
            return path, path.stat().st_mtime
        except OSError:
            return path, -1.0  # gone: reading it reports the error

    def get(self, domain: str | None, vocabulary: Sequence[str] = ()) -> Guard:
        """The domain's guard; `vocabulary` (an adapter version's own names, its
        manifest's) added to its policy's allow-list."""
        version = self._version(domain)
        key = (domain, tuple(vocabulary))
        with self._lock:
            cached = self._guards.get(key)
            if cached is not None and cached[0] == version:
                self._guards.move_to_end(key)
                return cached[1]
            guard = Guard(
                self._policies.get(domain).allowing(vocabulary),
                self._detector,
                audit=self._audit,
                domain=domain,
                pool=self.pool,
            )
            self._guards[key] = (version, guard)
            self._guards.move_to_end(key)
            while len(self._guards) > MAX_GUARDS:
                self._guards.popitem(last=False)
            return guard

    def prepare(self) -> None:
        """Load the PII models before the first request needs them."""
        self.get(None).prepare()

    def screening(self, target: Target, request_id: str, tenant: str) -> Screening:
        """One request's screening; `tenant` (its key) shares threads fairly with others."""
        return Screening(
            self.get(target.domain, target.manifest.vocabulary if target.manifest else ()),
            self.pool,
            self._metrics,
            target,
            request_id,
            tenant=tenant,
            tracer=self._tracer,
        )


class Screening:
    """One request's personal-data screening, in and out."""

    def __init__(
        self,
        guard: Guard,
        pool: ScreeningPool,
        metrics: Metrics,
        target: Target,
        request_id: str,
        tenant: str = "",
        tracer: Tracer = tracing.NO_TRACER,
    ) -> None:
        self.guard = guard
        self.vault = Vault()
        self.masked = 0
        """Values masked in the prompt: a count the client may be told."""
        prompt = target.manifest.system_prompt if target.manifest is not None else ""
        self.leaks: LeakIndex | None = leak_index(prompt) if prompt.strip() else None
        """The domain's system prompt, looked for in every answer text."""
        self.found: Counter[tuple[Direction, Action]] = Counter()
        """What this request's scans found, by direction and action (for its trace)."""
        self._pool = pool
        self._metrics = metrics
        self._target = target
        self._label = target.label
        self._request_id = request_id
        self._tenant = tenant
        self._tracer = tracer

    @contextmanager
    def _scan(self, direction: Direction, texts: int) -> Iterator[Span]:
        with tracing.active(
            tracing.guard_span(self._tracer, self._target, direction, texts)
        ) as span:
            yield span

    async def texts(self, texts: list[str], untrusted: Sequence[str] = ()) -> list[str]:
        """The request's texts masked as the model may see them (raises `PiiBlocked`).

        `untrusted`: the user's own texts, screened first for prompt injection (raises
        `PromptInjectionBlocked` where the policy blocks it)."""

        def protect() -> ProtectedTexts:
            self.injections(untrusted)
            return self.guard.protect_texts(texts, self.vault, self._request_id)

        with self._scan(Direction.INPUT, len(texts)) as span:
            protected = await self.run(protect, fallback=lambda: ProtectedTexts(list(texts)))
            tracing.guard_found(span, protected.findings)
        self.count(Direction.INPUT, protected.findings)
        self.masked += protected.masked_count
        return protected.texts

    def injections(self, texts: Sequence[str]) -> list[str]:
        """Screen the user's texts for prompt injection: counted by kind, blocked if the
        policy says so. Runs on the screening pool, with the prompt's masking."""
        kinds = self.guard.screen_injection(texts, self._request_id)
        action = self.guard.policy.prompt_injection
        for kind in kinds:
            self._metrics.injection(self._label, kind, action)
        if kinds and action == "block":
            raise PromptInjectionBlocked(kinds)
        return kinds

    async def answers(self, texts: list[str]) -> list[Released]:
        """Whole answer texts made safe: to show (the user's own values restored), and masked."""

        def protect() -> list[tuple[ScanResult, Released]]:
            protected = []
            for text in texts:
                result = self.guard.protect_output(
                    text, self.vault, self._request_id, restore=False, leaks=self.leaks
                )
                shown = self.guard.restore(result.redacted, self.vault)
                protected.append((result, Released(shown, result.redacted)))
            return protected

        with self._scan(Direction.OUTPUT, len(texts)) as span:
            protected = await self.run(protect)
            tracing.guard_found(span, (f for result, _ in protected for f in result.findings))
        for result, _ in protected:
            self.count(Direction.OUTPUT, result.findings)
        return [released for _, released in protected]

    async def texts_to_store(self, texts: list[str]) -> list[str]:
        """Texts masked by the input policy to be stored (a rating's correction, say).

        Unlike `texts`, never passed on unscanned: a failed or late detection raises
        `GuardUnavailable` whatever the policy's `fail_open` says, and a blocked type
        raises `PiiBlocked`.
        """

        def mask() -> list[str]:
            for text in texts:
                self.vault.reserve_literals(text)
            masked, findings = [], []
            for text in texts:
                # `find`, not `scan`: it raises where `scan` would fail open.
                safe, applied = self.guard.apply(
                    text, self.guard.find(text), Direction.INPUT, self.vault
                )
                masked.append(safe)
                findings.extend(applied)
            self.guard.record(findings, Direction.INPUT, self._request_id)
            blocked = sorted({f.type for f in findings if f.action is Action.BLOCK})
            if blocked:
                raise PiiBlocked(blocked, "input")
            self.count(Direction.INPUT, findings)
            return masked

        return await self.run(mask)

    def stream(self) -> StreamScreening:
        redactor = self.guard.stream(self.vault, self._request_id, restore=False, leaks=self.leaks)
        return StreamScreening(self, redactor)

    async def run(self, operation: Callable[[], T], fallback: Callable[[], T] | None = None) -> T:
        timeout_s = self.guard.policy.timeout_s
        try:
            return await self._pool.run(operation, timeout_s, self._tenant)
        except (ScreeningTimeout, ScreeningBusy) as error:
            logger.warning(
                "screening for %s: %s (request %s)", self._label, error, self._request_id
            )
            if fallback is None or not self.guard.policy.fail_open:
                raise
            logger.error(
                "FAIL OPEN: domain %s passes text unscanned because %s", self._label, error
            )
            tracing.guard_failed_open()
            return fallback()

    def count(self, direction: Direction, findings: list[AppliedFinding]) -> None:
        for applied in findings:
            self._metrics.guardrail(
                self._label, direction.value, applied.type, applied.action.value
            )
            self.found[direction, applied.action] += 1


class StreamScreening:
    """One streamed text's redactor (a choice's content, a tool call's arguments), fed on the
    screening pool."""

    def __init__(self, screening: Screening, redactor: StreamRedactor) -> None:
        self._screening = screening
        self._redactor = redactor

    async def feed(self, text: str, *, last: bool = False) -> Released:
        """The text now safe; with `last`, everything held back too."""
        screening = self._screening
        if not last and self._redactor.hold(text):
            return Released("", "")  # nothing due: no scan, no hop to the screening pool

        def release() -> Released:
            # The redactor keeps placeholders whole, so each piece restores on its own.
            masked = self._redactor.feed(text) if text else ""
            masked = masked + self._redactor.finish() if last else masked
            return Released(screening.guard.restore(masked, screening.vault), masked)

        # No fallback: a stream cannot fail open half-way, its redactor may still be busy.
        released = await screening.run(release)
        if last:
            screening.count(Direction.OUTPUT, self._redactor.findings)
        return released
