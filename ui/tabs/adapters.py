"""The Adapters tab (only with an admin key): the registry and what each engine holds;
load, unload, promote and roll back adapters through the gateway's admin API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any

import gradio as gr

from lorastack.ui.client import Gateway
from lorastack.ui.errors import UiClientError
from lorastack.ui.wording import warning

ADAPTER_HEADERS = ["domain", "version", "display name", "aliases", "metrics", "loaded"]
DONE_ICON = "\N{CHECK MARK}"

# The table's value, or `gr.update()` to leave it as it is.
Table = Any


class _MissingInput(Exception):
    """A field the action needs is empty: reported like a failed call, and nothing is sent."""


def adapter_rows(domains: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """One table row per published version, from `GET /admin/adapters`."""
    rows: list[list[str]] = []
    for entry in domains:
        aliases = entry.get("aliases") or {}
        for version in entry.get("versions") or []:
            number = version.get("version")
            pointing = sorted(a for a, v in aliases.items() if v == number)
            # An engine that unloaded the adapter keeps an `absent` slot: not worth a mention.
            engines = [e for e in version.get("engines") or [] if e.get("state") != "absent"]
            loaded = ", ".join(
                f"engine {e.get('engine', '?')}: {e.get('state', '?')}" for e in engines
            )
            rows.append(
                [
                    str(entry.get("domain", "")),
                    f"v{number}",
                    str(version.get("display_name") or ""),
                    ", ".join(pointing),
                    _metrics_summary(version.get("metrics")),
                    loaded or "not loaded",
                ]
            )
    return rows


def _metrics_summary(metrics: Any, limit: int = 4) -> str:
    if not isinstance(metrics, dict) or not metrics:
        return ""
    parts = []
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue  # nested or textual entries do not fit a table cell
        parts.append(f"{name} {value:.4g}")
        if len(parts) == limit:
            break
    return ", ".join(parts)


# ---------------------------------------------------------------------------- handlers


async def on_refresh(client: Gateway) -> tuple[Table, str]:
    """(the table, the result line): the table as the gateway has it now."""
    try:
        return adapter_rows(await client.adapters()), ""
    except UiClientError as error:
        return gr.update(), warning(error)


async def _act(client: Gateway, action: Callable[[], Awaitable[str]]) -> tuple[str, Table]:
    """(the result line, the table after it): run an admin action, then reread the table."""
    try:
        result = f"{DONE_ICON} {await action()}"
    except (UiClientError, _MissingInput) as error:
        result = warning(error)
    table, _ = await on_refresh(client)  # left as it is if it cannot be read
    return result, table


def _required(value: str | None, what: str) -> str:
    value = (value or "").strip()
    if not value:
        raise _MissingInput(f"enter the {what} first")
    return value


def _alias(value: str | None) -> str:
    return (value or "").strip() or "prod"


async def on_load(client: Gateway, model: str) -> tuple[str, Table]:
    """Load an adapter (`domain`, `domain@2`, `domain@prod`) on every engine."""
    return await _act(client, lambda: client.load(_required(model, "adapter")))


async def on_unload(client: Gateway, model: str) -> tuple[str, Table]:
    """Unload an adapter from every engine."""
    return await _act(client, lambda: client.unload(_required(model, "adapter")))


async def on_promote(
    client: Gateway, domain: str, version: float | None, alias: str
) -> tuple[str, Table]:
    """Point `domain@alias` (prod by default) at `version`."""

    def promote() -> Awaitable[str]:
        if version is None or int(version) < 1:
            raise _MissingInput("enter a version number (1 or more)")
        return client.promote(_required(domain, "domain"), int(version), _alias(alias))

    return await _act(client, promote)


async def on_rollback(client: Gateway, domain: str, alias: str) -> tuple[str, Table]:
    """Point `domain@alias` (prod by default) back at its previous version."""
    return await _act(client, lambda: client.rollback(_required(domain, "domain"), _alias(alias)))


# ---------------------------------------------------------------------------- layout


def build(client: Gateway) -> None:
    """Lay out the tab (inside a `gr.Tab`) and wire its events."""
    gr.Markdown("The adapter registry and what each engine holds. Actions use the admin key.")
    with gr.Row():
        refresh = gr.Button("\N{CLOCKWISE OPEN CIRCLE ARROW} Refresh", size="sm")
    table = gr.Dataframe(
        headers=ADAPTER_HEADERS,
        value=[],
        interactive=False,
        wrap=True,
        type="array",
        label="Adapters",
    )
    status = gr.Textbox(label="Result", interactive=False, lines=2)
    with gr.Row(equal_height=True):
        ref = gr.Textbox(label="Adapter", placeholder="domain, domain@2 or domain@prod", scale=3)
        load = gr.Button("Load", scale=1)
        unload = gr.Button("Unload", scale=1)
    with gr.Row(equal_height=True):
        promote_domain = gr.Textbox(label="Domain", scale=2)
        promote_version = gr.Number(label="Version", precision=0, minimum=1, value=1, scale=1)
        promote_alias = gr.Textbox(label="Alias", value="prod", scale=1)
        promote = gr.Button("Promote", scale=1)
    with gr.Row(equal_height=True):
        rollback_domain = gr.Textbox(label="Domain", scale=2)
        rollback_alias = gr.Textbox(label="Alias", value="prod", scale=1)
        rollback = gr.Button("Roll back", scale=1)

    refresh.click(partial(on_refresh, client), None, [table, status], api_name="adapters")
    both = [status, table]
    load.click(partial(on_load, client), ref, both, api_name="load_adapter")
    unload.click(partial(on_unload, client), ref, both, api_name="unload_adapter")
    promote.click(
        partial(on_promote, client),
        [promote_domain, promote_version, promote_alias],
        both,
        api_name="promote",
    )
    rollback.click(
        partial(on_rollback, client), [rollback_domain, rollback_alias], both, api_name="rollback"
    )
