"""The Gradio app in front of a real gateway, itself in front of the fake upstream; and
the tabs' handlers on their own, in front of a fake gateway client.

The gateway fixtures are the ones of `tests/unit/serve/conftest.py`: two published domains
(`coffee-shop` "Bean There", promoted to prod; `ledger-desk` "Ledgerly Support"), the
regex PII detector and the admin key `ADMIN_KEY`. `FakeGateway` lists the same domains.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pytest
from gradio_client import Client

from lorastack.ui.app import build_app, launch_app
from lorastack.ui.catalogue import Catalogue
from tests.servers import free_port
from tests.unit.serve.conftest import (  # noqa: F401  (fixtures, registered by import)
    ADMIN_KEY,
    Running,
    fake,
    publish,
    start_gateway,
)
from tests.unit.ui.fake_gateway import FakeGateway


@dataclass
class Ui:
    url: str
    app: gr.Blocks
    client: Client
    gateway: Running

    def call(self, api_name: str, *args: Any) -> Any:
        """Run an event to its end (a streamed one included); its last output."""
        return self.client.predict(*args, api_name=api_name)


@pytest.fixture
def start_ui(request: pytest.FixtureRequest) -> Iterator[Callable[..., Ui]]:
    """Build and launch the app against a gateway; closed after the test."""
    # By name: a parameter named like the imported fixture would shadow it (ruff F811).
    gw: Running = request.getfixturevalue("start_gateway")()
    started: list[Ui] = []

    def start(
        admin_key: str | None = ADMIN_KEY,
        api_url: str | None = None,
        expected: tuple[str, ...] = (),
    ) -> Ui:
        app = build_app(api_url or gw.url, None, admin_key, expected)
        url = launch_app(app, "127.0.0.1", free_port(), quiet=True)
        client = Client(url, verbose=False, download_files=False, analytics_enabled=False)
        ui = Ui(url, app, client, gw)
        started.append(ui)
        return ui

    yield start
    for ui in started:
        # Server first: the client's heartbeat stream then ends with the server's connection,
        # and close() does not wait a second for it.
        ui.app.close()
        ui.client.close()


@pytest.fixture
def ui(start_ui: Callable[..., Ui]) -> Ui:
    return start_ui()


@pytest.fixture
def gateway() -> FakeGateway:
    """A scripted gateway client, for calling the tabs' handlers directly."""
    return FakeGateway()


@pytest.fixture
def catalogue(gateway: FakeGateway) -> Catalogue:
    """The domain list the handlers share, read from `gateway`."""
    return Catalogue(gateway)
