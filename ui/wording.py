"""How the UI words what happened: a failure, and what the guardrails did."""

from __future__ import annotations

from lorastack.ui.client import GuardrailNotice

NOTICE_ICON = "\N{SHIELD}\ufe0f"
ERROR_ICON = "\N{WARNING SIGN}\ufe0f"


def warning(problem: Exception | str) -> str:
    """A failure as the UI shows it: the warning sign, then the readable message."""
    return f"{ERROR_ICON} {problem}"


def notice_text(notice: GuardrailNotice | None) -> str:
    """The guardrail notice of an answer, empty when nothing was masked."""
    return f"{NOTICE_ICON} {notice.text}" if notice is not None and notice.text else ""
