"""A scripted stand-in for the UI's gateway client (`lorastack.ui.client.Gateway`).

The tabs' handlers take the client as their first argument, so a test hands them this
fake and checks what they show, without a gateway, an engine or a Gradio server::

    gateway = FakeGateway()
    gateway.enqueue("coffee-shop", ["Hel", "lo", GuardrailNotice(1)])
    gateway.enqueue("coffee-shop", [AnsweredBy("coffee-shop@v2"), "from the canary"])
    gateway.enqueue("ledger-desk", ["half an answer", EngineRestarting(5)])
    outputs = run(collect(chat.on_send(gateway, Catalogue(gateway), "hi", "coffee-shop", [])))

With nothing enqueued a domain it lists answers `"echo from {model}: {last question}"` in
word-sized pieces, then `GuardrailNotice(0)`, like the fake engine behind a real gateway
(without naming the version that answered: script `AnsweredBy` for that); a model it does
not list fails with `UnknownDomain`, as the gateway's 404 reads.

Ratings (`rate`) are recorded in `calls`; one of an id in `uncaptured` is refused as the
gateway refuses an answer it did not capture (`FeedbackNotCollected`).

The admin calls act on `adapter_table` (its own copy), in the shape of `GET /admin/adapters`:
starting a canary sets the domain's `canary`, stopping it moves it to `last_canary`, and
the gateway's refusals (no such domain, no canary running) read as they would.
`feedback_counts` answers from `feedback_table` (domain -> `GET /admin/feedback`'s
`versions`), and no versions for a domain of `adapter_table` it lacks; `usage` answers
`usage_table` (`GET /admin/usage`'s `groups`) whatever it is asked.

The key calls act on `key_table` (its own copy, in the shape of `GET /admin/keys`'s
`data`): creating a key adds one whose `key` (`lsk-fake-<name>-<n>`, its last four
characters the hint) only the answer holds, revoking sets `revoked_at`, rotating gives a
new key and hint; a name taken is a 409, an unknown (or revoked) one a 404, as the gateway
words them. Every key given out is in `issued`, to check the UI shows none of them twice.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lorastack.ui.client import Domain, GuardrailNotice, Message, StreamPiece, Vote
from lorastack.ui.errors import UiClientError, error_from_response

T = TypeVar("T")

# What a scripted answer is made of: text, the guardrail notice, or the error that ends it.
Script = Sequence[StreamPiece | UiClientError]


def run(awaitable: Awaitable[T]) -> T:
    """Run one handler call to its end, outside any event loop."""

    async def wait() -> T:
        return await awaitable

    return asyncio.run(wait())


async def collect(stream: AsyncIterator[T]) -> list[T]:
    """Every value a streaming handler yields, in order."""
    return [item async for item in stream]


def default_domains() -> list[Domain]:
    """The base model and two domains, as `/v1/models` lists them in the gateway tests."""
    return [
        Domain("tiny", "tiny"),
        Domain(
            "coffee-shop",
            "Bean There",
            "Coffee orders and opening hours.",
            domain="coffee-shop",
            version=1,
            aliases={"prod": 1},
        ),
        Domain("ledger-desk", "Ledgerly Support", domain="ledger-desk", version=1, loaded=True),
    ]


@dataclass
class ChatCall:
    """One `stream_chat` call as the fake received it."""

    model: str
    messages: list[Message]
    params: dict[str, Any]
    finished: bool = False  # read to its end
    open: bool = True  # False once the stream ended: read to its end, failed or closed early


@dataclass
class FakeGateway:
    """The `Gateway` protocol, scripted; it records every call it gets."""

    domains: list[Domain] = field(default_factory=default_domains)
    adapter_table: list[dict[str, Any]] = field(default_factory=list)
    feedback_table: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    usage_table: list[dict[str, Any]] = field(default_factory=list)
    key_table: list[dict[str, Any]] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)  # every key created or rotated, in order
    uncaptured: set[str] = field(default_factory=set)  # response ids rated with a 404
    # Method name -> the error every call of it raises (`list_domains`, `adapters`, `load`...).
    errors: dict[str, UiClientError] = field(default_factory=dict)
    chats: list[ChatCall] = field(default_factory=list)
    calls: list[tuple[Any, ...]] = field(default_factory=list)  # all but stream_chat
    _scripts: dict[str, deque[Script]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The canary calls change the table: a test's module-level table stays as it is.
        self.adapter_table = copy.deepcopy(self.adapter_table)
        self.key_table = copy.deepcopy(self.key_table)

    def enqueue(self, model: str, script: Script) -> None:
        """Script the next answer of `model` (first in, first out)."""
        self._scripts.setdefault(model, deque()).append(list(script))

    @property
    def last_chat(self) -> ChatCall:
        return self.chats[-1]

    # -- OpenAI API -------------------------------------------------------------

    async def list_domains(self) -> list[Domain]:
        await self._call("list_domains")
        return list(self.domains)

    async def stream_chat(
        self, model: str, messages: Sequence[Message], **params: Any
    ) -> AsyncIterator[StreamPiece]:
        call = ChatCall(model, list(messages), params)
        self.chats.append(call)
        try:
            for piece in self._script(model, messages):
                if isinstance(piece, UiClientError):
                    raise piece
                yield piece
                await asyncio.sleep(0)  # let another stream (or a cancellation) in
            call.finished = True
        finally:
            call.open = False

    def _script(self, model: str, messages: Sequence[Message]) -> Script:
        queued = self._scripts.get(model)
        if queued:
            return queued.popleft()
        if model.split("@", 1)[0] not in {d.id for d in self.domains}:
            return [error_from_response(404, None, {}, model=model)]
        question = messages[-1].content if messages else ""
        words = f"echo from {model}: {question}".split(" ")
        pieces: list[StreamPiece | UiClientError] = [w + " " for w in words[:-1]]
        return [*pieces, words[-1], GuardrailNotice(0)]

    async def _call(self, method: str, *args: Any) -> None:
        self.calls.append((method, *args))
        if method in self.errors:
            raise self.errors[method]

    async def rate(self, response_id: str, rating: Vote, correction: str | None = None) -> None:
        await self._call("rate", response_id, rating, correction)
        if response_id in self.uncaptured:
            raise error_from_response(404, None, {"error": {"code": "not_found"}}, rating=True)

    # -- admin API --------------------------------------------------------------

    async def adapters(self) -> list[dict[str, Any]]:
        await self._call("adapters")
        return list(self.adapter_table)

    async def feedback_counts(self, domain: str) -> list[dict[str, Any]]:
        await self._call("feedback_counts", domain)
        if domain not in self.feedback_table:
            self._domain(domain)  # a 404 for a domain the table lacks
        return list(self.feedback_table.get(domain, []))

    async def usage(
        self, since: str = "7d", by: str = "domain", daily: bool = False
    ) -> list[dict[str, Any]]:
        await self._call("usage", since, by, daily)
        return list(self.usage_table)

    async def load(self, model: str) -> str:
        await self._call("load", model)
        return f"loaded {model}: engine 0 ready"

    async def unload(self, model: str) -> str:
        await self._call("unload", model)
        return f"unloaded {model}"

    async def promote(self, domain: str, version: int, alias: str = "prod") -> str:
        await self._call("promote", domain, version, alias)
        return f"{domain}@{alias} now points to v{version}"

    async def rollback(self, domain: str, alias: str = "prod") -> str:
        await self._call("rollback", domain, alias)
        return f"{domain}@{alias} rolled back"

    async def start_canary(self, domain: str, version: int, weight: float) -> str:
        await self._call("start_canary", domain, version, weight)
        entry = self._domain(domain)
        if version not in [v.get("version") for v in entry.get("versions") or []]:
            raise _refused(404, f"unknown adapter {domain}@v{version}")
        if (entry.get("aliases") or {}).get("prod") == version:
            raise _refused(400, f"{domain}@v{version} is already prod")
        entry["canary"] = {
            "version": version,
            "weight": weight,
            "started_at": "2025-01-01T12:00:00Z",
            "guard": {"min_answers": 20, "error_margin": 0.05, "rule_margin": 0.2},
        }
        return f"{domain}: v{version} is the canary for {weight:g}% of conversations"

    async def stop_canary(self, domain: str, reason: str | None = None) -> str:
        await self._call("stop_canary", domain, reason)
        entry = self._domain(domain)
        canary = entry.get("canary")
        if not canary:
            raise _refused(400, f"domain {domain!r} has no canary running")
        entry["canary"] = None
        entry["last_canary"] = {
            "version": canary["version"],
            "outcome": "stopped",
            "reason": reason or "stopped",
            "at": "2025-01-01T13:00:00Z",
        }
        return f"{domain}: canary v{canary['version']} stopped, prod gets all conversations"

    async def keys(self, include_revoked: bool = False) -> list[dict[str, Any]]:
        await self._call("keys", include_revoked)
        return [dict(k) for k in self.key_table if include_revoked or not k.get("revoked_at")]

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
        limits = {"rpm": rpm, "tpm": tpm, "budget": budget}
        await self._call("create_key", name, list(domains), limits, period, expires)
        if any(k.get("name") == name for k in self.key_table):
            raise _refused(409, f"a key named {name!r} exists already")
        secret = self._issue(name)
        entry = {
            "name": name,
            "hint": f"...{secret[-4:]}",
            "domains": list(domains) or ["*"],
            **limits,
            "period": period if budget else None,
            "expires_at": "2027-06-30T00:00:00Z" if expires else None,
            "created_at": "2026-12-01T12:00:00Z",
            "rotated_at": None,
            "revoked_at": None,
            "last_used_at": None,
        }
        self.key_table.append(entry)
        return {**entry, "key": secret}

    async def revoke_key(self, name: str) -> dict[str, Any]:
        await self._call("revoke_key", name)
        entry = self._live_key(name)
        entry["revoked_at"] = "2026-12-02T12:00:00Z"
        return dict(entry)

    async def rotate_key(self, name: str) -> dict[str, Any]:
        await self._call("rotate_key", name)
        entry = self._live_key(name)
        secret = self._issue(name)
        entry["hint"] = f"...{secret[-4:]}"
        entry["rotated_at"] = "2026-12-02T12:00:00Z"
        return {**entry, "key": secret}

    def _issue(self, name: str) -> str:
        secret = f"lsk-fake-{name}-{len(self.issued):04d}"
        self.issued.append(secret)
        return secret

    def _live_key(self, name: str) -> dict[str, Any]:
        found = next(
            (k for k in self.key_table if k.get("name") == name and not k.get("revoked_at")),
            None,
        )
        if found is None:
            raise _refused(404, f"no live key named {name!r}")
        return found

    def _domain(self, domain: str) -> dict[str, Any]:
        found = next((d for d in self.adapter_table if d.get("domain") == domain), None)
        if found is None:
            raise _refused(404, f"unknown domain {domain!r}")
        return found


def _refused(status: int, message: str) -> UiClientError:
    """An admin refusal as the client reads the gateway's OpenAI-shaped error body."""
    return error_from_response(status, None, {"error": {"message": message}}, admin=True)
