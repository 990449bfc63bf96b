"""The Responses API (`POST /v1/responses`): a chat request, answered in its own shape."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from lorastack.serve.deps import ClientKeyDep, GatewayDep, OutcomeDep
from lorastack.serve.responses import (
    PATH,
    ResponseObject,
    ResponsesFormat,
    ResponsesRequest,
    to_chat,
)
from lorastack.serve.schemas import STREAM_CONTENT, error_responses

router = APIRouter(tags=["openai"])

_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"model": ResponseObject, "content": STREAM_CONTENT},
    **error_responses(400, 401, 404, 408, 413, 500, 502, 503),
}


@router.post(PATH, response_model=None, responses=_ANSWERS)
async def create_response(
    body: ResponsesRequest, gateway: GatewayDep, key: ClientKeyDep, outcome: OutcomeDep
) -> Any:
    """Text in, text out; stateless: nothing is stored, `previous_response_id` is refused."""
    return await gateway.service.chat(to_chat(body), key, outcome, ResponsesFormat(body))
