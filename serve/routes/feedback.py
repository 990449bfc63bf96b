"""`POST /v1/feedback`: a client rates an answer it got, by the answer's `id`."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from lorastack.serve.deps import ClientKeyDep, GatewayDep, OutcomeDep
from lorastack.serve.errors import FeedbackUnavailable
from lorastack.serve.schemas import error_responses

router = APIRouter(prefix="/v1", tags=["feedback"])

MAX_CORRECTION_CHARS = 16_000
MAX_COMMENT_CHARS = 2_000


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    response_id: str = Field(
        min_length=1, max_length=200, description="the `id` of the answer, as it was received"
    )
    rating: Literal[1, -1] = Field(description="1: a good answer; -1: a bad one")
    correction: str | None = Field(
        default=None, max_length=MAX_CORRECTION_CHARS, description="a better answer"
    )
    comment: str | None = Field(default=None, max_length=MAX_COMMENT_CHARS)

    @field_validator("rating", mode="before")
    @classmethod
    def _exactly_one_or_minus_one(cls, value: Any) -> Any:
        # `true` and `1.0` equal 1 in Python, and would pass as a Literal: not a rating.
        if type(value) is not int or value not in (1, -1):
            raise PydanticCustomError("rating", "must be exactly 1 (good) or -1 (bad)")
        return value

    @field_validator("correction", "comment")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value if value is not None and value.strip() else None


class FeedbackSaved(BaseModel):
    object: Literal["feedback"]
    response_id: str
    rating: Literal[1, -1]
    saved: bool


@router.post(
    "/feedback",
    response_model=FeedbackSaved,
    responses=error_responses(400, 401, 404, 408, 413, 500, 503),
)
async def feedback(
    body: FeedbackRequest, gateway: GatewayDep, key: ClientKeyDep, outcome: OutcomeDep
) -> dict[str, Any]:
    """Rate an answer this key received (only answers of domains whose capture is on);
    a correction and a comment are masked like prompts before they are stored."""
    if gateway.feedback is None:
        raise FeedbackUnavailable(
            "this gateway stores no feedback (no feedback store, or the guardrails are off)"
        )
    exchange = await gateway.feedback.rate(
        body.response_id,
        body.rating,
        key,
        outcome.request_id,
        correction=body.correction,
        comment=body.comment,
    )
    outcome.domain = exchange.domain
    return {
        "object": "feedback",
        "response_id": body.response_id,
        "rating": body.rating,
        "saved": True,
    }
