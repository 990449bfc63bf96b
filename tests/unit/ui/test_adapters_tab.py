"""The Adapters tab's handlers, called directly with a fake gateway client (no server)."""

from __future__ import annotations

from typing import Any

import pytest

from lorastack.ui.errors import AccessDenied, RequestRefused
from lorastack.ui.tabs import adapters
from tests.unit.ui.fake_gateway import FakeGateway, run

DONE = "\N{CHECK MARK}"
WARNING = "\N{WARNING SIGN}\ufe0f"
UNCHANGED = {"__type__": "update"}

TABLE: list[dict[str, Any]] = [
    {
        "domain": "coffee-shop",
        "aliases": {"prod": 2, "canary": 2, "old": 1},
        "versions": [
            {"version": 1, "display_name": "Bean There", "metrics": {}, "engines": []},
            {
                "version": 2,
                "display_name": "Bean There",
                "metrics": {
                    "eval_loss": 1.234567,
                    "passed": True,
                    "per_task": {"a": 1},
                    "perplexity": 3,
                    "note": "text",
                    "bleu": 0.5,
                    "rouge": 0.25,
                    "chrf": 0.75,
                },
                "engines": [
                    {"engine": 0, "state": "ready"},
                    {"engine": 1, "state": "absent"},
                    {"engine": 2, "state": "loading"},
                ],
            },
        ],
    },
]


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway(adapter_table=TABLE)


def test_one_row_per_version() -> None:
    assert adapters.adapter_rows(TABLE) == [
        ["coffee-shop", "v1", "Bean There", "old", "", "not loaded"],
        [
            "coffee-shop",
            "v2",
            "Bean There",
            "canary, prod",
            # Numbers only, four at the most: nested, textual and true/false values are left out.
            "eval_loss 1.235, perplexity 3, bleu 0.5, rouge 0.25",
            "engine 0: ready, engine 2: loading",  # an `absent` slot is not worth a mention
        ],
    ]
    assert adapters.adapter_rows([{"domain": "empty"}]) == []


def test_refresh_shows_the_table_or_says_why_not(gateway: FakeGateway) -> None:
    rows, status = run(adapters.on_refresh(gateway))
    assert rows == adapters.adapter_rows(TABLE) and status == ""

    gateway.errors["adapters"] = AccessDenied("the gateway refused the admin key (nope)")
    assert run(adapters.on_refresh(gateway)) == (
        UNCHANGED,
        f"{WARNING} the gateway refused the admin key (nope)",
    )


def test_actions_report_their_result_and_refresh_the_table(gateway: FakeGateway) -> None:
    status, table = run(adapters.on_load(gateway, " ledger-desk "))
    assert status == f"{DONE} loaded ledger-desk: engine 0 ready"
    assert table == adapters.adapter_rows(TABLE)
    assert gateway.calls == [("load", "ledger-desk"), ("adapters",)]

    status, _ = run(adapters.on_unload(gateway, "ledger-desk@1"))
    assert status == f"{DONE} unloaded ledger-desk@1"

    status, _ = run(adapters.on_promote(gateway, "coffee-shop", 2.0, " "))
    assert status == f"{DONE} coffee-shop@prod now points to v2"  # prod by default
    status, _ = run(adapters.on_rollback(gateway, " coffee-shop ", "canary"))
    assert status == f"{DONE} coffee-shop@canary rolled back"
    assert gateway.calls[-2] == ("rollback", "coffee-shop", "canary")


def test_a_refused_action_still_refreshes_the_table(gateway: FakeGateway) -> None:
    gateway.errors["rollback"] = RequestRefused("the gateway refused the request: no earlier")
    status, table = run(adapters.on_rollback(gateway, "coffee-shop", "prod"))
    assert status == f"{WARNING} the gateway refused the request: no earlier"
    assert table == adapters.adapter_rows(TABLE)

    gateway.errors["adapters"] = AccessDenied("refused")
    status, table = run(adapters.on_load(gateway, "coffee-shop"))
    assert status.startswith(DONE) and table == UNCHANGED  # the table is left as it was


@pytest.mark.parametrize(
    ("action", "said"),
    [
        (lambda g: adapters.on_load(g, "  "), "enter the adapter first"),
        (lambda g: adapters.on_unload(g, ""), "enter the adapter first"),
        (lambda g: adapters.on_promote(g, "", 1, "prod"), "enter the domain first"),
        (lambda g: adapters.on_promote(g, "coffee-shop", None, "prod"), "enter a version number"),
        (lambda g: adapters.on_promote(g, "coffee-shop", 0, "prod"), "enter a version number"),
        (lambda g: adapters.on_rollback(g, " ", "prod"), "enter the domain first"),
    ],
)
def test_an_empty_field_is_said_and_nothing_is_sent(
    gateway: FakeGateway, action: Any, said: str
) -> None:
    status, table = run(action(gateway))
    assert status.startswith(f"{WARNING} {said}")
    assert table == adapters.adapter_rows(TABLE)
    assert gateway.calls == [("adapters",)]  # only the table was read again
