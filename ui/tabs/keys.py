"""The keys section of the Adapters tab: what `lorastack keys` does, through the gateway's
admin API (`/admin/keys`): the client keys kept in the gateway's database, each with its
domains, limits, expiry and last use; create one, revoke or rotate one. Refreshed with the
tab's table.

The table shows a key's hint (`...wxyz`), never the key. A created or rotated key is in
the gateway's answer once: it is shown once, in its own field, and cleared by the
section's next create, revoke or rotate.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import gradio as gr

from lorastack.keys import describe_limits
from lorastack.ui.client import Gateway
from lorastack.ui.errors import UiClientError
from lorastack.ui.wording import warning

KEY_HEADERS = ["name", "key", "domains", "limits", "expires", "last used", "state"]
PERIODS = ["day", "week", "month"]
DONE_ICON = "\N{CHECK MARK}"
SHOWN_ONCE = (
    "Shown only now: copy it and hand it to its owner. The gateway keeps its hash and "
    "last four characters, never the key; a lost key can only be rotated."
)

# A component's value, or `gr.update()` to leave it as it is.
Update = Any


class _BadInput(Exception):
    """A field the action needs is empty: reported like a refusal, and nothing is sent."""


# ---------------------------------------------------------------------------- wording


def key_rows(keys: Sequence[Mapping[str, Any]], now: datetime | None = None) -> list[list[str]]:
    """One table row per key, from `GET /admin/keys`: its hint, never the key."""
    now = now or datetime.now(UTC)
    return [
        [
            str(key.get("name") or ""),
            str(key.get("hint") or ""),
            ", ".join(str(d) for d in key.get("domains") or []),
            limits_text(key),
            _when(key.get("expires_at"), "never"),
            _when(key.get("last_used_at"), "not yet"),
            _state(key, now),
        ]
        for key in keys
    ]


def limits_text(key: Mapping[str, Any]) -> str:
    """A key's limits as `lorastack keys list` words them (`60 rpm, 2000000 tokens/month`);
    a value that is not a positive count is no limit."""
    return describe_limits(
        _count(key.get("rpm")), _count(key.get("tpm")), _count(key.get("budget")), key.get("period")
    )


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _parsed(value: Any) -> datetime | None:
    """A time of the gateway's answer (ISO 8601, UTC when it names no zone)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _when(value: Any, absent: str) -> str:
    if not value:
        return absent
    at = _parsed(value)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if at else str(value)


def _state(key: Mapping[str, Any], now: datetime) -> str:
    if key.get("revoked_at"):
        return "revoked"
    expires = _parsed(key.get("expires_at"))
    if expires is not None and now >= expires:
        return "expired"
    return "live"


def _live_names(keys: Sequence[Mapping[str, Any]]) -> list[str]:
    """The names a key can be revoked or rotated by: the keys not revoked."""
    return [str(k["name"]) for k in keys if k.get("name") and not k.get("revoked_at")]


# ---------------------------------------------------------------------------- handlers


async def on_keys(client: Gateway, include_revoked: bool) -> tuple[Update, Update, str]:
    """(the table, the names to pick from, the result line): the keys as the gateway has
    them now; the table and the names are left as they are when they cannot be read (the
    result line says why)."""
    try:
        keys = await client.keys(include_revoked=bool(include_revoked))
    except UiClientError as error:
        return gr.update(), gr.update(), warning(error)
    return key_rows(keys), gr.update(choices=_live_names(keys)), ""


async def _act(
    client: Gateway,
    include_revoked: bool,
    action: Callable[[], Awaitable[tuple[str, str]]],
) -> tuple[str, Update, Update, Update]:
    """(the result line, the new key's field, the table, the names): run a key action, then
    reread the table. The field shows a key the action was given, and is emptied (and
    hidden) otherwise: a key is shown once."""
    secret = ""
    try:
        said, secret = await action()
        result = f"{DONE_ICON} {said}"
    except (UiClientError, _BadInput) as error:
        result = warning(error)
    table, names, _ = await on_keys(client, include_revoked)  # as it is if it cannot be read
    return result, gr.update(value=secret, visible=bool(secret)), table, names


def _name(value: str | None) -> str:
    name = (value or "").strip()
    if not name:
        raise _BadInput("enter the key's name first")
    return name


def _domains(value: str | None) -> list[str]:
    """Comma-separated domains; none: every domain (the gateway's default, `*`)."""
    return [d.strip() for d in (value or "").split(",") if d.strip()]


def _limit(value: float | None) -> int | None:
    """A limit's field: empty is no limit; the gateway refuses one below 1."""
    return None if value is None else int(value)


