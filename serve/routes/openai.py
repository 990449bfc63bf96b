"""The OpenAI-compatible API: chat and text completions, and the model list."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter

from lorastack.serve.adapters import SlotState, engine_name
from lorastack.serve.completions import ChatRequest, CompletionRequest
from lorastack.serve.deps import ClientKeyDep, GatewayDep

router = APIRouter(prefix="/v1", tags=["openai"])


@router.post("/chat/completions")
async def chat_completions(body: ChatRequest, gateway: GatewayDep, key: ClientKeyDep) -> Any:
    return await gateway.service.chat(body, key)


@router.post("/completions")
async def completions(body: CompletionRequest, gateway: GatewayDep, key: ClientKeyDep) -> Any:
    return await gateway.service.complete(body, key)


@router.get("/models")
async def list_models(gateway: GatewayDep, key: ClientKeyDep) -> dict[str, Any]:
    """The base model and every domain this key may use (id = domain name)."""
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
        name = engine_name(manifest)
        loaded = any(e.adapters.state_of(name) is SlotState.READY for e in gateway.pool.endpoints)
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
