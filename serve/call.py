"""One completion request in flight: what it asked for, its screening, its clock, its outcome.

The request's `Outcome` (boundary.py) learns its domain and version here and, on failure,
its error code, so that the response is counted once, by the boundary; the latency, time
to first token and tokens of an answer are recorded here, and so is how its version fared
(`AnswerQuality`: an answer or an error, and the brand-rule check of what it said).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from lorastack.errors import LorastackError
from lorastack.serve.errors import GatewayError, to_gateway_error
from lorastack.serve.guarding import Screening
from lorastack.serve.metrics import Metrics
from lorastack.serve.outcome import Outcome
from lorastack.serve.quality import AnswerQuality
from lorastack.serve.schemas import Api
from lorastack.serve.targets import Target

ADAPTER_HEADER = "x-lorastack-adapter"
"""The version that wrote a domain's answer (`coffee-shop@v3`)."""


@dataclass
class Call:
    target: Target
    api: Api
    metrics: Metrics
    outcome: Outcome
    quality: AnswerQuality | None = None
    screening: Screening | None = None
    started: float = field(default_factory=time.monotonic)
    _first_token_seen: bool = False
    _at_engine: bool = False
    _texts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.outcome.domain = self.target.label
        self.outcome.version = self.target.version_label

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
        if self.quality is not None:
            self.quality.answered(self.target)

    def check_rules(self) -> None:
        """Queue the brand-rule check of the finished answer (once it has been sent)."""
        if self.quality is not None:
            self.quality.check(self.target, self._texts)

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
        if self._at_engine and self.quality is not None:
            self.quality.answered(self.target, failed=True)
        return mapped
