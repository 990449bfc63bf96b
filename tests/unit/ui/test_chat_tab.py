"""The Chat tab's handlers, called directly with a fake gateway client (no server)."""

from __future__ import annotations

import asyncio

from lorastack.ui.catalogue import Catalogue
from lorastack.ui.client import AnsweredBy, GuardrailNotice, Message
from lorastack.ui.errors import BlockedByPrivacyPolicy, EngineRestarting, GatewayUnreachable
from lorastack.ui.streaming import ANSWER_PARAMS
from lorastack.ui.tabs import chat
from lorastack.ui.tabs.chat import ChatOutput
from lorastack.ui.transcript import Turn
from tests.unit.ui.fake_gateway import FakeGateway, collect, run


def send(
    gateway: FakeGateway, catalogue: Catalogue, text: str, model: str | None, turns: list[Turn]
) -> list[ChatOutput]:
    return run(collect(chat.on_send(gateway, catalogue, text, model, turns)))


def texts(output: ChatOutput) -> list[str]:
    return [m["content"] for m in output[0]]


def test_an_answer_streams_in_titled_with_its_domain(
    gateway: FakeGateway, catalogue: Catalogue
) -> None:
    gateway.enqueue("coffee-shop", ["Hel", "lo", " there", GuardrailNotice(0)])
    outputs = send(gateway, catalogue, "  hi  ", "coffee-shop", [])

    shown = [texts(o)[-1] for o in outputs]
    assert shown == ["", "Hel", "Hello", "Hello there", "Hello there"]
    assert all(texts(o)[0] == "hi" for o in outputs)
    assert all(o[3] == "" for o in outputs)  # the message box is emptied at once
    streaming = [o[0][-1]["metadata"].get("status") for o in outputs]
    assert streaming == ["pending"] * 4 + [None]
    messages, turns, notice, _ = outputs[-1]
    assert messages[-1]["metadata"] == {"title": "Bean There"}
    assert notice == ""
    assert [t["kind"] for t in turns] == ["user", "answer"]
    assert turns[-1]["model"] == "coffee-shop"
    assert gateway.last_chat.messages == [Message("user", "hi")]
    assert gateway.last_chat.params == ANSWER_PARAMS


def test_the_guardrail_notice_goes_under_the_answer(
    gateway: FakeGateway, catalogue: Catalogue
) -> None:
    gateway.enqueue("coffee-shop", ["fine", GuardrailNotice(2)])
    messages, turns, notice, _ = send(gateway, catalogue, "I'm Jane", "coffee-shop", [])[-1]
    expected = "\N{SHIELD}\ufe0f 2 personal data items were masked before reaching the model"
    assert notice == expected
    assert messages[-1]["metadata"]["log"] == expected
    assert turns[-1]["note"] == expected


def test_an_answer_names_the_version_that_wrote_it_and_keeps_the_domain(
    gateway: FakeGateway, catalogue: Catalogue
) -> None:
    # The gateway answers `coffee-shop` with its canary: `"model": "coffee-shop@v2"`.
    gateway.enqueue("coffee-shop", [AnsweredBy("coffee-shop@v2"), "Hi", GuardrailNotice(1)])
    outputs = send(gateway, catalogue, "hello", "coffee-shop", [])
    messages, turns, notice, _ = outputs[-1]
    assert turns[-1]["model"] == "coffee-shop"  # the transcript stays on the chosen domain
    assert turns[-1]["answered_by"] == "coffee-shop@v2"
    assert messages[-1]["metadata"] == {
        "title": "Bean There",
        "log": "coffee-shop@v2 \N{MIDDLE DOT} \N{SHIELD}\ufe0f 1 personal data item was masked "
        "before reaching the model",
    }
    assert notice.endswith("1 personal data item was masked before reaching the model")
    assert outputs[1][0][-1]["metadata"]["log"] == "coffee-shop@v2"  # named while it streams

    # The next question to the same domain is no switch, even if prod answers it.
    gateway.enqueue("coffee-shop", [AnsweredBy("coffee-shop@v1"), "Again"])
    messages, turns, _, _ = send(gateway, catalogue, "more", "coffee-shop", turns)[-1]
    assert [t["kind"] for t in turns] == ["user", "answer", "user", "answer"]
    assert messages[-1]["metadata"] == {"title": "Bean There", "log": "coffee-shop@v1"}
    assert gateway.last_chat.messages[-2:] == [Message("assistant", "Hi"), Message("user", "more")]

    # A version asked for by name is no news: nothing beside the title.
    gateway.enqueue("coffee-shop@v2", [AnsweredBy("coffee-shop@v2"), "Same"])
    messages, turns, _, _ = send(gateway, catalogue, "v2?", "coffee-shop@v2", turns)[-1]
    assert messages[-1]["metadata"] == {"title": "Bean There"}
    assert turns[-1]["model"] == "coffee-shop@v2"


def test_nothing_to_send_and_no_domain(gateway: FakeGateway, catalogue: Catalogue) -> None:
    assert send(gateway, catalogue, "   ", "coffee-shop", []) == [([], [], "", "")]

    [(messages, turns, _, _)] = send(gateway, catalogue, "hello", None, [])
    assert [t["kind"] for t in turns] == ["user", "error"]
    assert messages[-1]["content"] == "\N{WARNING SIGN}\ufe0f No assistant: pick an assistant first"
    assert gateway.chats == []


