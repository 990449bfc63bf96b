"""lorastack.ui: the Gradio chat app, a plain HTTP client of the gateway.

`build_app(api_url, api_key, admin_key)` makes the app (`lorastack ui` launches it);
`GatewayClient` is the typed client it talks to the gateway with. Both are imported on
first use, so importing this package does not import Gradio.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["GatewayClient", "build_app"]

_HOMES = {"GatewayClient": "lorastack.ui.client", "build_app": "lorastack.ui.app"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
