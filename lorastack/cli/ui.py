"""`lorastack ui`: the Gradio chat app, in front of a running gateway."""

from __future__ import annotations

from typing import Annotated

import typer

from lorastack.cli.context import err, out, settings

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def ui(
    api: Annotated[
        str | None,
        typer.Option(help="The gateway's URL (default: the gateway settings' host and port)."),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(help="Client key for the gateway, if it requires one.")
    ] = None,
    admin_key: Annotated[
        str | None,
        typer.Option(
            help="Admin key: shows the Adapters tab (default: the gateway settings' admin key)."
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default from settings).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings).")] = None,
    expect: Annotated[
        list[str] | None,
        typer.Option(
            help="A domain on its way (being trained): the UI says so and adds it to its "
            "lists once the gateway serves it. Repeat for several."
        ),
    ] = None,
) -> None:
    """Chat with the domains of a running gateway in the browser (`lorastack serve` first)."""
    # Imported here: Gradio takes seconds to import and only this command needs it.
    from lorastack.ui.app import build_app, launch_app

    config = settings()
    gateway = config.gateway
    api_url = api or f"http://{_connectable(gateway.host)}:{gateway.port}"
    if api_key is None and gateway.api_keys:
        api_key = gateway.api_keys[0]
    admin_key = admin_key or gateway.admin_key
    bind = host or config.ui.host
    app = build_app(api_url, api_key, admin_key, expect or ())
    url = launch_app(app, bind, port or config.ui.port, quiet=True)
    err.print(f"gateway: {api_url}")
    if bind not in _LOOPBACK:
        # The UI has no login of its own: whoever reaches it uses the keys it holds.
        tab = " and its Adapters tab (admin key)" if admin_key else ""
        err.print(f"warning: anyone who can reach {bind} can use this UI{tab}")
    out.print(url)
    try:
        app.block_thread()  # until Ctrl-C
    finally:
        app.close()


def _connectable(host: str) -> str:
    # A gateway bound to every interface is reached on loopback from here.
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
