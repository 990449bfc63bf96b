"""`--since 7d` and `?since=7d`: the start of a report's period, as commands and the admin
API accept it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_AGO = re.compile(r"(\d+)([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
SINCE_FORMS = (
    "a date (2026-12-01), an ISO datetime (2026-12-01T09:30:00+01:00) or an age (30m, 12h, 7d, 2w)"
)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """A moment from `7d` (or `30m`, `12h`, `2w`) ago, a date (its midnight, UTC) or an
    ISO datetime (UTC unless it gives its offset); `ValueError` saying what is accepted."""
    value = text.strip()
    ago = _AGO.fullmatch(value)
    if ago:
        amount, unit = int(ago.group(1)), _UNITS[ago.group(2)]
        try:
            return (now or datetime.now(UTC)) - timedelta(**{unit: amount})
        except OverflowError:
            raise ValueError(f"{text!r} reaches before the year 1") from None
    try:
        moment = datetime.fromisoformat(value)  # a date alone is its midnight
    except ValueError:
        raise ValueError(f"{text!r}: expected {SINCE_FORMS}") from None
    # Stores compare moments, so a moment without an offset is read as UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