def _issued(view: Mapping[str, Any]) -> str:
    return str(view.get("key") or "")


async def on_create(
    client: Gateway,
    name: str,
    domains: str,
    rpm: float | None,
    tpm: float | None,
    budget: float | None,
    period: str | None,
    expires: str | None,
    include_revoked: bool,
) -> tuple[str, Update, Update, Update]:
    """Create a key: its domains (every one when none is named), its limits and expiry; the
    new key is shown once."""

    async def create() -> tuple[str, str]:
        view = await client.create_key(
            _name(name),
            _domains(domains),
            rpm=_limit(rpm),
            tpm=_limit(tpm),
            budget=_limit(budget),
            period=period or "month",
            expires=(expires or "").strip() or None,
        )
        created = str(view.get("name") or name)
        until = _when(view.get("expires_at"), "")
        details = limits_text(view) + (f", until {until}" if until else "")
        return f"created key {created} ({details}); copy it below", _issued(view)

    return await _act(client, include_revoked, create)


async def on_revoke(
    client: Gateway, name: str | None, include_revoked: bool
) -> tuple[str, Update, Update, Update]:
    """Revoke a key: it stops working (its usage and audit records stay)."""

    async def revoke() -> tuple[str, str]:
        key_name = _name(name)
        view = await client.revoke_key(key_name)
        hint = f" ({view['hint']})" if view.get("hint") else ""
        return f"revoked key {key_name}{hint}: it no longer works", ""

    return await _act(client, include_revoked, revoke)


async def on_rotate(
    client: Gateway, name: str | None, include_revoked: bool
) -> tuple[str, Update, Update, Update]:
    """Rotate a key: a new key for the same name, domains and limits, shown once; the old
    one stops working."""

    async def rotate() -> tuple[str, str]:
        key_name = _name(name)
        view = await client.rotate_key(key_name)
        said = f"rotated key {key_name}: the old key no longer works; copy the new one below"
        return said, _issued(view)

    return await _act(client, include_revoked, rotate)


# ---------------------------------------------------------------------------- layout


def build(client: Gateway, refresh: gr.Button) -> None:
    """Lay out the section (inside the Adapters tab); `refresh` reloads it."""
    gr.Markdown(
        "### Keys\n"
        "Client keys kept in the gateway's database, each with its domains and limits (as "
        "`lorastack keys` manages them). The table shows each key's last four characters, "
        "never the key."
    )
    with gr.Row():
        include_revoked = gr.Checkbox(label="Show revoked keys", value=False)
    table = gr.Dataframe(
        headers=KEY_HEADERS,
        value=[],
        interactive=False,
        wrap=True,
        type="array",
        label="Keys",
    )
    result = gr.Textbox(label="Result", interactive=False, lines=1)
    secret = gr.Textbox(
        label="New key",
        info=SHOWN_ONCE,
        interactive=False,
        visible=False,
        buttons=["copy"],
    )
    with gr.Row(equal_height=True):
        name = gr.Textbox(label="Name", placeholder="support-widget", scale=2)
        domains = gr.Textbox(
            label="Domains", placeholder="coffee-shop, ledger-desk (empty: every domain)", scale=3
        )
        expires = gr.Textbox(label="Expires", placeholder="2027-06-30, 30d (empty: never)", scale=2)
    with gr.Row(equal_height=True):
        rpm = gr.Number(label="Requests per minute", precision=0, minimum=1, value=None)
        tpm = gr.Number(label="Tokens per minute", precision=0, minimum=1, value=None)
        budget = gr.Number(label="Token budget", precision=0, minimum=1, value=None)
        period = gr.Dropdown(label="per", choices=PERIODS, value="month")
        create = gr.Button("Create key")
    with gr.Row(equal_height=True):
        chosen = gr.Dropdown(label="Key", choices=[], value=None, allow_custom_value=True, scale=3)
        revoke = gr.Button("Revoke", variant="stop", scale=1)
        rotate = gr.Button("Rotate", scale=1)

    listed = [table, chosen, result]
    read = partial(on_keys, client)
    refresh.click(read, include_revoked, listed, api_name="keys")
    include_revoked.change(read, include_revoked, listed, api_name="show_revoked_keys")
    acted = [result, secret, table, chosen]
    create.click(
        partial(on_create, client),
        [name, domains, rpm, tpm, budget, period, expires, include_revoked],
        acted,
        api_name="create_key",
    )
    revoke.click(
        partial(on_revoke, client), [chosen, include_revoked], acted, api_name="revoke_key"
    )
    rotate.click(
        partial(on_rotate, client), [chosen, include_revoked], acted, api_name="rotate_key"
    )
