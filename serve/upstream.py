"""Talking to one vLLM OpenAI server: completions, SSE streams, adapter loading.

Transport failures become `EngineUnavailable` (retry later); vLLM's own errors
keep their meaning: a 4xx is the client's mistake, a 5xx is `UpstreamFailed`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from lorastack.serve.errors import BadRequest, EngineUnavailable, GatewayError, UpstreamFailed

logger = logging.getLogger(__name__)

# vLLM answers 404 "The model `x` does not exist." when an adapter is not loaded.
MODEL_MISSING_STATUS = 404


class ModelMissingUpstream(GatewayError):
    """The engine does not know the model name (an adapter it lost, e.g. on restart)."""

    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


def _upstream_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:1000]
        if isinstance(body.get("message"), str):
            return str(body["message"])[:1000]
    return response.reason_phrase


def raise_for_upstream(response: httpx.Response) -> None:
    """Map an engine error response to the gateway error it means."""
    if response.status_code < 400:
        return
    message = _upstream_message(response)
    if response.status_code == MODEL_MISSING_STATUS:
        raise ModelMissingUpstream(message)
    if response.status_code == 503:
        raise EngineUnavailable("the engine is busy or restarting; try again")
    if 400 <= response.status_code < 500:
        raise BadRequest(message)
    logger.warning("engine answered %s", response.status_code)
    raise UpstreamFailed(f"the engine failed to answer (status {response.status_code})")


class Upstream:
    """One vLLM server, by base URL."""

    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        self.url = url.rstrip("/")
        self._client = client

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        try:
            return await self._client.post(f"{self.url}{path}", json=body)
        except httpx.TransportError as error:
            raise EngineUnavailable(
                f"the engine is not reachable ({type(error).__name__})"
            ) from None

    async def healthy(self) -> bool:
        try:
            response = await self._client.get(f"{self.url}/health", timeout=5.0)
        except httpx.TransportError:
            return False
        return response.status_code == 200

    async def complete(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._post(path, body)
        raise_for_upstream(response)
        try:
            data = response.json()
        except json.JSONDecodeError:
            raise UpstreamFailed("the engine sent a response that is not JSON") from None
        if not isinstance(data, dict):
            raise UpstreamFailed("the engine sent an unexpected response")
        return data

    @asynccontextmanager
    async def stream(
        self, path: str, body: dict[str, Any]
    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """Open a streamed completion; yields an iterator of its parsed SSE events.

        Leaving the context closes the connection, which makes vLLM abort the
        generation (a client that went away costs no more engine time).
        """
        request = self._client.build_request("POST", f"{self.url}{path}", json=body)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TransportError as error:
            raise EngineUnavailable(
                f"the engine is not reachable ({type(error).__name__})"
            ) from None
        try:
            if response.status_code >= 400:
                await response.aread()
                raise_for_upstream(response)
            yield _events(response)
        finally:
            await response.aclose()

    async def load_adapter(self, name: str, path: str) -> None:
        response = await self._post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": path})
        if response.status_code >= 400:
            message = _upstream_message(response)
            if "already been loaded" in message or "already loaded" in message:
                return
            raise UpstreamFailed(f"the engine refused adapter {name}: {message}")

    async def unload_adapter(self, name: str) -> None:
        response = await self._post("/v1/unload_lora_adapter", {"lora_name": name})
        if response.status_code == 404 or response.status_code == 400:
            return  # already gone: the goal is reached
        if response.status_code >= 400:
            raise UpstreamFailed(f"the engine failed to unload {name}")


async def _events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    try:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            try:
                event = json.loads(data)
            except json.JSONDecodeError:
                raise UpstreamFailed("the engine sent a malformed stream event") from None
            if isinstance(event, dict):
                if "error" in event and "choices" not in event:
                    error = event["error"] if isinstance(event["error"], dict) else {}
                    raise UpstreamFailed(str(error.get("message", "the engine failed mid-stream")))
                yield event
    except httpx.TransportError as error:
        raise EngineUnavailable(f"the engine stopped mid-answer ({type(error).__name__})") from None
    raise EngineUnavailable("the engine stopped mid-answer")  # the stream ended without [DONE]
