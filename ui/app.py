"""The Gradio app: chat with a domain, compare it with the base model, manage adapters.

A plain HTTP client of the gateway (`ui.client`); nothing here touches the engine, the
registry or the guardrails directly. This module puts the tabs (`ui.tabs`) together on
one page and fills their domain lists from the gateway:

- Chat (`ui.tabs.chat`): pick a domain, stream its answers, rate them.
- Compare (`ui.tabs.compare`): one prompt answered by the base model and a domain.
- Adapters (`ui.tabs.adapters`, only with an admin key): load, unload, promote, roll back;
  each version's live rule pass rates and its users' ratings; client keys (`ui.tabs.keys`).

Domains still being trained (`make demo` serves before it trains) can be named as
expected: the page says they are on their way and adds each when the gateway lists it.

Every event has an explicit `api_name`, so `gradio_client` (and the tests) can drive it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import gradio as gr

from lorastack.ui.catalogue import Catalogue, describe
from lorastack.ui.client import GatewayClient
from lorastack.ui.errors import UiClientError
from lorastack.ui.tabs import CONCURRENCY_LIMIT, adapters, chat, compare
from lorastack.ui.wording import warning

TITLE = "lorastack"
POLL_S = 10.0  # how often the page asks for domains still on their way

# Readable on a laptop screen (about 1366x650 of page): the chat fits the window with the
# domain picker in view, and answers read at the normal text size. Gradio shows an answer
# titled with its domain (message metadata) as a "thought" box in small, faded text: the
# rules below give it the look of an ordinary answer whose first line names the domain.
CSS = """
.lorastack-chat .thought-group { border: none; background: none; padding: 0; margin: 0;
  font-size: var(--text-md); }
.lorastack-chat .thought-group .title .md { font-size: var(--text-md) !important; }
.lorastack-chat .thought-group .content { margin-left: 0; }
.lorastack-chat .thought-group .content * { font-size: inherit; }
.lorastack-chat .thought-group .message-content { opacity: 1; }
"""

# Launch options shared by the CLI and the tests: nothing reachable beyond what the user
# asked for (no share link, no extra files served), and no API docs link in the footer.
LAUNCH_OPTIONS: dict[str, Any] = {
    "share": False,
    "allowed_paths": None,
    "footer_links": ["gradio", "settings"],
    "ssr_mode": False,
    "mcp_server": False,
    "css": CSS,
}


async def load_domains(
    catalogue: Catalogue, chosen: str | None, compared: str | None
) -> tuple[Any, Any, str, Any]:
    """Fill the domain lists from /v1/models (on page load and on refresh).

    (the Chat picker, the Compare picker, the Chat tab's "About", the base model's box);
    each choice is kept while the gateway still lists it.
    """
    try:
        domains = await catalogue.refresh()
    except UiClientError as error:
        return gr.update(), gr.update(), warning(error), gr.update()
    ids = [d.id for d in domains]
    domain_ids = [d.id for d in domains if not d.is_base]
    value = chosen if chosen in ids else _first(domain_ids or ids)
    compare_value = compared if compared in domain_ids else _first(domain_ids)
    base = catalogue.base
    return (
        gr.update(choices=[(d.label, d.id) for d in domains], value=value),
        gr.update(
            choices=[(d.label, d.id) for d in domains if not d.is_base],
            value=compare_value,
        ),
        describe(catalogue.find(value) if value else None),
        gr.update(label=base.label if base else "Base model (none listed)"),
    )


def _first(ids: Sequence[str]) -> str | None:
    return ids[0] if ids else None


def on_their_way(missing: Sequence[str]) -> str:
    """The note about domains still being trained (empty once they are all served)."""
    if not missing:
        return ""
    return (
        f"More assistants are on their way: {', '.join(missing)} (training now). "
        "Each appears in the list by itself once it is ready."
    )


async def await_expected(
    catalogue: Catalogue, expected: Sequence[str], chosen: str | None, compared: str | None
) -> tuple[Any, ...]:
    """`load_domains`, then the note on the expected domains not listed yet; the polling
    timer stops once every one is."""
    filled = await load_domains(catalogue, chosen, compared)
    listed = {d.id for d in catalogue.domains}
    missing = [name for name in expected if name not in listed]
    note = gr.update(value=on_their_way(missing), visible=bool(missing))
    return (*filled, note, gr.Timer(active=bool(missing)))


def build_app(
    api_url: str, api_key: str | None, admin_key: str | None, expected: Sequence[str] = ()
) -> gr.Blocks:
    """The Gradio Blocks app for the gateway at `api_url`.

    The Adapters tab (and its API endpoints) exists only when `admin_key` is given.
    `expected` names domains on their way (being trained): the page says so and asks the
    gateway every `POLL_S` seconds until it lists them all, adding each to the pickers.
    """
    client = GatewayClient(api_url, api_key, admin_key)
    catalogue = Catalogue(client)

    app = gr.Blocks(title=TITLE, analytics_enabled=False)
    with app:
        gr.Markdown(f"## {TITLE} \N{MIDDLE DOT} domain assistants")
        arrivals = gr.Markdown(on_their_way(expected), visible=bool(expected))
        with gr.Tab("Chat", id="chat"):
            chat_parts = chat.build(client, catalogue)
        with gr.Tab("Compare", id="compare"):
            compare_parts = compare.build(client, catalogue)
        if admin_key:
            with gr.Tab("Adapters", id="adapters"):
                adapters.build(client)

        pickers = [chat_parts.domain, compare_parts.domain]
        outputs = [*pickers, chat_parts.about, compare_parts.base_answer]
        fill = partial(load_domains, catalogue)
        options: dict[str, Any] = {
            "concurrency_limit": CONCURRENCY_LIMIT,
            "show_progress": "hidden",
        }
        app.load(fill, pickers, outputs, api_name="domains", **options)
        chat_parts.refresh.click(fill, pickers, outputs, api_name="refresh_domains", **options)
        if expected:
            timer = gr.Timer(POLL_S)
            poll = partial(await_expected, catalogue, tuple(expected))
            polled = [*outputs, arrivals, timer]
            app.load(poll, pickers, polled, api_name="arrivals", **options)
            timer.tick(poll, pickers, polled, api_name="await_domains", **options)
    return app


def launch_app(app: gr.Blocks, host: str, port: int, *, quiet: bool = False) -> str:
    """Serve the app on `host:port` in the background with the safe options; its URL.

    The caller keeps the process alive (`app.block_thread()`) and closes it (`app.close()`).
    """
    _, local_url, _ = app.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=True,
        quiet=quiet,
        **LAUNCH_OPTIONS,
    )
    return str(local_url)