def test_a_failure_keeps_what_arrived_then_says_why(
    gateway: FakeGateway, catalogue: Catalogue
) -> None:
    gateway.enqueue("coffee-shop", ["half ", "an answer", EngineRestarting(5)])
    messages, turns, _, _ = send(gateway, catalogue, "tell me", "coffee-shop", [])[-1]
    assert [t["kind"] for t in turns] == ["user", "answer", "error"]
    assert not turns[1]["pending"] and turns[1]["text"] == "half an answer"
    assert messages[-1]["content"].endswith("Bean There: engine restarting, try again in 5 s")

    # Refused before a word came: no empty answer, only the error.
    gateway.enqueue("coffee-shop", [BlockedByPrivacyPolicy("blocked by the privacy policy: X")])
    _, turns, notice, _ = send(gateway, catalogue, "again", "coffee-shop", turns)[-1]
    assert [t["kind"] for t in turns][-2:] == ["user", "error"]
    assert turns[-1]["text"] == "blocked by the privacy policy: X" and notice == ""


def test_an_unknown_domain_is_titled_with_its_name(
    gateway: FakeGateway, catalogue: Catalogue
) -> None:
    messages, _, _, _ = send(gateway, catalogue, "hello", "no-such-domain", [])[-1]
    assert "no-such-domain: unknown domain `no-such-domain`" in messages[-1]["content"]
    # The list was fetched again for the name it did not know; the chat call said why.
    assert ("list_domains",) in gateway.calls


def test_a_gateway_that_is_down_reads_as_unreachable(
    gateway: FakeGateway, catalogue: Catalogue
) -> None:
    down = GatewayUnreachable("gateway unreachable at http://127.0.0.1:9")
    gateway.errors["list_domains"] = down
    gateway.enqueue("coffee-shop", [down])
    messages, _, _, _ = send(gateway, catalogue, "hello", "coffee-shop", [])[-1]
    assert messages[-1]["content"].endswith(
        "coffee-shop: gateway unreachable at http://127.0.0.1:9"
    )


def test_switching_marks_the_transcript_and_the_engine_never_sees_it(
    gateway: FakeGateway, catalogue: Catalogue
) -> None:
    _, turns, _, _ = send(gateway, catalogue, "hello", "coffee-shop", [])[-1]

    messages, turns, about = run(chat.on_switch(catalogue, "ledger-desk", turns))
    assert messages[-1]["content"] == "*\N{EM DASH} switched to Ledgerly Support \N{EM DASH}*"
    assert about.startswith("**Ledgerly Support** (`ledger-desk`)") and "loaded" in about

    _, turns, _, _ = send(gateway, catalogue, "and you?", "ledger-desk", turns)[-1]
    assert [t["kind"] for t in turns] == ["user", "answer", "marker", "user", "answer"]
    assert gateway.last_chat.messages == [
        Message("user", "hello"),
        Message("assistant", "echo from coffee-shop: hello"),
        Message("user", "and you?"),
    ]
    # Sending to another domain without picking it first marks the switch as well.
    _, turns, _, _ = send(gateway, catalogue, "back", "coffee-shop", turns)[-1]
    assert turns[-3]["kind"] == "marker" and turns[-3]["title"] == "Bean There"

    assert run(chat.on_switch(catalogue, None, turns))[2] == "*Pick an assistant above.*"


def test_retry_asks_the_last_question_again(gateway: FakeGateway, catalogue: Catalogue) -> None:
    _, turns, _, _ = send(gateway, catalogue, "hello", "coffee-shop", [])[-1]
    gateway.enqueue("ledger-desk", ["second ", "try"])
    outputs = run(collect(chat.on_retry(gateway, catalogue, "ledger-desk", turns)))
    messages, turns, _, _ = outputs[-1]
    assert [m["content"] for m in messages] == ["hello", "second try"]
    assert messages[-1]["metadata"]["title"] == "Ledgerly Support"
    assert gateway.last_chat.messages == [Message("user", "hello")]

    nothing_asked = run(collect(chat.on_retry(gateway, catalogue, "coffee-shop", [])))
    assert nothing_asked == [([], [], "", "")]
    no_domain = run(collect(chat.on_retry(gateway, catalogue, None, turns)))
    assert no_domain[-1][1] == turns


def test_stop_closes_the_stream_and_settles_the_answer(
    gateway: FakeGateway, catalogue: Catalogue
) -> None:
    gateway.enqueue("coffee-shop", [f"w{i} " for i in range(100)])

    async def stop_after_three() -> ChatOutput:
        stream = chat.on_send(gateway, catalogue, "a long one", "coffee-shop", [])
        outputs = [await anext(stream) for _ in range(4)]
        await stream.aclose()  # what Gradio does to a cancelled event
        return outputs[-1]

    _, turns, _, _ = asyncio.run(stop_after_three())
    assert not gateway.last_chat.open and not gateway.last_chat.finished
    assert turns[-1]["pending"]
    messages, settled = chat.on_stop(turns)
    assert settled[-1]["text"] == "w0 w1 w2 " and not settled[-1]["pending"]
    assert "status" not in messages[-1]["metadata"]


def test_clear_empties_everything() -> None:
    assert chat.on_clear() == ([], [], "", "")
