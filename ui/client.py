"""A small typed client of the lorastack gateway, for the UI.

Only HTTP: the `openai` client for `/v1/models` and streamed `/v1/chat/completions`, and
`httpx` for `/v1/feedback` and the admin API. Every failure becomes a `UiClientError`
(`ui.errors`) whose message can be shown to a person as it is (no traceback, no personal
value).

`Gateway` is what the tabs need of it; the tests drive the tabs' handlers with a fake
that has the same methods.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import quote

import httpx
import openai
from openai import AsyncOpenAI
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionMessageParam,
    ChatCompletionUserMessageParam,
)

from lorastack.ui.errors import (
    AccessDenied,
    GatewayUnreachable,
    RequestRefused,
    error_from_response,
    stream_error,
)
from lorastack.ui.wording import aliases_summary, engines_summary, percent

PII_HEADER = "x-lorastack-pii-masked"
DEFAULT_TIMEOUT_S = 120.0

Role = Literal["user", "assistant"]
Vote = Literal[1, -1]


# ---------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Domain:
    """One entry of `/v1/models`: a domain, or the base model (`domain is None`)."""

    id: str
    display_name: str
    description: str = ""
    domain: str | None = None
    version: int | None = None
    loaded: bool = False
    aliases: dict[str, int] = field(default_factory=dict)

    @property
    def is_base(self) -> bool:
        return self.domain is None

    @property
    def label(self) -> str:
        """What a person picks in a list: the display name (the base model says so)."""
        return f"{self.display_name} (base model)" if self.is_base else self.display_name

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> Domain:
        model_id = str(card["id"])
        version = card.get("version")
        aliases = card.get("aliases")
        return cls(
            id=model_id,
            display_name=str(card.get("display_name") or model_id),
            description=str(card.get("description") or ""),
            domain=str(card["domain"]) if card.get("domain") else None,
            version=int(version) if isinstance(version, int) else None,
            loaded=bool(card.get("loaded")),
            aliases={str(k): int(v) for k, v in aliases.items()}
            if isinstance(aliases, dict)
            else {},
        )


@dataclass(frozen=True)
class GuardrailNotice:
    """What the guardrails did to one request, as a count: never the values."""

    masked: int

    @property
    def text(self) -> str:
        """A sentence for the user, empty when nothing was masked."""
        if self.masked <= 0:
            return ""
        items = "item was" if self.masked == 1 else "items were"
        return f"{self.masked} personal data {items} masked before reaching the model"


@dataclass(frozen=True)
class Message:
    """One turn of the conversation sent to the gateway."""

    role: Role
    content: str


@dataclass(frozen=True)
class AnsweredBy:
    """The model that wrote an answer, as the gateway names it in the answer: a domain's
    exact version (`coffee-shop@v2`) when it was asked for `coffee-shop`, which may be the
    canary rather than `prod`; and the answer's `id`, by which it is rated."""

    model: str
    response_id: str = ""


StreamPiece = str | GuardrailNotice | AnsweredBy


# ---------------------------------------------------------------------------- client


