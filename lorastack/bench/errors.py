"""The benchmark's own failure type."""

from __future__ import annotations

from lorastack.errors import LorastackError


class BenchError(LorastackError):
    """A benchmark part could not run (a process did not start, a result is missing)."""
