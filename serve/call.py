"""One completion request in flight: what it asked for, its screening, its clock, its outcome.

The request's `Outcome` (boundary.py) learns its domain and version here and, on failure,
its error code, so that the response is counted once, by the boundary; the latency, time
to first token and tokens of an answer are recorded here, and so is how its version fared
(`AnswerQuality`: an answer or an error, and the brand-rule check of what it said). The
same goes on the request's server span, when traced (tracing.py: model, version, tokens,
the guard's counts, the error code; never a text).

Each answer gets its `id` here (`response_id`: the same in every chunk of a stream, and
never the engine's, whose ids a retry or another replica could repeat). When the domain's
answers are captured, the call keeps the masked conversation and the masked answer, and
hands them to `ExchangeCapture` once the answer was sent (`after_sent`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span

from lorastack.errors import LorastackError
from lorastack.feedback import Exchange, utc_now
from lorastack.serve import tracing
from lorastack.serve.capture import ExchangeCapture, PendingExchange
from lorastack.serve.errors import GatewayError, to_gateway_error
from lorastack.serve.fields import ANSWER_CHANNELS
from lorastack.serve.guarding import Screening
from lorastack.serve.metrics import Metrics
from lorastack.serve.outcome import Outcome
from lorastack.serve.quality import AnswerQuality
from lorastack.serve.schemas import Api
from lorastack.serve.targets import Target
from lorastack.usage import UsageEvent

UsageSink = Callable[[UsageEvent], None]
"""Takes each answer's usage once it was sent; must not block (it queues, or counts)."""

ADAPTER_HEADER = "x-lorastack-adapter"
"""The version that wrote a domain's answer (`coffee-shop@v3`)."""


@dataclass
class Call:
    target: Target
    api: Api
    metrics: Metrics
    outcome: Outcome
    quality: AnswerQuality | None = None
    capture: ExchangeCapture | None = None
    key_hash: str | None = None
    """The client key's sha256 (hex), kept with a captured exchange."""
    key_name: str | None = None
    usage_sinks: Sequence[UsageSink] = ()
    """Where the answer's tokens and latency go once it was sent (usage, token limits)."""
    screening: Screening | None = None
    started: float = field(default_factory=time.monotonic)
    response_id: str = ""
    """The answer's `id`, as the client gets it."""
    _first_token_seen: bool = False
    _at_engine: bool = False
    _texts: list[str] = field(default_factory=list)
    _seconds: float = 0.0
    _prompt: list[dict[str, Any]] | None = None
    _masked: list[str] = field(default_factory=list)
    _usage: UsageEvent | None = None
    _span: Span = field(default_factory=trace.get_current_span, repr=False)
    """The request's server span, current when the call starts (non-recording: not traced)."""

    def __post_init__(self) -> None:
        self.outcome.domain = self.target.label
        self.outcome.version = self.target.version_label
        self.response_id = f"{self.api.id_prefix}{uuid.uuid4().hex}"
        tracing.call_started(self._span, self.target, self.api, self.request_id, self.response_id)

    @property
    def capturing(self) -> bool:
        """Whether this answer is captured: the domain's setting is on, this gateway has a
        store, and the texts are masked (nothing unmasked is ever stored)."""
        return self.capture is not None and self.target.capture and self.screening is not None

    def keep_prompt(self, messages: list[dict[str, Any]]) -> None:
        """The conversation as the engine gets it, masked (kept only when capturing).

        Kept by reference: nothing changes a request's messages after screening."""
        if self.capturing:
            self._prompt = messages

    def keep_masked(self, choice: int, channel: str, masked: str) -> None:
        """A piece of the answer as the engine wrote it, masked (the first choice's answer
        proper is what a captured exchange keeps)."""
        if choice == 0 and channel in ANSWER_CHANNELS and self.capturing:
            self._masked.append(masked)

    @property
    def request_id(self) -> str:
        return self.outcome.request_id

    def headers(self) -> dict[str, str]:
        """What the gateway did, as counts only, for clients such as the UI; and which
        version answered."""
        masked = self.screening.masked if self.screening is not None else 0
        headers = {"x-request-id": self.request_id, "x-lorastack-pii-masked": str(masked)}
        if self.target.manifest is not None:
            headers[ADAPTER_HEADER] = self.target.answered_by
        return headers

    def admitted(self) -> None:
        """The gateway's own work on the request is done: it goes to the engine now.

        From here on, a failure counts against the version that was to answer."""
        self._at_engine = True
        self.outcome.admitted()

    def first_token(self) -> None:
        if not self._first_token_seen:
            self._first_token_seen = True
            seconds = time.monotonic() - self.started
            self.metrics.first_token(self.target.label, self.target.version_label, seconds)

    def finish(self, usage: dict[str, Any] | None, texts: list[str]) -> None:
        """The answer is complete: `texts`, each choice's text as the client got it."""
        seconds = time.monotonic() - self.started
        self.metrics.answered(self.target.label, self.target.version_label, seconds, usage)
        self._texts = texts
        self._seconds = seconds
        found = self.screening.found if self.screening is not None else {}
        tracing.call_answered(self._span, self.target, usage, found)
        if self.quality is not None:
            self.quality.answered(self.target)
        if self.usage_sinks:
            self._usage = self._usage_event(usage or {}, seconds)

    def _usage_event(self, usage: dict[str, Any], seconds: float) -> UsageEvent:
        manifest = self.target.manifest
        return UsageEvent(
            created_at=utc_now(),
            key_name=self.key_name,
            key_hash=self.key_hash,
            model=self.target.domain or self.target.requested,
            version=manifest.version if manifest is not None else None,
            endpoint=self.api.path,
            prompt_tokens=_count(usage.get("prompt_tokens")),
            completion_tokens=_count(usage.get("completion_tokens")),
            latency_s=seconds,
        )

    def after_sent(self) -> None:
        """The answer has been sent: queue its brand-rule check, its usage and its capture."""
        if self.quality is not None:
            self.quality.check(self.target, self._texts)
        if self._usage is not None:
            for sink in self.usage_sinks:
                sink(self._usage)
        answer = "".join(self._masked)
        manifest = self.target.manifest
        # A choice with only tool calls says nothing to learn from: it is not captured.
        if not (self.capturing and answer and self._prompt is not None and manifest):
            return
        assert self.capture is not None and self.target.domain is not None
        self.capture.submit(
            PendingExchange(
                Exchange(
                    response_id=self.response_id,
                    domain=self.target.domain,
                    version=manifest.version,
                    key_hash=self.key_hash,
                    messages=self._prompt,
                    answer=answer,
                    latency_s=self._seconds,
                ),
                rules=tuple(manifest.rules),
            )
        )

    @contextmanager
    def failures_recorded(self) -> Iterator[None]:
        """Record an error raised inside as this request's outcome, then let it go on."""
        try:
            yield
        except Exception as error:
            self.fail(error)
            raise

    def fail(self, error: BaseException) -> GatewayError:
        """Note the error in the outcome; return what it means to the client."""
        mapped = to_gateway_error(error)
        if not isinstance(error, LorastackError):
            self.outcome.log_unexpected(error)
        self.outcome.failed(mapped)
        tracing.failed(self._span, mapped.code or mapped.type)
        if self._at_engine and self.quality is not None:
            self.quality.answered(self.target, failed=True)
        return mapped


def _count(value: Any) -> int:
    """A token count from the engine's usage; 0 when it sent none."""
    return value if isinstance(value, int) and value >= 0 else 0
