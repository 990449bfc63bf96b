"""Gateway errors and their one mapping to OpenAI-shaped HTTP responses.

Everything in the gateway raises typed exceptions. `to_gateway_error` is the
one place that decides what an error means to a client (status, OpenAI `type`
and `code`); the exception handlers answer with it, a stream that fails after
its first byte sends it as an error event (`error_event`), and the metrics
count it. No response ever carries a traceback, a filesystem path or a
personal value.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope, Send

from lorastack.errors import (
    AdapterNotFound,
    BlobStoreError,
    DatabaseError,
    ExchangeNotFound,
    GuardUnavailable,
    InvalidName,
    KeyNameTaken,
    KeyNotFound,
    LorastackError,
    PiiBlocked,
    PromptInjectionBlocked,
    RegistryCorrupt,
    RegistryError,
    RegistryUnavailable,
    SystemPromptLeaked,
)
from lorastack.serve.outcome import Outcome, new_request_id, outcome_of

logger = logging.getLogger(__name__)


class GatewayError(LorastackError):
    """An error with an HTTP status and OpenAI's error `type` and `code`."""

    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param = param
        if code is not None:
            self.code = code

    @property
    def headers(self) -> dict[str, str] | None:
        return None

    def body(self) -> dict[str, Any]:
        return error_body(str(self), self.type, self.code, self.param)


class BadRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class Unauthorized(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class ModelNotFound(GatewayError):
    """The request's `model` names nothing this key may use (a 404, as at OpenAI)."""

    status = 404
    type = "invalid_request_error"
    code = "model_not_found"

    def __init__(self, model: str, message: str | None = None) -> None:
        super().__init__(
            message or f"The model `{model}` does not exist or you do not have access to it.",
            param="model",
        )


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class Conflict(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class EngineUnavailable(GatewayError):
    """The engine is down, starting or restarting: the client should retry."""

    status = 503
    type = "service_unavailable"
    code = "engine_unavailable"

    def __init__(self, message: str, retry_after_s: int = 5, *, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class KeysUnavailable(EngineUnavailable):
    """The database's API keys could not be read yet: nobody can be let in or refused."""

    code = "keys_unavailable"


class RateLimited(GatewayError):
    """A key is over one of its limits, or a domain is at its cap on requests in flight.

    429 with `Retry-After` (and `retry-after-ms`), which the official OpenAI clients wait
    out before retrying; a spent budget says `x-should-retry: false`, since waiting seconds
    will not help."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(
        self,
        message: str,
        retry_after_s: float,
        *,
        code: str | None = None,
        retry: bool = True,
        limit_headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = max(0.0, retry_after_s)
        self.retry = retry
        self.limit_headers = limit_headers or {}

    @property
    def headers(self) -> dict[str, str]:
        seconds = self.retry_after_s
        headers = {
            **self.limit_headers,
            "Retry-After": str(max(1, math.ceil(seconds))),
            "retry-after-ms": str(max(1, math.ceil(seconds * 1000))),
        }
        if not self.retry:
            headers["x-should-retry"] = "false"
        return headers


class UpstreamFailed(GatewayError):
    """The engine answered with an error of its own."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"


class AdapterLoadFailed(GatewayError):
    status = 503
    type = "service_unavailable"
    code = "adapter_load_failed"

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1"}


class FeedbackUnavailable(GatewayError):
    """Ratings cannot be stored now: no feedback store here, or it failed."""

    status = 503
    type = "service_unavailable"
    code = "feedback_unavailable"


class EngineLostModel(LorastackError):
    """The engine does not know the model name it was sent.

    For an adapter this means the engine restarted and forgot it: the engine
    session reloads it and retries once. Only when that fails too does the
    client see it, as a 404 `model_not_found` with the engine's message.
    """


def error_body(
    message: str, error_type: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def to_gateway_error(error: BaseException) -> GatewayError:
    """What any error raised while serving a request means to the client."""
    if isinstance(error, GatewayError):
        return error
    if isinstance(error, EngineLostModel):
        return ModelNotFound("", str(error))
    if isinstance(error, PiiBlocked):
        return BadRequest(str(error), code="pii_blocked")
    if isinstance(error, PromptInjectionBlocked):
        return BadRequest(str(error), code="prompt_injection_blocked")
    if isinstance(error, SystemPromptLeaked):
        return BadRequest(str(error), code="system_prompt_leak_blocked")
    if isinstance(error, GuardUnavailable):
        # Never pass text on unscanned: the request fails and may be retried.
        return EngineUnavailable(
            "personal-data screening is unavailable; try again", code="guardrails_unavailable"
        )
    if isinstance(error, KeyNotFound):
        return NotFound(str(error), param="name")
    if isinstance(error, KeyNameTaken):
        return Conflict(str(error), param="name")
    if isinstance(error, ExchangeNotFound):
        return NotFound("no answer with this id to rate for this key", param="response_id")
    if isinstance(error, DatabaseError):
        logger.error("feedback store: %s", type(error).__name__)
        return FeedbackUnavailable("the feedback store is unavailable; try again later")
    if isinstance(error, RegistryUnavailable):
        logger.error("%s", error)
        return EngineUnavailable(
            "the adapter registry is unavailable; try again", code="registry_unavailable"
        )
    if isinstance(error, (RegistryCorrupt, BlobStoreError)):
        # The operator's problem, logged with its path; the client learns neither.
        logger.error("%s", error)
        return GatewayError("the adapter registry cannot be read")
    if isinstance(error, (AdapterNotFound, InvalidName)):
        return NotFound(str(error))
    if isinstance(error, RegistryError):
        return BadRequest(str(error))
    # Anything else is a bug: a bare 500. Whoever catches it logs it by type and request
    # id only (`Outcome.log_unexpected`): its message could quote a prompt.
    return GatewayError("internal error")


async def send_error(scope: Scope, send: Send, error: GatewayError) -> None:
    """Answer with `error` from a pure ASGI layer (before any route), noted in the outcome."""
    outcome = outcome_of(scope)
    if outcome is not None:
        outcome.failed(error)
    headers = [(b"content-type", b"application/json")]
    headers += [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(error.body()).encode()})


def error_response(error: BaseException) -> JSONResponse:
    mapped = to_gateway_error(error)
    return JSONResponse(mapped.body(), mapped.status, headers=mapped.headers)


def error_event(error: BaseException) -> dict[str, Any]:
    """The error as the last event of a stream whose status line has already gone out."""
    return to_gateway_error(error).body()


def _validation_error(error: RequestValidationError) -> BadRequest:
    first = error.errors()[0] if error.errors() else {}
    kind = first.get("type")
    location = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(location) or None
    message = str(first.get("msg", "invalid request"))
    if kind == "json_invalid":
        message, param = "the request body is not valid JSON", None
    elif not location and kind in ("model_attributes_type", "dict_type", "missing"):
        message = "the request body must be a JSON object (Content-Type: application/json)"
    elif param:
        message = f"{param}: {message}"
    return BadRequest(message, param=param, code="invalid_value")


class RouteError(GatewayError):
    """Starlette's own refusals (no such endpoint, method not allowed), in OpenAI's shape."""

    def __init__(self, request: Request, error: StarletteHTTPException) -> None:
        message = str(error.detail)
        if error.status_code == 404:
            message = f"{request.url.path} is not an endpoint of this API"
        elif error.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        super().__init__(message)
        self.status = error.status_code
        self.type = "invalid_request_error" if error.status_code < 500 else "server_error"
        self._headers = dict(error.headers) if error.headers else None

    @property
    def headers(self) -> dict[str, str] | None:
        return self._headers


def _respond(request: Request, error: BaseException) -> JSONResponse:
    """The one way an error raised in a request becomes its response, noted in its outcome."""
    mapped = to_gateway_error(error)
    outcome = outcome_of(request.scope)
    if outcome is None:
        outcome = Outcome(new_request_id(), request.url.path)
    outcome.failed(mapped)
    if not isinstance(error, LorastackError):
        outcome.log_unexpected(error)
    return error_response(mapped)


def install_error_handlers(app: FastAPI) -> None:
    async def lorastack_error(request: Request, error: Exception) -> JSONResponse:
        return _respond(request, error)

    async def validation_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return _respond(request, _validation_error(error))

    async def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        return _respond(request, RouteError(request, error))

    app.add_exception_handler(LorastackError, lorastack_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    # Anything else: a bare 500, logged once by type and request id.
    app.add_exception_handler(Exception, lorastack_error)
