"""Rating answers from the UI: the Chat tab's thumbs and "Improve this answer" box, and the
Adapters tab's feedback column; with the fake gateway client, then against a real gateway
(the fake engine behind it) that keeps feedback in `MemoryFeedbackStore`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr
import pytest
from gradio.helpers import special_args

from lorastack.registry import AdapterRegistry
from lorastack.ui.app import build_app
from lorastack.ui.catalogue import Catalogue
from lorastack.ui.client import AnsweredBy, GatewayClient, GuardrailNotice
from lorastack.ui.errors import NO_FEEDBACK, FeedbackNotCollected, GatewayUnreachable
from lorastack.ui.tabs import adapters, chat
from lorastack.ui.transcript import Turn, turn
from tests.fake_feedback import MemoryFeedbackStore
from tests.unit.serve.conftest import ADMIN_KEY, Running
from tests.unit.ui.fake_gateway import FakeGateway, collect, run

WARNING = "\N{WARNING SIGN}\ufe0f"
UP = "\N{THUMBS UP SIGN} Rating saved"
DOWN = "\N{THUMBS DOWN SIGN} Rating saved"
UNCHANGED = {"__type__": "update"}
FEEDBACK = adapters.ADAPTER_HEADERS.index("feedback")


def _like(index: int, liked: bool | str = True) -> gr.LikeData:
    """What Gradio hands the `.like` handler for a thumb on message `index`."""
    return gr.LikeData(None, {"index": index, "value": ["..."], "liked": liked})


def _answered(gateway: FakeGateway, catalogue: Catalogue, *ids: str) -> list[Turn]:
    """A transcript of one question and answer per id, each answer named by the gateway."""
    turns: list[Turn] = []
    for number, response_id in enumerate(ids):
        gateway.enqueue("coffee-shop", [AnsweredBy("coffee-shop@v1", response_id), f"A{number}"])
        outputs = run(collect(chat.on_send(gateway, catalogue, f"Q{number}", "coffee-shop", turns)))
        turns = outputs[-1][1]
    return turns


def _rated(gateway: FakeGateway) -> list[tuple[Any, ...]]:
    return [call for call in gateway.calls if call[0] == "rate"]


# ---------------------------------------------------------------------------- the chat


def test_each_answer_remembers_its_id(gateway: FakeGateway, catalogue: Catalogue) -> None:
    gateway.enqueue("coffee-shop", [AnsweredBy("coffee-shop@v2", "chatcmpl-1"), "Hi", "!"])
    outputs = run(collect(chat.on_send(gateway, catalogue, "hello", "coffee-shop", [])))
    assert outputs[1][1][-1]["response_id"] == "chatcmpl-1"  # known while it streams
    turns = outputs[-1][1]
    assert [t["response_id"] for t in turns] == ["", "chatcmpl-1"]
    assert turns[-1]["answered_by"] == "coffee-shop@v2"


def test_thumbs_rate_the_answer_they_are_under(gateway: FakeGateway, catalogue: Catalogue) -> None:
    turns = _answered(gateway, catalogue, "chatcmpl-1", "chatcmpl-2")
    assert run(chat.on_like(gateway, turns, _like(1))) == UP
    assert run(chat.on_like(gateway, turns, _like(3, liked=False))) == DOWN
    assert _rated(gateway) == [("rate", "chatcmpl-1", 1, None), ("rate", "chatcmpl-2", -1, None)]


@pytest.mark.parametrize("index", [0, 2, 4, 99, -1])  # a question, a marker, an error, none
def test_only_an_answer_can_be_rated(
    gateway: FakeGateway, catalogue: Catalogue, index: int
) -> None:
    turns = _answered(gateway, catalogue, "chatcmpl-1")
    turns = [*turns, turn("marker", "", "ledger-desk", "Ledgerly Support")]
    turns = [*turns, turn("user", "hi"), turn("error", "down", "ledger-desk", "Ledgerly")]
    said = run(chat.on_like(gateway, turns, _like(index)))
    assert said == f"{WARNING} only an assistant's answer can be rated"
    assert _rated(gateway) == []


def test_a_thumb_taken_back_sends_nothing(gateway: FakeGateway, catalogue: Catalogue) -> None:
    turns = _answered(gateway, catalogue, "chatcmpl-1")
    assert run(chat.on_like(gateway, turns, _like(1, liked=""))) == (
        "Ratings are kept: this one stays saved."
    )
    assert _rated(gateway) == []


def test_a_refused_rating_says_why_and_raises_nothing(
    gateway: FakeGateway, catalogue: Catalogue
) -> None:
    turns = _answered(gateway, catalogue, "chatcmpl-base")
    gateway.uncaptured.add("chatcmpl-base")  # the base model, or capture off
    assert run(chat.on_like(gateway, turns, _like(1))) == f"{WARNING} {NO_FEEDBACK}"
    gateway.errors["rate"] = GatewayUnreachable("gateway unreachable at http://127.0.0.1:9")
    said = run(chat.on_like(gateway, turns, _like(1)))
    assert said == f"{WARNING} gateway unreachable at http://127.0.0.1:9"


def test_an_answer_still_streaming_is_rated_once_it_is_complete(gateway: FakeGateway) -> None:
    streaming = turn("answer", "Hal", "coffee-shop", "Bean There", pending=True)
    turns = [turn("user", "hi"), {**streaming, "response_id": "chatcmpl-1"}]
    said = run(chat.on_like(gateway, turns, _like(1)))
    assert said == f"{WARNING} wait for the answer to finish, then rate it"
    said, box = run(chat.on_improve(gateway, "Hello!", turns))
    assert said.startswith(WARNING) and box == UNCHANGED
    assert _rated(gateway) == []


def test_a_better_answer_goes_to_the_last_answer_with_a_thumb_down(
    gateway: FakeGateway, catalogue: Catalogue
) -> None:
    turns = _answered(gateway, catalogue, "chatcmpl-1", "chatcmpl-2")
    turns = [*turns, turn("user", "and?"), turn("error", "down", "coffee-shop", "Bean There")]
    said, box = run(chat.on_improve(gateway, "  Yes, oat milk at no extra cost.  ", turns))
    assert said == f"{DOWN}, with your better answer" and box == ""
    assert _rated(gateway) == [("rate", "chatcmpl-2", -1, "Yes, oat milk at no extra cost.")]


@pytest.mark.parametrize(
    ("text", "answers", "said"),
    [
        ("better", (), "there is no answer to improve yet"),
        ("   ", ("chatcmpl-1",), "write the better answer first"),
    ],
)
def test_improving_needs_an_answer_and_a_text(
    gateway: FakeGateway, catalogue: Catalogue, text: str, answers: tuple[str, ...], said: str
) -> None:
    turns = _answered(gateway, catalogue, *answers)
    assert run(chat.on_improve(gateway, text, turns)) == (f"{WARNING} {said}", UNCHANGED)
    assert _rated(gateway) == []


def test_a_refused_correction_keeps_the_text(gateway: FakeGateway, catalogue: Catalogue) -> None:
    turns = _answered(gateway, catalogue, "chatcmpl-1")
    gateway.uncaptured.add("chatcmpl-1")
    assert run(chat.on_improve(gateway, "better", turns)) == (
        f"{WARNING} {NO_FEEDBACK}",
        UNCHANGED,
    )


def test_the_page_wires_the_chatbots_thumbs(gateway: FakeGateway, catalogue: Catalogue) -> None:
    app = build_app("http://127.0.0.1:9", None, None)
    chatbot = next(b for b in app.blocks.values() if isinstance(b, gr.Chatbot))
    assert chatbot.feedback_options == ("Like", "Dislike")
    assert chatbot.likeable  # Gradio shows the thumbs only with a `.like` listener
    liked = next(f for f in app.fns.values() if f.api_name == "rate_answer")
    # Gradio finds the LikeData by its type hint, and hands it over with the transcript.
    event = gr.EventData(None, {"index": 1, "value": ["A0"], "liked": True})
    inputs, _, event_index, _ = special_args(liked.fn, [[]], event_data=event)
    assert event_index == 1 and isinstance(inputs[1], gr.LikeData)
    assert run(liked.fn(*inputs)).endswith("only an assistant's answer can be rated")


# ---------------------------------------------------------------------------- adapters

CAPTURING = {
    "domain": "coffee-shop",
    "aliases": {"prod": 1},
    "capture": {"enabled": True, "retention_days": 30},
    "versions": [{"version": 1}, {"version": 2}, {"version": 3}],
}
NOT_CAPTURING = {"domain": "ledger-desk", "aliases": {"prod": 1}, "versions": [{"version": 1}]}
COUNTS = {
    "coffee-shop": [
        # 2 of 3 up: 66%, rounded down like the rules' pass rates.
        {"version": 1, "captured": 40, "up": 2, "down": 1, "up_rate": 2 / 3, "corrections": 1},
        {"version": 2, "captured": 5, "up": 0, "down": 0, "up_rate": None, "corrections": 0},
        {"version": 3, "captured": 0, "up": 0, "down": 0, "up_rate": None, "corrections": 0},
    ],
    "ledger-desk": [
        {"version": 1, "captured": 0, "up": 0, "down": 0, "up_rate": None, "corrections": 0}
    ],
}


def test_the_feedback_column() -> None:
    rows = adapters.adapter_rows([CAPTURING, NOT_CAPTURING], COUNTS)
    assert [row[FEEDBACK] for row in rows] == [
        "40 captured, 2 up, 1 down (66% up), 1 correction",
        "5 captured",
        "0 captured",  # the domain captures: nothing yet
        "",  # nothing captured, nor capturing
    ]
    # Capture turned off later: what was captured still shows.
    off = {**CAPTURING, "capture": {"enabled": False}}
    assert adapters.adapter_rows([off], COUNTS)[2][FEEDBACK] == ""
    assert adapters.adapter_rows([off], COUNTS)[0][FEEDBACK].startswith("40 captured")
    assert adapters.adapter_rows([CAPTURING])[0][FEEDBACK] == "0 captured"  # none read


def test_refresh_reads_each_domains_feedback() -> None:
    gateway = FakeGateway(adapter_table=[CAPTURING, NOT_CAPTURING], feedback_table=COUNTS)
    table, status = run(adapters.on_refresh(gateway))
    assert status == "" and table == adapters.adapter_rows([CAPTURING, NOT_CAPTURING], COUNTS)
    assert gateway.calls == [
        ("adapters",),
        ("feedback_counts", "coffee-shop"),
        ("feedback_counts", "ledger-desk"),
    ]


def test_a_gateway_without_feedback_leaves_the_column_empty() -> None:
    no_store = FeedbackNotCollected("this gateway stores no feedback (no feedback store)")
    gateway = FakeGateway(adapter_table=[NOT_CAPTURING], errors={"feedback_counts": no_store})
    table, status = run(adapters.on_refresh(gateway))
    assert status == "" and table[0][FEEDBACK] == ""
    # ...but a domain that captures its answers there is worth a word.
    gateway.adapter_table = [CAPTURING, NOT_CAPTURING]
    table, status = run(adapters.on_refresh(gateway))
    assert status == f"{WARNING} this gateway stores no feedback (no feedback store)"
    assert [row[0] for row in table] == ["coffee-shop"] * 3 + ["ledger-desk"]
    down = GatewayUnreachable("gateway unreachable at http://127.0.0.1:9")
    gateway.errors["feedback_counts"] = down
    table, status = run(adapters.on_refresh(gateway))
    assert status == f"{WARNING} {down}" and len(table) == 4  # the table still shows


# ---------------------------------------------------------------------------- real gateway


def test_rating_through_a_real_gateway(
    start_gateway: Callable[..., Running], registry: AdapterRegistry
) -> None:
    store = MemoryFeedbackStore()
    registry.set_capture("coffee-shop", True)
    gw = start_gateway(feedback_store=store)
    client = GatewayClient(gw.url, None, ADMIN_KEY)
    catalogue = Catalogue(client)

    def ask(model: str, turns: list[Turn]) -> list[Turn]:
        return run(collect(chat.on_send(client, catalogue, "Oat milk?", model, turns)))[-1][1]

    turns = ask("coffee-shop", [])
    assert turns[-1]["response_id"].startswith("chatcmpl-")
    assert run(chat.on_like(client, turns, _like(1))) == UP
    said, _ = run(chat.on_improve(client, "Yes! Mail jane@example.com", turns))
    assert said == f"{DOWN}, with your better answer"
    assert [(r.response_id, r.rating) for r in store.ratings] == [
        (turns[-1]["response_id"], 1),
        (turns[-1]["response_id"], -1),
    ]
    assert store.ratings[-1].correction == "Yes! Mail <EMAIL_ADDRESS_1>"  # masked first

    for model in ("ledger-desk", "tiny"):  # capture off; the base model
        turns = ask(model, turns)
        said = run(chat.on_like(client, turns, _like(len(turns) - 1)))
        assert said == f"{WARNING} {NO_FEEDBACK}"

    table, status = run(adapters.on_refresh(client))
    assert status == ""
    rows = {(row[0], row[1]): row[FEEDBACK] for row in table}
    assert rows == {
        ("coffee-shop", "v1"): "1 captured, 1 up, 1 down (50% up), 1 correction",
        ("ledger-desk", "v1"): "",
    }


def test_a_gateway_without_a_store_says_so(start_gateway: Callable[..., Running]) -> None:
    gw = start_gateway()
    client = GatewayClient(gw.url, None, ADMIN_KEY)
    gateway_turns = run(collect(chat.on_send(client, Catalogue(client), "hi", "coffee-shop", [])))[
        -1
    ][1]
    said = run(chat.on_like(client, gateway_turns, _like(1)))
    assert said == (
        f"{WARNING} this gateway stores no feedback (no feedback store, or the guardrails are off)"
    )
    table, status = run(adapters.on_refresh(client))
    assert status == "" and {row[FEEDBACK] for row in table} == {""}


def test_the_guardrail_notice_and_the_rating_do_not_mix(
    gateway: FakeGateway, catalogue: Catalogue
) -> None:
    gateway.enqueue(
        "coffee-shop", [AnsweredBy("coffee-shop@v1", "chatcmpl-1"), "Hi", GuardrailNotice(1)]
    )
    _, turns, notice, _ = run(
        collect(chat.on_send(gateway, catalogue, "I'm Jane", "coffee-shop", []))
    )[-1]
    assert "masked" in notice
    assert run(chat.on_like(gateway, turns, _like(1))) == UP
