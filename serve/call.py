"""One completion request in flight: what it asked for, its screening, its clock, its outcome.

The request's `Outcome` (boundary.py) learns its domain here and, on failure,
its error code, so that the response is counted once, by the boundary; the
latency, time to first token and tokens of an answer are recorded here.
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
from lorastack.serve.schemas import Api
from lorastack.serve.targets import Target


@dataclass
class Call:
    target: Target
    api: Api
    metrics: Metrics
    outcome: Outcome
    screening: Screening | None = None
    started: float = field(default_factory=time.monotonic)
    _first_token_seen: bool = False

    def __post_init__(self) -> None:
        self.outcome.domain = self.target.label

    @property
    def request_id(self) -> str:
        return self.outcome.request_id

    def headers(self) -> dict[str, str]:
        """What the gateway did, as counts only, for clients such as the UI."""
        masked = self.screening.masked if self.screening is not None else 0
        return {"x-request-id": self.request_id, "x-lorastack-pii-masked": str(masked)}

    def first_token(self) -> None:
        if not self._first_token_seen:
            self._first_token_seen = True
            self.metrics.first_token(self.target.label, time.monotonic() - self.started)

    def finish(self, usage: dict[str, Any] | None) -> None:
        self.metrics.answered(self.target.label, time.monotonic() - self.started, usage)

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
        return mapped
