"""What can go wrong when the UI calls the gateway, as exceptions a person can read.

Every failure of a gateway call becomes a `UiClientError` whose message is shown as it is
(no traceback, no personal value). These are the UI's own: the gateway's exceptions live
in `lorastack.serve`, which the UI never imports; it only reads the OpenAI-shaped error
bodies the gateway sends.
"""

from __future__ import annotations

from collections.abc import Mapping

# The gateway's default Retry-After, for a 503 that arrives without the header (mid-stream).
DEFAULT_RETRY_S = 5
NO_FEEDBACK = "this assistant does not collect feedback"


class UiClientError(Exception):
    """A failed call to the gateway; `str()` is a readable one-line explanation."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class GatewayUnreachable(UiClientError):
    """Nothing answers at the gateway's address (or it did not answer in time)."""


class EngineRestarting(UiClientError):
    """The gateway is up but its engine is starting or restarting: try again later."""

    def __init__(self, retry_after_s: int, *, code: str | None = None) -> None:
        super().__init__(
            f"engine restarting, try again in {retry_after_s} s", status=503, code=code
        )
        self.retry_after_s = retry_after_s


class AccessDenied(UiClientError):
    """The API key (or the admin key) was refused."""


class UnknownDomain(UiClientError):
    """The domain does not exist (any more), or this key may not use it."""


class BlockedByPrivacyPolicy(UiClientError):
    """The domain's privacy policy refused the message or the answer (`pii_blocked`);
    the text names entity types, never values."""


class BlockedByGuardrail(UiClientError):
    """The domain's guardrails refused the message as a prompt injection
    (`prompt_injection_blocked`), or the answer for repeating the assistant's instructions
    (`system_prompt_leak_blocked`)."""


# The gateway's guardrail refusals other than personal data, as a person reads them.
GUARDRAIL_REFUSALS = {
    "prompt_injection_blocked": "blocked: the message reads like an attempt to override "
    "the assistant's instructions",
    "system_prompt_leak_blocked": "blocked: the answer repeated the assistant's "
    "instructions, which this assistant does not show",
}


class RequestRefused(UiClientError):
    """Any other refusal (bad request, too long, engine failure)."""


class FeedbackNotCollected(UiClientError):
    """A rating that cannot be kept: the answer's assistant keeps no answers (its capture is
    off, or it is the base model), or the gateway stores no feedback at all."""


def _retry_after(headers: Mapping[str, str] | None) -> int:
    raw = (headers or {}).get("retry-after", "")
    try:
        return max(1, round(float(raw)))
    except ValueError:
        return DEFAULT_RETRY_S


def _error_fields(body: object) -> tuple[str, str | None]:
    """(message, code) of an OpenAI error body, or of its inner `error` object."""
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        message = error.get("message")
        code = error.get("code")
        return (
            str(message) if message else "",
            str(code) if isinstance(code, str) else None,
        )
    return "", None


def error_from_response(
    status: int,
    headers: Mapping[str, str] | None,
    body: object,
    *,
    model: str | None = None,
    admin: bool = False,
    rating: bool = False,
) -> UiClientError:
    """The `UiClientError` an HTTP error response of the gateway means (to a rating,
    `POST /v1/feedback`, with `rating`)."""
    message, code = _error_fields(body)
    if code == "feedback_unavailable":  # a 503 that no retry of the engine would mend
        return FeedbackNotCollected(message or NO_FEEDBACK, status=status, code=code)
    if rating and status == 404:
        # The gateway's 404 does not say why: the UI's own answers are rated with its own
        # key, so what is missing is the capture (off, or the base model).
        return FeedbackNotCollected(NO_FEEDBACK, status=status, code=code)
    if rating and code == "guardrails_unavailable":
        return RequestRefused(
            f"not saved: {message or 'personal-data screening is unavailable'}",
            status=status,
            code=code,
        )
    if code in ("database_unavailable", "no_database"):
        # Usage, the audit trail, keys: the database, nothing to do with the engine.
        return RequestRefused(
            message or "the gateway's database is unavailable", status=status, code=code
        )
    if status == 503:
        return EngineRestarting(_retry_after(headers), code=code)
    if status in (401, 403):
        what = "admin key" if admin else "API key"
        return AccessDenied(
            f"the gateway refused the {what} ({message or 'not authorised'})",
            status=status,
            code=code,
        )
    if status == 404 and model is not None:
        return UnknownDomain(
            f"unknown domain `{model}`: it does not exist, was removed, "
            "or this API key may not use it; refresh the list",
            status=status,
            code=code,
        )
    if code == "pii_blocked":
        return BlockedByPrivacyPolicy(
            f"blocked by the privacy policy: {message}", status=status, code=code
        )
    if code in GUARDRAIL_REFUSALS:
        return BlockedByGuardrail(GUARDRAIL_REFUSALS[code], status=status, code=code)
    if status == 413:
        return RequestRefused("the message is too large for the gateway", status=status, code=code)
    if status == 502:
        return RequestRefused(
            f"the engine failed to answer ({message or 'bad gateway'})", status=status, code=code
        )
    detail = message or f"HTTP {status}"
    return RequestRefused(f"the gateway refused the request: {detail}", status=status, code=code)


def stream_error(body: object, model: str) -> UiClientError:
    """An error the gateway sent inside a stream (after the 200 and its headers)."""
    message, code = _error_fields(body)
    if code in ("engine_unavailable", "adapter_load_failed"):
        return EngineRestarting(DEFAULT_RETRY_S, code=code)
    refused = {"pii_blocked": 400, **dict.fromkeys(GUARDRAIL_REFUSALS, 400)}
    status = {**refused, "model_not_found": 404, "not_found": 404}.get(code or "", 502)
    return error_from_response(
        status,
        None,
        {"error": {"message": message, "code": code}},
        model=model if status == 404 else None,
    )
