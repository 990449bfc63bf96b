"""The domains the gateway lists (`/v1/models`), shared by every session of the app."""

from __future__ import annotations

import contextlib

from lorastack.ui.client import Domain, Gateway
from lorastack.ui.errors import UiClientError


class Catalogue:
    """The gateway's model list, shared by every session; refetched on a miss."""

    def __init__(self, client: Gateway) -> None:
        self._client = client
        self.domains: list[Domain] = []

    async def refresh(self) -> list[Domain]:
        self.domains = await self._client.list_domains()
        return self.domains

    def find(self, model: str) -> Domain | None:
        # `coffee-shop@2` is the same domain as `coffee-shop` for naming purposes.
        name = model.split("@", 1)[0]
        return next((d for d in self.domains if d.id in (model, name)), None)

    async def lookup(self, model: str) -> Domain | None:
        found = self.find(model)
        if found is None:
            with contextlib.suppress(UiClientError):  # the chat call will report it
                await self.refresh()
            found = self.find(model)
        return found

    async def title(self, model: str) -> str:
        found = await self.lookup(model)
        return found.label if found is not None else model

    @property
    def base(self) -> Domain | None:
        return next((d for d in self.domains if d.is_base), None)


def describe(domain: Domain | None) -> str:
    """The "About this assistant" text of a domain."""
    if domain is None:
        return "*Pick an assistant above.*"
    lines = [f"**{domain.label}** (`{domain.id}`)"]
    if domain.description:
        lines.append(domain.description)
    facts = []
    if domain.version is not None:
        facts.append(f"version v{domain.version}")
    if domain.aliases:
        facts.append(", ".join(f"{a} \N{RIGHTWARDS ARROW} v{v}" for a, v in domain.aliases.items()))
    facts.append("loaded" if domain.loaded else "loads on first use")
    lines.append(" \N{MIDDLE DOT} ".join(facts))
    return "\n\n".join(lines)
