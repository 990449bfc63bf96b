"""Talking to one vLLM OpenAI server: completions, SSE streams, adapter loading.

Everything the engine says becomes a typed error here, once: transport
failures are `EngineUnavailable` (retry later), a model name it does not know
is `EngineLostModel` (the engine session reloads and retries), any other 4xx
is the client's mistake (`BadRequest`) and a 5xx is `UpstreamFailed`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from lorastack.serve.errors import (
    BadRequest,
    EngineLostModel,
    EngineUnavailable,
    UpstreamFailed,
)
from lorastack.settings import UpstreamKind
from lorastack.sse import StreamBroken, StreamErrorEvent, StreamIncomplete, read_events

logger = logging.getLogger(__name__)

# vLLM answers 404 "The model `x` does not exist." for a model name it does not serve.
MODEL_MISSING_STATUS = 404


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
    """Map an engine error response to the error it means."""
    if response.status_code < 400:
        return
    message = _upstream_message(response)
    if response.status_code == MODEL_MISSING_STATUS:
        raise EngineLostModel(message)
    if response.status_code == 503:
        raise EngineUnavailable("the engine is busy or restarting; try again")
    if 400 <= response.status_code < 500:
        raise BadRequest(message)
    logger.warning("engine answered %s", response.status_code)
    raise UpstreamFailed(f"the engine failed to answer (status {response.status_code})")


def _unreachable(error: httpx.TransportError) -> EngineUnavailable:
    return EngineUnavailable(f"the engine is not reachable ({type(error).__name__})")


@dataclass(frozen=True)
class UpstreamApi:
    """How an upstream names adapters, loads them and says it is healthy."""

    health_path: str = "/health"
    loads_on_demand: bool = False
    """The upstream loads a version on its first request by name (lorastack's LoRA
    resolver, Ray Serve LLM): the gateway never calls the management API."""
    adapter_prefix: str = ""
    """Put before the version's name in `model` (Ray Serve LLM: `<base model>:`)."""

    @classmethod
    def of(cls, kind: UpstreamKind, base_model: str) -> UpstreamApi:
        if kind == "ray-serve":
            return cls("/-/healthz", loads_on_demand=True, adapter_prefix=f"{base_model}:")
        return cls(loads_on_demand=kind == "vllm-resolver")


class Upstream:
    """One vLLM server (or an OpenAI endpoint in front of several), by base URL."""

    def __init__(self, url: str, client: httpx.AsyncClient, api: UpstreamApi | None = None) -> None:
        self.url = url.rstrip("/")
        self._client = client
        self.api = api or UpstreamApi()

    def model_for(self, adapter: str) -> str:
        """The `model` to send this upstream for the adapter named `adapter` (`domain@vN`)."""
        return f"{self.api.adapter_prefix}{adapter}"

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        try:
            return await self._client.post(f"{self.url}{path}", json=body)
        except httpx.TransportError as error:
            raise _unreachable(error) from None

    async def healthy(self) -> bool:
        try:
            response = await self._client.get(f"{self.url}{self.api.health_path}", timeout=5.0)
        except httpx.TransportError:
            return False
        return response.status_code == 200

    async def served_models(self) -> set[str]:
        """The model names the engine serves now: the base model and its loaded adapters."""
        try:
            response = await self._client.get(f"{self.url}/v1/models", timeout=5.0)
        except httpx.TransportError as error:
            raise _unreachable(error) from None
        raise_for_upstream(response)
        data = response.json().get("data") or []
        return {str(m.get("id")) for m in data if isinstance(m, dict)}

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
            raise _unreachable(error) from None
        try:
            if response.status_code >= 400:
                await response.aread()
                raise_for_upstream(response)
            yield _engine_events(response)
        finally:
            await response.aclose()

    async def load_adapter(self, name: str, path: str) -> None:
        if self.api.loads_on_demand:
            return  # the first request naming it loads it there
        response = await self._post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": path})
        if response.status_code < 400:
            return
        # vLLM refuses to load a name it already serves (after a gateway restart, say):
        # the goal is reached. Asked rather than read from its message's wording.
        if 400 <= response.status_code < 500 and name in await self.served_models():
            return
        raise UpstreamFailed(f"the engine refused adapter {name}: {_upstream_message(response)}")

    async def unload_adapter(self, name: str) -> None:
        if self.api.loads_on_demand:
            return  # the upstream evicts by itself
        response = await self._post("/v1/unload_lora_adapter", {"lora_name": name})
        if response.status_code in (400, 404):
            return  # already gone: the goal is reached
        if response.status_code >= 400:
            raise UpstreamFailed(f"the engine failed to unload {name}")


async def _engine_events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The engine's stream events, its failures as gateway errors."""
    try:
        async for event in read_events(response):
            yield event
    except httpx.TransportError as error:
        raise EngineUnavailable(f"the engine stopped mid-answer ({type(error).__name__})") from None
    except StreamIncomplete:
        raise EngineUnavailable("the engine stopped mid-answer") from None
    except StreamBroken:
        raise UpstreamFailed("the engine sent a malformed stream event") from None
    except StreamErrorEvent as error:
        raise UpstreamFailed(str(error)) from None
