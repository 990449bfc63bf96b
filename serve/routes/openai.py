"""The OpenAI-compatible API: chat and text completions, and the model list."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from lorastack.serve.adapters import engine_name
from lorastack.serve.deps import ClientKeyDep, Gateway, GatewayDep, OutcomeDep
from lorastack.serve.keys import ClientKey
from lorastack.serve.schemas import (
    STREAM_CONTENT,
    ChatCompletion,
    ChatRequest,
    CompletionRequest,
    ModelList,
    TextCompletion,
    error_responses,
)

router = APIRouter(prefix="/v1", tags=["openai"])


def _answers(answer: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """A completion endpoint's answers: `answer` whole, an event stream, or an error."""
    errors = error_responses(400, 401, 404, 408, 413, 500, 502, 503)
    return {200: {"model": answer, "content": STREAM_CONTENT}, **errors}


@router.post("/chat/completions", response_model=None, responses=_answers(ChatCompletion))
async def chat_completions(
    body: ChatRequest, gateway: GatewayDep, key: ClientKeyDep, outcome: OutcomeDep
) -> Any:
    return await gateway.service.chat(body, key, outcome)


@router.post("/completions", response_model=None, responses=_answers(TextCompletion))
async def completions(
    body: CompletionRequest, gateway: GatewayDep, key: ClientKeyDep, outcome: OutcomeDep
) -> Any:
    return await gateway.service.complete(body, key, outcome)


@router.get("/models", response_model=ModelList, responses=error_responses(401, 500, 503))
async def list_models(gateway: GatewayDep, key: ClientKeyDep) -> dict[str, Any]:
    """The base model and every domain this key may use (id = domain name)."""
    # On a worker thread: with the registry in the database, a query or two per domain.
    return await asyncio.to_thread(_model_list, gateway, key)


def _model_list(gateway: Gateway, key: ClientKey | None) -> dict[str, Any]:
    created = int(time.time())
    models: list[dict[str, Any]] = []
    if key is None or key.allows(gateway.base_model):
        models.append(
            {
                "id": gateway.base_model,
                "object": "model",
                "created": created,
                "owned_by": "lorastack",
                "display_name": gateway.base_model,
                "description": "The base model, without a domain adapter.",
                "domain": None,
                "version": None,
                "loaded": True,
            }
        )
    for summary in gateway.registry.list():
        domain = summary.index.domain
        if key is not None and not key.allows(domain):
            continue
        manifest = gateway.registry.resolve(domain)
        loaded = gateway.pool.is_loaded(engine_name(manifest))
        models.append(
            {
                "id": domain,
                "object": "model",
                "created": int(manifest.created_at.timestamp()),
                "owned_by": "lorastack",
                "display_name": manifest.display_name,
                "description": manifest.description,
                "domain": domain,
                "version": manifest.version,
                "aliases": summary.index.aliases,
                "loaded": loaded,
            }
        )
    return {"object": "list", "data": models}
