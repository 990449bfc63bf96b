"""The Compare tab's handler, the page's domain lists and stream merging, with a fake
gateway client (no server)."""

from __future__ import annotations

import asyncio
from typing import Any

from lorastack.ui.app import load_domains
from lorastack.ui.catalogue import Catalogue
from lorastack.ui.client import AnsweredBy, GuardrailNotice
from lorastack.ui.errors import EngineRestarting, GatewayUnreachable, UnknownDomain
from lorastack.ui.streaming import merge_streams
from lorastack.ui.tabs import compare
from tests.unit.ui.fake_gateway import FakeGateway, collect, run

WARNING = "\N{WARNING SIGN}\ufe0f"


def compared(
    gateway: FakeGateway, catalogue: Catalogue, text: str, model: str | None
) -> list[tuple[Any, Any]]:
    return run(collect(compare.on_compare(gateway, catalogue, text, model)))


# ---------------------------------------------------------------------------- compare


def test_compare_streams_the_base_model_and_the_domain(
    gateway: FakeGateway, catalogue: Catalogue
) -> None:
    outputs = compared(gateway, catalogue, " hi there ", "coffee-shop")
    # First the two boxes are emptied and titled, then both answers grow.
    base_box, domain_box = outputs[0]
    assert base_box == {"__type__": "update", "value": "", "label": "tiny (base model)"}
    assert domain_box == {"__type__": "update", "value": "", "label": "Bean There"}
    assert outputs[-1] == ("echo from tiny: hi there", "echo from coffee-shop: hi there")
    assert len(outputs) > 3
    assert sorted(call.model for call in gateway.chats) == ["coffee-shop", "tiny"]
    assert all(call.finished for call in gateway.chats)


def test_the_domain_box_names_the_version_that_answered(
    gateway: FakeGateway, catalogue: Catalogue
) -> None:
    gateway.enqueue("tiny", [AnsweredBy("tiny"), "base"])
    gateway.enqueue("coffee-shop", [AnsweredBy("coffee-shop@v2"), "canary"])
    outputs = compared(gateway, catalogue, "hi", "coffee-shop")
    relabelled = [d for _, d in outputs[1:] if isinstance(d, dict)]
    assert relabelled == [
        {"__type__": "update", "value": "", "label": "Bean There \N{MIDDLE DOT} coffee-shop@v2"}
    ]
    assert outputs[-1] == ("base", "canary")
    # The base model's own name is no news, and neither is a version asked for by name.
    gateway.enqueue("coffee-shop@v2", [AnsweredBy("coffee-shop@v2"), "same"])
    outputs = compared(gateway, catalogue, "hi", "coffee-shop@v2")
    assert not [box for pair in outputs[1:] for box in pair if isinstance(box, dict)]


def test_each_box_says_what_happened_to_its_answer(
    gateway: FakeGateway, catalogue: Catalogue
) -> None:
    gateway.enqueue("tiny", ["plain ", "answer", GuardrailNotice(1)])
    gateway.enqueue("coffee-shop", ["half", EngineRestarting(5)])
    base, domain = compared(gateway, catalogue, "Jane here", "coffee-shop")[-1]
    assert base == (
        "plain answer\n\n\N{SHIELD}\ufe0f 1 personal data item was masked before reaching the model"
    )
    assert domain == f"half\n\n{WARNING} engine restarting, try again in 5 s"

    gateway.enqueue("coffee-shop", [UnknownDomain("unknown domain `gone`")])
    _, domain = compared(gateway, catalogue, "hi", "coffee-shop")[-1]
    assert domain == f"{WARNING} unknown domain `gone`"  # no text: the note alone


