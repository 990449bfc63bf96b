"""Audit events: what the guardrails did, never the values they did it to."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class AuditEvent:
    request_id: str | None
    domain: str | None
    direction: str
    counts: dict[str, int] = field(default_factory=dict)
    """Findings per entity type."""
    actions: dict[str, str] = field(default_factory=dict)
    """The action taken per entity type."""
    max_scores: dict[str, float] = field(default_factory=dict)
    blocked: bool = False
    failed_open: bool = False
    timestamp: float = field(default_factory=time.time)


class AuditSink(Protocol):
    def record(self, event: AuditEvent) -> None: ...


class JsonlAuditLog:
    """Appends one JSON line per event; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def record(self, event: AuditEvent) -> None:
        line = json.dumps(asdict(event), sort_keys=True) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)


class MemoryAuditLog:
    """Keeps events in a list (tests, and callers that report them inline)."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)
