"""The Adapters tab's handlers, called directly with a fake gateway client (no server)."""

from __future__ import annotations

from typing import Any

import pytest

from lorastack.ui.errors import AccessDenied, GatewayUnreachable, RequestRefused
from lorastack.ui.tabs import adapters
from tests.unit.ui.fake_gateway import FakeGateway, run

DONE = "\N{CHECK MARK}"
WARNING = "\N{WARNING SIGN}\ufe0f"
UNCHANGED = {"__type__": "update"}

TABLE: list[dict[str, Any]] = [
    {
        "domain": "coffee-shop",
        "aliases": {"prod": 2, "staging": 2, "old": 1},
        "canary": {
            "version": 3,
            "weight": 25.0,
            "started_at": "2025-01-01T12:00:00Z",
            "guard": {"min_answers": 20, "error_margin": 0.05, "rule_margin": 0.2},
        },
        # An earlier canary of another version: its ending stays on its own row.
        "last_canary": {
            "version": 1,
            "outcome": "rolled back",
            "reason": "rolled back: prod keeps all traffic",
            "at": "2025-01-01T11:00:00Z",
        },
        "versions": [
            {"version": 1, "display_name": "Bean There", "metrics": {}, "engines": []},
            {
                "version": 2,
                "display_name": "Bean There",
                "metrics": {
                    "eval_loss": 1.234567,
                    "passed": True,
                    "per_task": {"a": 1},
                    "rules": {"trail-tip": 0.8},  # evaluation's, nested
                    "fact_recall": {"recall": 0.7},
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
                "serving": {
                    "answers": 12,
                    "errors": 0,
                    "rules": {"trail-tip": 0.9, "max_sentences": 1.0},
                },
            },
            {
                "version": 3,
                "display_name": "Bean There",
                "metrics": {},
                "engines": [{"engine": 0, "state": "ready"}],
                # 2 of 3 is 66.7%: rounded down, as is 99.5% (one failure is never "100%").
                "serving": {
                    "answers": 3,
                    "errors": 1,
                    "rules": {"trail-tip": 2 / 3, "max_sentences": 0.995},
                },
            },
        ],
    },
    {
        "domain": "ledger-desk",
        "aliases": {"prod": 1},
        "canary": None,
        "last_canary": {
            "version": 2,
            "outcome": "auto-stopped",
            "reason": "rule trail-tip passed 40%, prod 90%",
            "at": "2025-01-01T13:00:00Z",
        },
        "versions": [
            {
                "version": 1,
                "display_name": "Ledgerly Support",
                "metrics": {},
                "engines": [],
                "serving": {},  # nothing served yet
            },
            {
                "version": 2,
                "display_name": "Ledgerly Support",
                "metrics": {},
                "engines": [],
                "serving": {"answers": 1, "errors": 0, "rules": {"trail-tip": 0.4}},
            },
        ],
    },
]


# What the tab reads to show the table: the registry, then each domain's feedback counts.
READ = [("adapters",), ("feedback_counts", "coffee-shop"), ("feedback_counts", "ledger-desk")]


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway(adapter_table=TABLE)


def test_one_row_per_version() -> None:
    assert adapters.adapter_rows(TABLE) == [
        [
            "coffee-shop",
            "v1",
            "Bean There",
            # The outcome is not said twice when the reason repeats it.
            "old, canary rolled back: prod keeps all traffic",
            "",
            "",
            "",
            "not loaded",
        ],
        [
            "coffee-shop",
            "v2",
            "Bean There",
            "prod, staging",
            # Numbers only, four at the most: nested, textual and true/false values are left out.
            "eval_loss 1.235, perplexity 3, bleu 0.5, rouge 0.25",
            "trail-tip 90%, max_sentences 100% (12 answers)",
            "",  # no feedback read, and no capture
            "engine 0: ready, engine 2: loading",  # an `absent` slot is not worth a mention
        ],
        [
            "coffee-shop",
            "v3",
            "Bean There",
            "canary 25%",
            "",
            "trail-tip 66%, max_sentences 99% (3 answers, 1 error)",
            "",
            "engine 0: ready",
        ],
        ["ledger-desk", "v1", "Ledgerly Support", "prod", "", "", "", "not loaded"],
        [
            "ledger-desk",
            "v2",
            "Ledgerly Support",
            "canary auto-stopped: rule trail-tip passed 40%, prod 90%",
            "",
            "trail-tip 40% (1 answer)",
            "",
            "not loaded",
        ],
    ]
    assert all(len(row) == len(adapters.ADAPTER_HEADERS) for row in adapters.adapter_rows(TABLE))
    assert adapters.adapter_rows([{"domain": "empty"}]) == []


OPERATOR = "stopped by an operator"  # the gateway's reason when none is given


@pytest.mark.parametrize(
    ("entry", "shown"),
    [
        # A canary of the version that last ended one: the running one is what counts.
        (
            {
                "canary": {"version": 2, "weight": 12.5},
                "last_canary": {"version": 2, "outcome": "auto-stopped", "reason": "errors"},
            },
            "canary 12.5%",
        ),
        ({"last_canary": {"version": 2, "outcome": "promoted", "reason": ""}}, "canary promoted"),
        (
            {"last_canary": {"version": 2, "outcome": "stopped", "reason": "stopped"}},
            "canary stopped",
        ),
        (
            {"last_canary": {"version": 2, "outcome": "stopped", "reason": OPERATOR}},
            "canary stopped: stopped by an operator",
        ),
        ({"last_canary": {"version": 1, "outcome": "stopped", "reason": "x"}}, ""),  # another one
        ({"canary": None, "last_canary": None}, ""),
    ],
)
def test_the_canary_column(entry: dict[str, Any], shown: str) -> None:
    version = {"version": 2, "serving": {"answers": 0, "errors": 0, "rules": {}}}
    [row] = adapters.adapter_rows([{"domain": "d", "aliases": {}, "versions": [version], **entry}])
    assert row[3] == shown
    assert row[5] == "0 answers"


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
    assert gateway.calls == [("load", "ledger-desk"), *READ]

    status, _ = run(adapters.on_unload(gateway, "ledger-desk@1"))
    assert status == f"{DONE} unloaded ledger-desk@1"

    status, _ = run(adapters.on_promote(gateway, "coffee-shop", 2.0, " "))
    assert status == f"{DONE} coffee-shop@prod now points to v2"  # prod by default
    status, _ = run(adapters.on_rollback(gateway, " coffee-shop ", "canary"))
    assert status == f"{DONE} coffee-shop@canary rolled back"
    assert gateway.calls[-1 - len(READ)] == ("rollback", "coffee-shop", "canary")


def test_a_canary_is_started_and_stopped_and_the_table_shows_it(gateway: FakeGateway) -> None:
    status, table = run(adapters.on_start_canary(gateway, " ledger-desk ", 2.0, 25.0))
    assert status == f"{DONE} ledger-desk: v2 is the canary for 25% of conversations"
    assert gateway.calls == [("start_canary", "ledger-desk", 2, 25.0), *READ]
    assert table[-1][:4] == ["ledger-desk", "v2", "Ledgerly Support", "canary 25%"]

    status, table = run(adapters.on_stop_canary(gateway, "ledger-desk", "  too chatty "))
    assert status == f"{DONE} ledger-desk: canary v2 stopped, prod gets all conversations"
    assert gateway.calls[-1 - len(READ)] == ("stop_canary", "ledger-desk", "too chatty")
    assert table[-1][3] == "canary stopped: too chatty"

    run(adapters.on_start_canary(gateway, "coffee-shop", 3, 50))
    run(adapters.on_stop_canary(gateway, "coffee-shop", "   "))
    assert gateway.calls[-1 - len(READ)] == ("stop_canary", "coffee-shop", None)  # none sent


@pytest.mark.parametrize(
    ("action", "said"),
    [
        # The gateway's refusals (400, 404), as the client words them.
        (
            lambda g: adapters.on_start_canary(g, "coffee-shop", 2, 25),
            "the gateway refused the request: coffee-shop@v2 is already prod",
        ),
        (
            lambda g: adapters.on_start_canary(g, "tea-house", 1, 25),
            "the gateway refused the request: unknown domain 'tea-house'",
        ),
        (
            lambda g: adapters.on_stop_canary(g, "ledger-desk", None),
            "the gateway refused the request: domain 'ledger-desk' has no canary running",
        ),
    ],
)
def test_a_refused_canary_is_said_and_nothing_raised(
    gateway: FakeGateway, action: Any, said: str
) -> None:
    status, table = run(action(gateway))
    assert status == f"{WARNING} {said}"
    assert table == adapters.adapter_rows(TABLE)  # unchanged, and read again


def test_a_gateway_that_is_down_is_said_on_the_canary_controls(gateway: FakeGateway) -> None:
    down = GatewayUnreachable("gateway unreachable at http://127.0.0.1:9")
    gateway.errors["start_canary"] = gateway.errors["adapters"] = down
    status, table = run(adapters.on_start_canary(gateway, "coffee-shop", 3, 10))
    assert status == f"{WARNING} gateway unreachable at http://127.0.0.1:9"
    assert table == UNCHANGED
    gateway.errors["stop_canary"] = down
    status, _ = run(adapters.on_stop_canary(gateway, "coffee-shop", None))
    assert status == f"{WARNING} gateway unreachable at http://127.0.0.1:9"


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
        (lambda g: adapters.on_start_canary(g, " ", 3, 25), "enter the domain first"),
        (lambda g: adapters.on_start_canary(g, "coffee-shop", None, 25), "enter a version"),
        (lambda g: adapters.on_start_canary(g, "coffee-shop", 3, 0), "enter a share"),
        (lambda g: adapters.on_start_canary(g, "coffee-shop", 3, None), "enter a share"),
        (lambda g: adapters.on_start_canary(g, "coffee-shop", 3, 100.5), "enter a share"),
        (lambda g: adapters.on_stop_canary(g, "", "why"), "enter the domain first"),
    ],
)
def test_an_empty_field_is_said_and_nothing_is_sent(
    gateway: FakeGateway, action: Any, said: str
) -> None:
    status, table = run(action(gateway))
    assert status.startswith(f"{WARNING} {said}")
    assert table == adapters.adapter_rows(TABLE)
    assert gateway.calls == READ  # only the table was read again