def test_nothing_to_compare(gateway: FakeGateway, catalogue: Catalogue) -> None:
    assert compared(gateway, catalogue, "  ", "coffee-shop") == [("", "")]
    assert compared(gateway, catalogue, "hi", None) == [("", f"{WARNING} pick a domain first")]
    assert gateway.chats == []

    gateway.domains = [d for d in gateway.domains if not d.is_base]
    assert compared(gateway, catalogue, "hi", "coffee-shop") == [
        (f"{WARNING} the gateway lists no base model", "")
    ]

    gateway.errors["list_domains"] = GatewayUnreachable("gateway unreachable at http://h:1")
    down = f"{WARNING} gateway unreachable at http://h:1"
    assert compared(gateway, Catalogue(gateway), "hi", "coffee-shop") == [(down, down)]


# ---------------------------------------------------------------------------- domain lists


def test_the_domain_lists_come_from_the_gateway(gateway: FakeGateway, catalogue: Catalogue) -> None:
    chat_list, compare_list, about, base_box = run(load_domains(catalogue, None, None))
    assert chat_list["choices"] == [
        ("tiny (base model)", "tiny"),
        ("Bean There", "coffee-shop"),
        ("Ledgerly Support", "ledger-desk"),
    ]
    assert chat_list["value"] == "coffee-shop"  # a domain, not the base model, by default
    assert [c[1] for c in compare_list["choices"]] == ["coffee-shop", "ledger-desk"]
    assert compare_list["value"] == "coffee-shop"
    assert about.startswith("**Bean There** (`coffee-shop`)")
    assert "version v1 \N{MIDDLE DOT} prod \N{RIGHTWARDS ARROW} v1" in about
    assert base_box == {"__type__": "update", "label": "tiny (base model)"}

    # A choice still listed is kept; one that is gone falls back to the first domain.
    chat_list, compare_list, about, _ = run(load_domains(catalogue, "ledger-desk", "gone"))
    assert chat_list["value"] == "ledger-desk" and compare_list["value"] == "coffee-shop"
    assert about.startswith("**Ledgerly Support**")


def test_domain_lists_when_the_gateway_lists_little_or_is_down(
    gateway: FakeGateway, catalogue: Catalogue
) -> None:
    gateway.domains = gateway.domains[:1]  # only the base model
    chat_list, compare_list, _, base_box = run(load_domains(catalogue, None, None))
    assert chat_list["value"] == "tiny" and compare_list["value"] is None
    gateway.domains = []
    chat_list, _, about, base_box = run(load_domains(catalogue, None, None))
    assert chat_list["value"] is None and about == "*Pick an assistant above.*"
    assert base_box["label"] == "Base model (none listed)"

    gateway.errors["list_domains"] = GatewayUnreachable("gateway unreachable at http://h:1")
    unchanged = {"__type__": "update"}
    assert run(load_domains(catalogue, "x", "y")) == (
        unchanged,
        unchanged,
        f"{WARNING} gateway unreachable at http://h:1",
        unchanged,
    )


# ---------------------------------------------------------------------------- merging


def test_merged_streams_interleave_and_each_ends_once(gateway: FakeGateway) -> None:
    gateway.enqueue("a", ["a1", "a2", "a3"])
    gateway.enqueue("b", ["b1", EngineRestarting(5)])
    streams = {key: gateway.stream_chat(key, []) for key in ("a", "b")}
    items = run(collect(merge_streams(streams)))
    by_key = {key: [item for k, item in items if k == key] for key in ("a", "b")}
    assert by_key["a"] == ["a1", "a2", "a3", None]
    assert by_key["b"][0] == "b1" and isinstance(by_key["b"][1], EngineRestarting)
    assert by_key["b"][2:] == [None]
    first_b = next(i for i, (key, _) in enumerate(items) if key == "b")
    assert first_b < 3  # not one stream after the other


def test_closing_the_merged_stream_closes_every_stream(gateway: FakeGateway) -> None:
    for key in ("a", "b"):
        gateway.enqueue(key, [f"{key}{i}" for i in range(1000)])

    async def read_one_then_stop() -> None:
        merged = merge_streams({key: gateway.stream_chat(key, []) for key in ("a", "b")})
        await anext(merged)
        await merged.aclose()  # what Stop does to the compare event

    asyncio.run(read_one_then_stop())
    assert [(c.open, c.finished) for c in gateway.chats] == [(False, False), (False, False)]