class Gateway(Protocol):
    """The gateway calls the UI makes; each raises a `UiClientError` when it fails."""

    async def list_domains(self) -> list[Domain]:
        """The base model and every domain this key may use (`/v1/models`)."""
        ...

    def stream_chat(
        self, model: str, messages: Sequence[Message], **params: Any
    ) -> AsyncIterator[StreamPiece]:
        """`AnsweredBy` with the first piece, the answer's text pieces as they arrive,
        then one `GuardrailNotice`."""
        ...

    async def rate(self, response_id: str, rating: Vote, correction: str | None = None) -> None:
        """Rate an answer by its `id` (`POST /v1/feedback`), with a better answer perhaps;
        `FeedbackNotCollected` when its assistant keeps no answers to rate."""
        ...

    async def adapters(self) -> list[dict[str, Any]]:
        """Each domain with its aliases and versions (`GET /admin/adapters`)."""
        ...

    async def feedback_counts(self, domain: str) -> list[dict[str, Any]]:
        """Per version of the domain: answers captured, ratings up and down, the share up,
        corrections (`GET /admin/feedback`)."""
        ...

    async def usage(
        self, since: str = "7d", by: str = "domain", daily: bool = False
    ) -> list[dict[str, Any]]:
        """Tokens and latency of the answers since `since` (`7d`, a date), summed by `by`
        (key, domain or version), per UTC day with `daily` (`GET /admin/usage`)."""
        ...

    async def load(self, model: str) -> str:
        """Load an adapter on every engine; a readable result."""
        ...

    async def unload(self, model: str) -> str:
        """Unload an adapter from every engine; a readable result."""
        ...

    async def promote(self, domain: str, version: int, alias: str = "prod") -> str:
        """Point `domain@alias` at `version`; a readable result."""
        ...

    async def rollback(self, domain: str, alias: str = "prod") -> str:
        """Point `domain@alias` back at its previous version; a readable result."""
        ...

    async def start_canary(self, domain: str, version: int, weight: float) -> str:
        """Send `weight` percent of the domain's conversations to `version`; a readable
        result."""
        ...

    async def stop_canary(self, domain: str, reason: str | None = None) -> str:
        """End the domain's canary (`prod` gets all traffic again); a readable result."""
        ...

    async def keys(self, include_revoked: bool = False) -> list[dict[str, Any]]:
        """The client keys kept in the gateway's database (revoked ones too with
        `include_revoked`), each with its hint, never the key (`GET /admin/keys`)."""
        ...

    async def create_key(
        self,
        name: str,
        domains: Sequence[str] = (),
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        budget: int | None = None,
        period: str = "month",
        expires: str | None = None,
    ) -> dict[str, Any]:
        """Create a key for `domains` (every one when none) with these limits
        (`POST /admin/keys`); the key as the gateway shows it, with `key`, given only now."""
        ...

    async def revoke_key(self, name: str) -> dict[str, Any]:
        """Stop a key from working; the key as the gateway shows it now."""
        ...

    async def rotate_key(self, name: str) -> dict[str, Any]:
        """A new key for the same name, domains and limits; the key as the gateway shows it,
        with the new `key`, given only now."""
        ...


def normalise_api_url(url: str) -> str:
    """`http://host:port` from a URL given with or without a trailing `/v1`."""
    url = url.strip().rstrip("/")
    return re.sub(r"/v1$", "", url)


