"""How the UI words what happened: a failure, what the guardrails did, a share of traffic,
what an admin action left behind."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the client imports this module (`percent`): no cycle at run time
    from lorastack.ui.client import GuardrailNotice

NOTICE_ICON = "\N{SHIELD}\ufe0f"
ERROR_ICON = "\N{WARNING SIGN}\ufe0f"


def warning(problem: Exception | str) -> str:
    """A failure as the UI shows it: the warning sign, then the readable message."""
    return f"{ERROR_ICON} {problem}"


def notice_text(notice: GuardrailNotice | None) -> str:
    """The guardrail notice of an answer, empty when nothing was masked."""
    return f"{NOTICE_ICON} {notice.text}" if notice is not None and notice.text else ""


def percent(share: Any) -> str:
    """A percentage as a person reads it (`25%`, `12.5%`); the gateway sends 25.0."""
    try:
        return f"{float(share):g}%"
    except (TypeError, ValueError):
        return f"{share}%"


def engines_summary(payload: Any) -> str:
    """Each engine's slot of an adapter, from an admin answer (`engines`)."""
    engines = payload.get("engines") if isinstance(payload, dict) else None
    parts = []
    for index, slot in enumerate(engines or []):
        if isinstance(slot, dict):
            state = str(slot.get("state", "?"))
            if slot.get("error"):
                state += f" ({slot['error']})"
            parts.append(f"engine {index} {state}")
    return ", ".join(parts)


def aliases_summary(payload: Any) -> str:
    """A domain's aliases, from an admin answer (`aliases`)."""
    aliases = payload.get("aliases") if isinstance(payload, dict) else None
    if not isinstance(aliases, dict) or not aliases:
        return "no aliases"
    return ", ".join(f"{name} → v{version}" for name, version in sorted(aliases.items()))
