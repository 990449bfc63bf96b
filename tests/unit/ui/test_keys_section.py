"""The keys section of the Adapters tab: its handlers with a fake gateway client; the
client's `/admin/keys` calls against a real gateway with a database (and one without);
and the section's events through Gradio, end to end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client

from lorastack.db import SqlFeedbackStore, make_engine
from lorastack.ui.app import build_app, launch_app
from lorastack.ui.client import GatewayClient
from lorastack.ui.errors import AccessDenied, EngineRestarting, RequestRefused
from lorastack.ui.tabs import keys
from tests.servers import free_port
from tests.unit.serve.conftest import ADMIN_KEY, Running
from tests.unit.ui.fake_gateway import FakeGateway, run

DONE = "\N{CHECK MARK}"
WARNING = "\N{WARNING SIGN}\ufe0f"
UNCHANGED = {"__type__": "update"}
NOW = datetime(2026, 12, 15, 12, 0, tzinfo=UTC)

KEYS: list[dict[str, Any]] = [
    {
        "name": "support-widget",
        "hint": "...wxyz",
        "domains": ["coffee-shop", "ledger-desk"],
        "rpm": 60,
        "tpm": 20000,
        "budget": 2000000,
        "period": "month",
        "expires_at": "2027-07-01T00:00:00Z",
        "created_at": "2026-12-01T12:00:00Z",
        "rotated_at": None,
        "revoked_at": None,
        "last_used_at": "2026-12-14T09:30:12.5+00:00",
    },
    {
        "name": "trial",
        "hint": "...abcd",
        "domains": ["*"],
        "rpm": None,
        "tpm": None,
        "budget": None,
        "period": None,
        "expires_at": "2026-12-10T00:00:00",  # no zone: UTC, and past
        "created_at": "2026-12-01T12:00:00Z",
        "rotated_at": None,
        "revoked_at": None,
        "last_used_at": None,
    },
    {
        "name": "old-team",
        "hint": "...9876",
        "domains": ["coffee-shop"],
        "rpm": 5,
        "tpm": None,
        "budget": None,
        "period": None,
        "expires_at": None,
        "created_at": "2026-11-01T12:00:00Z",
        "rotated_at": None,
        "revoked_at": "2026-12-01T08:00:00Z",
        "last_used_at": None,
        "key": "lsk-never-shown-in-a-table",  # even were the gateway to send one
    },
]


def _choices(update: dict[str, Any]) -> list[str]:
    return [c[0] if isinstance(c, list | tuple) else c for c in update["choices"]]


def _cells(table: list[list[str]]) -> str:
    return " ".join(" ".join(row) for row in table)


# -- the table -------------------------------------------------------------------------------


def test_the_table_shows_each_keys_hint_limits_and_state_never_the_key() -> None:
    assert keys.key_rows(KEYS, NOW) == [
        [
            "support-widget",
            "...wxyz",
            "coffee-shop, ledger-desk",
            "60 rpm, 20000 tpm, 2000000 tokens/month",
            "2027-07-01 00:00 UTC",
            "2026-12-14 09:30 UTC",
            "live",
        ],
        ["trial", "...abcd", "*", "no limits", "2026-12-10 00:00 UTC", "not yet", "expired"],
        ["old-team", "...9876", "coffee-shop", "5 rpm", "never", "not yet", "revoked"],
    ]
    assert "lsk-" not in _cells(keys.key_rows(KEYS, NOW))
    assert len(keys.KEY_HEADERS) == len(keys.key_rows(KEYS)[0])


# -- the handlers, with the fake gateway ------------------------------------------------------


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway(key_table=KEYS)


def test_refreshing_lists_the_keys_and_offers_the_live_ones(gateway: FakeGateway) -> None:
    table, names, result = run(keys.on_keys(gateway, False))
    assert gateway.calls == [("keys", False)]
    assert [row[0] for row in table] == ["support-widget", "trial"]
    assert _choices(names) == ["support-widget", "trial"]
    assert result == ""

    table, names, _ = run(keys.on_keys(gateway, True))
    assert gateway.calls[-1] == ("keys", True)
    assert [row[-1] for row in table][-1] == "revoked"
    assert _choices(names) == ["support-widget", "trial"]  # a revoked key is done with
    assert "lsk-" not in _cells(table)


def test_a_created_key_is_shown_once(gateway: FakeGateway) -> None:
    result, secret, table, names = run(
        keys.on_create(
            gateway, " team-a ", "coffee-shop, , ledger-desk", 60, None, 2e6, "week", "30d", False
        )
    )
    assert gateway.calls[0] == (
        "create_key",
        "team-a",
        ["coffee-shop", "ledger-desk"],
        {"rpm": 60, "tpm": None, "budget": 2000000},
        "week",
        "30d",
    )
    [issued] = gateway.issued
    assert secret == {"__type__": "update", "value": issued, "visible": True}
    assert result == (
        f"{DONE} created key team-a (60 rpm, 2000000 tokens/week, until 2027-06-30 00:00 UTC); "
        "copy it below"
    )
    assert gateway.calls[-1] == ("keys", False)  # the table is read again
    row = next(r for r in table if r[0] == "team-a")
    assert row[1] == f"...{issued[-4:]}"
    assert issued not in _cells(table) and issued not in result
    assert "team-a" in _choices(names)

    # The next action empties the field: the key is not shown again.
    result, secret, _, _ = run(keys.on_revoke(gateway, "trial", False))
    assert secret == {"__type__": "update", "value": "", "visible": False}


def test_an_empty_form_sends_the_gateways_defaults(gateway: FakeGateway) -> None:
    run(keys.on_create(gateway, "team-b", "", None, None, None, "month", "  ", False))
    assert gateway.calls[0] == (
        "create_key",
        "team-b",
        [],  # every domain: the gateway's `*`
        {"rpm": None, "tpm": None, "budget": None},
        "month",
        None,
    )
    assert gateway.key_table[-1]["domains"] == ["*"]


def test_a_name_taken_is_refused_with_the_gateways_words(gateway: FakeGateway) -> None:
    result, secret, table, _ = run(
        keys.on_create(gateway, "trial", "", None, None, None, "month", "", False)
    )
    assert (
        result == f"{WARNING} the gateway refused the request: a key named 'trial' exists already"
    )
    assert secret == {"__type__": "update", "value": "", "visible": False}
    assert gateway.issued == []
    assert [row[0] for row in table] == ["support-widget", "trial"]


def test_a_key_needs_a_name_and_nothing_is_sent_without_one(gateway: FakeGateway) -> None:
    for handler in (
        keys.on_create(gateway, "  ", "", None, None, None, "month", "", False),
        keys.on_revoke(gateway, None, False),
        keys.on_rotate(gateway, "", False),
    ):
        result, *_ = run(handler)
        assert result == f"{WARNING} enter the key's name first"
    assert {call[0] for call in gateway.calls} == {"keys"}


def test_revoking_a_key_takes_it_off_the_live_list(gateway: FakeGateway) -> None:
    result, secret, table, names = run(keys.on_revoke(gateway, "trial", False))
    assert gateway.calls[0] == ("revoke_key", "trial")
    assert result == f"{DONE} revoked key trial (...abcd): it no longer works"
    assert secret["visible"] is False
    assert [row[0] for row in table] == ["support-widget"]
    assert _choices(names) == ["support-widget"]

    result, *_ = run(keys.on_revoke(gateway, "trial", False))
    assert result == f"{WARNING} the gateway refused the request: no live key named 'trial'"


def test_rotating_a_key_shows_the_new_one_once(gateway: FakeGateway) -> None:
    result, secret, table, _ = run(keys.on_rotate(gateway, "support-widget", True))
    assert gateway.calls[0] == ("rotate_key", "support-widget")
    [issued] = gateway.issued
    assert secret == {"__type__": "update", "value": issued, "visible": True}
    assert result == (
        f"{DONE} rotated key support-widget: the old key no longer works; copy the new one below"
    )
    assert table[0][1] == f"...{issued[-4:]}" != "...wxyz"
    assert issued not in _cells(table)
    assert gateway.calls[-1] == ("keys", True)  # as the checkbox asks

    result, secret, _, _ = run(keys.on_rotate(gateway, "nobody", True))
    assert result == f"{WARNING} the gateway refused the request: no live key named 'nobody'"
    assert secret["visible"] is False


def test_a_gateway_without_a_database_leaves_the_table_and_says_why(
    gateway: FakeGateway,
) -> None:
    message = "this gateway has no database to keep keys in"
    gateway.errors["keys"] = RequestRefused(message, status=503, code="no_database")
    assert run(keys.on_keys(gateway, False)) == (UNCHANGED, UNCHANGED, f"{WARNING} {message}")


# -- the client, against a real gateway -------------------------------------------------------


@pytest.fixture
def keys_db(tmp_path: Path) -> Iterator[SqlFeedbackStore]:
    engine = make_engine(f"sqlite:///{tmp_path / 'keys.db'}")
    yield SqlFeedbackStore(engine)
    engine.dispose()


@pytest.fixture
def gw(keys_db: SqlFeedbackStore, start_gateway: Callable[..., Running]) -> Running:
    """A gateway with a database, so with keys."""
    return start_gateway(feedback_store=keys_db)


def test_the_client_manages_keys_through_the_admin_api(gw: Running) -> None:
    client = GatewayClient(f"{gw.url}/v1", None, ADMIN_KEY)
    assert run(client.keys()) == []

    created = run(client.create_key("team-a", ["coffee-shop"], rpm=60, budget=1000, period="day"))
    secret = created["key"]
    assert secret.startswith("lsk-") and created["hint"] == f"...{secret[-4:]}"
    assert (created["domains"], created["rpm"], created["tpm"]) == (["coffee-shop"], 60, None)
    assert (created["budget"], created["period"], created["expires_at"]) == (1000, "day", None)
    # The key works at once, on its domain.
    works = gw.client.get("/v1/models", headers={"authorization": f"Bearer {secret}"})
    assert works.status_code == 200
    assert [m["id"] for m in works.json()["data"]] == ["coffee-shop"]

    everything = run(client.create_key("team-b", expires="30d"))
    assert everything["domains"] == ["*"] and everything["period"] is None
    assert everything["expires_at"]

    [first, second] = run(client.keys())
    assert (first["name"], second["name"]) == ("team-a", "team-b")
    assert "key" not in first and "key" not in second

    rotated = run(client.rotate_key("team-a"))
    assert rotated["key"] != secret and rotated["rotated_at"]
    old = gw.client.get("/v1/models", headers={"authorization": f"Bearer {secret}"})
    assert old.status_code == 401

    revoked = run(client.revoke_key("team-b"))
    assert revoked["revoked_at"] and "key" not in revoked
    assert [k["name"] for k in run(client.keys())] == ["team-a"]
    assert [k["name"] for k in run(client.keys(include_revoked=True))] == ["team-a", "team-b"]


def test_the_gateways_refusals_read_as_its_messages(gw: Running) -> None:
    client = GatewayClient(gw.url, None, ADMIN_KEY)
    run(client.create_key("team-a"))
    with pytest.raises(RequestRefused, match="a key named 'team-a' exists already") as taken:
        run(client.create_key("team-a"))
    assert taken.value.status == 409
    with pytest.raises(RequestRefused, match="no live key named 'nobody'") as unknown:
        run(client.revoke_key("nobody"))
    assert unknown.value.status == 404
    with pytest.raises(RequestRefused, match="not a date, time or span") as bad:
        run(client.create_key("team-b", expires="next tuesday"))
    assert bad.value.status == 400
    with pytest.raises(RequestRefused, match="rpm") as low:
        run(client.create_key("team-b", rpm=0))
    assert low.value.status == 400
    with pytest.raises(RequestRefused, match="invalid key name"):
        run(client.create_key("no spaces/slashes"))
    with pytest.raises(RequestRefused, match=r"no live key named 'a b\?c'"):
        run(client.rotate_key("a b?c"))  # quoted: one path segment, no query
    with pytest.raises(AccessDenied, match="refused the admin key"):
        run(GatewayClient(gw.url, None, "not-the-admin-key-at-all").keys())
    with pytest.raises(AccessDenied, match="no admin key"):
        run(GatewayClient(gw.url).create_key("team-c"))


def test_a_gateway_without_a_database_says_so(start_gateway: Callable[..., Running]) -> None:
    client = GatewayClient(start_gateway().url, None, ADMIN_KEY)
    with pytest.raises(RequestRefused, match="has no database to keep keys in") as refused:
        run(client.keys())
    assert refused.value.code == "no_database"
    assert not isinstance(refused.value, EngineRestarting)


# -- the section in the app, through Gradio ---------------------------------------------------


def test_the_section_creates_rotates_and_revokes_through_the_app(gw: Running) -> None:
    app = build_app(gw.url, None, ADMIN_KEY)
    url = launch_app(app, "127.0.0.1", free_port(), quiet=True)
    ui = Client(url, verbose=False, download_files=False, analytics_enabled=False)
    try:
        table, names, result = ui.predict(False, api_name="/keys")
        assert (table["data"], result) == ([], "")

        form = ("team-a", "coffee-shop", 60, None, None, "month", "", False)
        result, shown, table, names = ui.predict(*form, api_name="/create_key")
        assert result.startswith(f"{DONE} created key team-a (60 rpm)")
        assert shown["visible"] is True
        secret = shown["value"]
        assert secret.startswith("lsk-")
        [row] = table["data"]
        assert row[:4] == ["team-a", f"...{secret[-4:]}", "coffee-shop", "60 rpm"]
        assert secret not in str(table)
        assert _choices(names) == ["team-a"]

        result, _, _, _ = ui.predict(*form, api_name="/create_key")
        assert (
            result
            == f"{WARNING} the gateway refused the request: a key named 'team-a' exists already"
        )

        result, shown, table, _ = ui.predict("team-a", False, api_name="/rotate_key")
        assert result.startswith(f"{DONE} rotated key team-a")
        rotated = shown["value"]
        assert rotated.startswith("lsk-") and rotated != secret
        assert table["data"][0][1] == f"...{rotated[-4:]}"

        result, shown, table, names = ui.predict("team-a", True, api_name="/revoke_key")
        assert result.startswith(f"{DONE} revoked key team-a")
        assert (shown["value"], shown["visible"]) == ("", False)
        assert table["data"][0][-1] == "revoked"
        assert _choices(names) == []
    finally:
        app.close()
        ui.close()
