"""What became of one request: its id, its domain, its error code, filled in as it goes.

The boundary (boundary.py) puts one in every request's ASGI state and counts the
response by it; the service names the domain once the `model` resolved; the error
handlers and the stream relay name the error. An unexpected error is logged once,
by type and request id only.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.types import Scope

if TYPE_CHECKING:
    from lorastack.serve.errors import GatewayError

logger = logging.getLogger(__name__)

NO_DOMAIN = "none"


def new_request_id() -> str:
    return f"req-{uuid.uuid4().hex[:16]}"


class Callbacks:
    """Callbacks for one moment of a request, each run once when it comes."""

    def __init__(self) -> None:
        self._pending: list[Callable[[], None]] = []

    def add(self, callback: Callable[[], None]) -> None:
        self._pending.append(callback)

    def run(self) -> None:
        callbacks, self._pending = self._pending, []
        for callback in callbacks:
            callback()


@dataclass
class Outcome:
    """What became of one request, filled in by whichever layer knows."""

    request_id: str
    endpoint: str
    domain: str = NO_DOMAIN
    """Set once the request's `model` resolved to a domain (or the base model)."""
    version: str = ""
    """The adapter version that answers (`v3`), once resolved; "" for the base model."""
    error_code: str | None = None
    logged: bool = False
    """Whether an unexpected error of this request was logged already."""

    _on_admitted: Callbacks = field(default_factory=Callbacks, repr=False)
    _on_done: Callbacks = field(default_factory=Callbacks, repr=False)

    def on_admitted(self, callback: Callable[[], None]) -> None:
        self._on_admitted.add(callback)

    def admitted(self) -> None:
        """The gateway's own work on the request is done: it goes to the engine now."""
        self._on_admitted.run()

    def on_done(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the response has ended (sent, failed or abandoned)."""
        self._on_done.add(callback)

    def done(self) -> None:
        self._on_done.run()

    def failed(self, error: GatewayError) -> None:
        self.error_code = error.code or error.type

    def log_unexpected(self, error: BaseException) -> None:
        if not self.logged:
            self.logged = True
            logger.error("unexpected %s in request %s", type(error).__name__, self.request_id)


def outcome_of(scope: Scope) -> Outcome | None:
    found = scope.get("state", {}).get("outcome")
    return found if isinstance(found, Outcome) else None