class GatewayClient:
    """Calls to one gateway. Stateless: each call opens (and closes) its own connection pool,
    so one instance may serve any event loop (Gradio's, a test's)."""

    def __init__(
        self,
        api_url: str,
        api_key: str | None = None,
        admin_key: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.api_url = normalise_api_url(api_url)
        self.api_key = api_key
        self.admin_key = admin_key
        self.timeout_s = timeout_s

    @property
    def has_admin(self) -> bool:
        return bool(self.admin_key)

    def _openai(self) -> AsyncOpenAI:
        # An open gateway ignores the key, but the client insists on one.
        # No retries: the UI reports a failure at once and the user decides.
        return AsyncOpenAI(
            base_url=f"{self.api_url}/v1",
            api_key=self.api_key or "no-key",
            max_retries=0,
            timeout=self.timeout_s,
        )

    def _unreachable(self, error: Exception) -> GatewayUnreachable:
        if isinstance(error, (openai.APITimeoutError, httpx.TimeoutException)):
            return GatewayUnreachable(f"gateway did not answer in time at {self.api_url}")
        return GatewayUnreachable(f"gateway unreachable at {self.api_url}")

    # -- OpenAI API -------------------------------------------------------------

    async def list_domains(self) -> list[Domain]:
        """The base model and every domain this key may use, as `/v1/models` lists them."""
        try:
            async with self._openai() as client:
                page = await client.models.list()
                return [Domain.from_card(model.to_dict()) for model in page.data]
        except openai.APIStatusError as error:
            raise error_from_response(
                error.status_code, error.response.headers, error.body
            ) from None
        except openai.APIConnectionError as error:
            raise self._unreachable(error) from None

    async def stream_chat(
        self, model: str, messages: Sequence[Message], **params: Any
    ) -> AsyncIterator[StreamPiece]:
        """Yield the answer's text pieces as they arrive, then one `GuardrailNotice`;
        `AnsweredBy` comes first, with the first chunk (the model and the `id` it names:
        every chunk of a stream carries the same).

        Closing the iterator early (a Stop button) closes the stream, which makes the
        gateway stop the engine's generation.
        """
        wire = [_wire(m) for m in messages]
        try:
            async with (
                self._openai() as client,
                client.chat.completions.with_streaming_response.create(
                    model=model, messages=wire, stream=True, **params
                ) as response,
            ):
                notice = GuardrailNotice(_masked(response.headers.get(PII_HEADER)))
                stream = await response.parse()
                answered = False
                async for chunk in stream:
                    if not answered and (chunk.model or chunk.id):
                        answered = True
                        yield AnsweredBy(chunk.model, chunk.id)
                    for choice in chunk.choices:
                        if choice.delta.content:
                            yield choice.delta.content
                yield notice
        except openai.APIStatusError as error:
            raise error_from_response(
                error.status_code, error.response.headers, error.body, model=model
            ) from None
        except openai.APIConnectionError as error:
            raise self._unreachable(error) from None
        except openai.APIError as error:  # an error event inside the stream
            raise stream_error({"error": error.body}, model) from None

    async def rate(self, response_id: str, rating: Vote, correction: str | None = None) -> None:
        """`POST /v1/feedback` with this UI's key, the one its answers were received with."""
        body: dict[str, Any] = {"response_id": response_id, "rating": rating}
        if correction is not None:
            body["correction"] = correction
        await self._json("POST", "/v1/feedback", self.api_key, body, rating=True)

    # -- admin API --------------------------------------------------------------

    async def _json(
        self,
        method: str,
        path: str,
        key: str | None,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        *,
        admin: bool = False,
        rating: bool = False,
    ) -> Any:
        """One JSON call with `key`; its payload, or the error its response means (to an
        admin call, or to a rating)."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        try:
            async with httpx.AsyncClient(base_url=self.api_url, timeout=self.timeout_s) as http:
                response = await http.request(
                    method, path, json=body, params=params, headers=headers
                )
        except httpx.TransportError as error:
            raise self._unreachable(error) from None
        try:
            payload = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            payload = {"error": {"message": response.text[:300]}}
        if response.status_code >= 400:
            raise error_from_response(
                response.status_code, response.headers, payload, admin=admin, rating=rating
            )
        return payload

    async def _admin(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        if not self.admin_key:
            raise AccessDenied("no admin key is configured for this UI")
        return await self._json(method, f"/admin{path}", self.admin_key, body, params, admin=True)

    async def adapters(self) -> list[dict[str, Any]]:
        """`GET /admin/adapters`: each domain with its aliases and versions."""
        payload = await self._admin("GET", "/adapters")
        domains = payload.get("domains") if isinstance(payload, dict) else None
        return [d for d in domains or [] if isinstance(d, dict)]

    async def feedback_counts(self, domain: str) -> list[dict[str, Any]]:
        """`GET /admin/feedback`: per version of the domain, what its users said."""
        payload = await self._admin("GET", "/feedback", params={"domain": domain})
        versions = payload.get("versions") if isinstance(payload, dict) else None
        return [v for v in versions or [] if isinstance(v, dict)]

    async def usage(
        self, since: str = "7d", by: str = "domain", daily: bool = False
    ) -> list[dict[str, Any]]:
        """`GET /admin/usage`: the answers' tokens and latency, summed per group."""
        params = {"since": since, "by": by, "daily": "true" if daily else "false"}
        payload = await self._admin("GET", "/usage", params=params)
        groups = payload.get("groups") if isinstance(payload, dict) else None
        return [g for g in groups or [] if isinstance(g, dict)]

    async def load(self, model: str) -> str:
        """Load `domain`, `domain@N` or `domain@alias` on every engine; a readable result."""
        payload = await self._admin("POST", "/adapters/load", {"model": model})
        return f"loaded {payload.get('adapter')}: {engines_summary(payload)}"

    async def unload(self, model: str) -> str:
        payload = await self._admin("POST", "/adapters/unload", {"model": model})
        engines = engines_summary(payload)
        return f"unloaded {payload.get('adapter')}" + (f": {engines}" if engines else "")

    async def promote(self, domain: str, version: int, alias: str = "prod") -> str:
        payload = await self._admin(
            "POST", "/adapters/promote", {"domain": domain, "version": version, "alias": alias}
        )
        return f"{domain}@{alias} now points to v{version} ({aliases_summary(payload)})"

    async def rollback(self, domain: str, alias: str = "prod") -> str:
        payload = await self._admin(
            "POST", "/adapters/rollback", {"domain": domain, "alias": alias}
        )
        aliases = payload.get("aliases") if isinstance(payload, dict) else None
        now = aliases.get(alias) if isinstance(aliases, dict) else None
        target = f"v{now}" if now is not None else "its previous version"
        return f"{domain}@{alias} rolled back to {target} ({aliases_summary(payload)})"

    async def start_canary(self, domain: str, version: int, weight: float) -> str:
        """`POST /admin/adapters/canary`: `weight` percent of the domain's conversations go
        to `version`, the rest to `prod` (the gateway's default guard may stop it)."""
        payload = await self._admin(
            "POST", "/adapters/canary", {"domain": domain, "version": version, "weight": weight}
        )
        canary = payload.get("canary") if isinstance(payload, dict) else None
        if isinstance(canary, dict):  # what the gateway recorded, not what was asked
            version = canary.get("version", version)
            weight = canary.get("weight", weight)
        return (
            f"{domain}: v{version} is the canary for {percent(weight)} of conversations "
            f"({aliases_summary(payload)})"
        )

    async def stop_canary(self, domain: str, reason: str | None = None) -> str:
        """`POST /admin/adapters/canary/stop`: `prod` gets all the domain's traffic again."""
        body: dict[str, Any] = {"domain": domain}
        if reason:
            body["reason"] = reason
        payload = await self._admin("POST", "/adapters/canary/stop", body)
        ended = payload.get("last_canary") if isinstance(payload, dict) else None
        which = f"canary v{ended['version']}" if isinstance(ended, dict) else "the canary"
        aliases = aliases_summary(payload)
        return f"{domain}: {which} stopped, prod gets all conversations ({aliases})"

    async def keys(self, include_revoked: bool = False) -> list[dict[str, Any]]:
        """`GET /admin/keys[?all=true]`: the database's client keys, without the keys."""
        params = {"all": "true"} if include_revoked else None
        payload = await self._admin("GET", "/keys", params=params)
        data = payload.get("data") if isinstance(payload, dict) else None
        return [k for k in data or [] if isinstance(k, dict)]

    async def create_key(
        self,
        name: str,
        domains: Sequence[str] = (),
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        budget: int | None = None,
        period: str = "month",
        expires: str | None = None,
    ) -> dict[str, Any]:
        """`POST /admin/keys`: only what is given is sent (no domains: the gateway's `*`);
        `period` counts only with a `budget`."""
        body: dict[str, Any] = {"name": name}
        if domains:
            body["domains"] = list(domains)
        for field_name, value in (("rpm", rpm), ("tpm", tpm), ("budget", budget)):
            if value is not None:
                body[field_name] = value
        if budget is not None:
            body["period"] = period
        if expires:
            body["expires"] = expires
        return _issued(await self._admin("POST", "/keys", body))

    async def revoke_key(self, name: str) -> dict[str, Any]:
        """`POST /admin/keys/{name}/revoke`."""
        payload = await self._admin("POST", f"/keys/{quote(name, safe='')}/revoke")
        return payload if isinstance(payload, dict) else {}

    async def rotate_key(self, name: str) -> dict[str, Any]:
        """`POST /admin/keys/{name}/rotate`."""
        return _issued(await self._admin("POST", f"/keys/{quote(name, safe='')}/rotate"))


def _wire(message: Message) -> ChatCompletionMessageParam:
    if message.role == "user":
        return ChatCompletionUserMessageParam(role="user", content=message.content)
    return ChatCompletionAssistantMessageParam(role="assistant", content=message.content)


def _issued(payload: Any) -> dict[str, Any]:
    """A created or rotated key's view, which must hold the key: the gateway gives it once."""
    if not isinstance(payload, dict) or not isinstance(payload.get("key"), str):
        raise RequestRefused("the gateway's answer holds no key: rotate the key to get one")
    return payload


def _masked(raw: str | None) -> int:
    try:
        return max(0, int(raw or 0))
    except ValueError:
        return 0
