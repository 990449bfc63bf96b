"""The usage section of the Adapters tab: its handler with a fake gateway client, and the
client's `GET /admin/usage` over HTTP against a stub in the gateway's contract."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from lorastack.ui.client import GatewayClient
from lorastack.ui.errors import AccessDenied, RequestRefused
from lorastack.ui.tabs import usage
from tests.servers import serve_in_thread
from tests.unit.ui.fake_gateway import FakeGateway, run

WARNING = "\N{WARNING SIGN}\ufe0f"
UNCHANGED = {"__type__": "update"}
ADMIN = "stub-admin-key"

GROUPS: list[dict[str, Any]] = [
    # As the gateway sends them: by domain and day, the most tokens first within a day.
    {"domain": "coffee-shop", "day": "2026-12-01", "requests": 3, "total_tokens": 300,
     "mean_latency_s": 1.0},
    {"domain": "ledger-desk", "day": "2026-12-01", "requests": 1, "total_tokens": 50,
     "mean_latency_s": 0.5},
    {"domain": "coffee-shop", "day": "2026-12-02", "requests": 1, "total_tokens": 100,
     "mean_latency_s": 3.0},
    {"domain": "tiny", "day": "2026-12-02", "requests": "?", "total_tokens": None,
     "mean_latency_s": True},  # nonsense is counted as nothing
]  # fmt: skip


def test_the_chart_has_one_row_per_day_and_domain() -> None:
    frame = usage.usage_frame(GROUPS)
    assert list(frame.columns) == ["day", "domain", "tokens"]
    assert frame.values.tolist() == [
        ["2026-12-01", "coffee-shop", 300],
        ["2026-12-01", "ledger-desk", 50],
        ["2026-12-02", "coffee-shop", 100],
        ["2026-12-02", "tiny", 0],
    ]
    assert usage.usage_frame([]).empty


def test_the_table_sums_the_days_per_domain() -> None:
    assert usage.usage_rows(GROUPS) == [
        # (3 x 1.0 s + 1 x 3.0 s) / 4 answers
        ["coffee-shop", "4", "400", "1.50 s"],
        ["ledger-desk", "1", "50", "0.50 s"],
        ["tiny", "0", "0", ""],
    ]


def test_refreshing_asks_for_each_domains_days(gateway: FakeGateway) -> None:
    gateway.usage_table = GROUPS[:3]
    chart, table, note = run(usage.on_usage(gateway))
    assert gateway.calls == [("usage", f"{usage.USAGE_DAYS}d", "domain", True)]
    assert isinstance(chart, pd.DataFrame) and len(chart) == 3
    assert table[0] == ["coffee-shop", "4", "400", "1.50 s"]
    assert note == ""


def test_a_refusal_leaves_the_chart_and_says_why(gateway: FakeGateway) -> None:
    message = "this gateway has no database: usage and admin actions are not recorded"
    gateway.errors["usage"] = RequestRefused(message)
    chart, table, note = run(usage.on_usage(gateway))
    assert (chart, table) == (UNCHANGED, UNCHANGED)
    assert note == f"{WARNING} {message}"


# -- the client over HTTP -----------------------------------------------------------------


@pytest.fixture
def stub() -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []
    app = FastAPI()

    @app.get("/admin/usage")
    async def report(request: Request) -> Any:
        seen.append(dict(request.query_params))
        if request.headers.get("authorization") != f"Bearer {ADMIN}":
            body = {"error": {"message": "invalid admin key", "code": "invalid_admin_key"}}
            return JSONResponse(body, status_code=401)
        if request.query_params["since"] == "none":
            message = "this gateway has no database: usage and admin actions are not recorded"
            body = {"error": {"message": message, "code": "database_unavailable"}}
            return JSONResponse(body, status_code=503)
        return {"since": "2026-12-01T00:00:00Z", "by": "domain", "groups": [GROUPS[0], "junk"]}

    with serve_in_thread(app) as url:
        yield url, seen


def test_the_client_asks_for_usage_with_the_admin_key(
    stub: tuple[str, list[dict[str, str]]],
) -> None:
    url, seen = stub
    client = GatewayClient(url, "user-key", ADMIN)
    assert run(client.usage("14d", "domain", daily=True)) == [GROUPS[0]]
    assert seen == [{"since": "14d", "by": "domain", "daily": "true"}]
    with pytest.raises(RequestRefused, match="has no database") as refused:
        run(client.usage("none"))
    assert refused.value.code == "database_unavailable"  # not "engine restarting"
    with pytest.raises(AccessDenied, match="refused the admin key"):
        run(GatewayClient(url, "user-key", "wrong").usage())
    with pytest.raises(AccessDenied, match="no admin key"):
        run(GatewayClient(url, "user-key").usage())
