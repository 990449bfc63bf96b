"""Gateway errors and their one mapping to OpenAI-shaped HTTP responses.

Handlers raise typed exceptions; `install_error_handlers` turns each into
`{"error": {"message", "type", "param", "code"}}` with the right status. No
response ever carries a traceback, a filesystem path or a personal value.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lorastack.errors import (
    AdapterNotFound,
    GuardUnavailable,
    InvalidName,
    LorastackError,
    PiiBlocked,
    RegistryCorrupt,
    RegistryError,
)

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


class BadRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class Unauthorized(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class ModelNotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(
            f"The model `{model}` does not exist or you do not have access to it.", param="model"
        )


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


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


def error_body(
    message: str, error_type: str, code: str | None = None, param: str | None = None
) -> dict[str, object]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def _response(
    status: int,
    message: str,
    error_type: str,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(message, error_type, code, param), status, headers=headers)


def to_gateway_error(error: Exception) -> GatewayError:
    """The gateway error a library error means to a client."""
    if isinstance(error, GatewayError):
        return error
    if isinstance(error, PiiBlocked):
        return BadRequest(str(error), code="pii_blocked")
    if isinstance(error, GuardUnavailable):
        # Never pass text on unscanned: the request fails and may be retried.
        return EngineUnavailable(
            "personal-data screening is unavailable; try again", code="guardrails_unavailable"
        )
    if isinstance(error, RegistryCorrupt):
        # The operator's problem, logged with its path; the client learns neither.
        logger.error("%s", error)
        return GatewayError("the adapter registry cannot be read")
    if isinstance(error, (AdapterNotFound, InvalidName)):
        return NotFound(str(error))
    if isinstance(error, RegistryError):
        return BadRequest(str(error))
    logger.error("unexpected %s", type(error).__name__)
    return GatewayError("internal error")


def install_error_handlers(app: FastAPI) -> None:
    async def gateway_error(_: Request, error: Exception) -> JSONResponse:
        mapped = to_gateway_error(error)
        return _response(
            mapped.status, str(mapped), mapped.type, mapped.code, mapped.param, mapped.headers
        )

    async def validation_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
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
        return _response(400, message, "invalid_request_error", "invalid_value", param)

    async def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        error_type = "invalid_request_error" if error.status_code < 500 else "server_error"
        message = str(error.detail)
        if error.status_code == 404:
            message = f"{request.url.path} is not an endpoint of this API"
        elif error.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        headers = dict(error.headers) if error.headers else None
        return _response(error.status_code, message, error_type, headers=headers)

    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        # Logged by type only: the message could quote a prompt.
        logger.error("unhandled %s in a request", type(error).__name__)
        return _response(500, "internal error", "server_error")

    app.add_exception_handler(LorastackError, gateway_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
