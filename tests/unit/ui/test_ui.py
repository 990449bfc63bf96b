"""The Gradio UI, driven with gradio_client against the gateway in front of the fake upstream."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import pytest

from lorastack.registry import AdapterRegistry
from lorastack.ui.client import GuardrailNotice, normalise_api_url
from lorastack.ui.errors import (
    AccessDenied,
    BlockedByGuardrail,
    BlockedByPrivacyPolicy,
    EngineRestarting,
    UnknownDomain,
    error_from_response,
    stream_error,
)
from lorastack.ui.tabs import adapters
from lorastack.ui.transcript import Turn, conversation, turn, with_switch_marker
from tests.servers import free_port
from tests.unit.ui.conftest import Ui

ADMIN_ENDPOINTS = (
    "/adapters",
    "/load_adapter",
    "/unload_adapter",
    "/promote",
    "/rollback",
    "/start_canary",
    "/stop_canary",
    "/usage",
    "/keys",
    "/show_revoked_keys",
    "/create_key",
    "/revoke_key",
    "/rotate_key",
)
LOADED = adapters.ADAPTER_HEADERS.index("loaded")  # the adapters table's last column


def _text(message: dict[str, Any]) -> str:
    """The text of one Chatbot message as gradio_client returns it."""
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def _title(message: dict[str, Any]) -> str | None:
    return (message.get("metadata") or {}).get("title")


def _send(ui: Ui, text: str, model: str) -> tuple[list[dict[str, Any]], str]:
    """Send a chat message; (the transcript, the guardrail notice)."""
    chat, notice, box = ui.call("/send", text, model)
    assert box == ""  # the textbox is cleared
    return chat, notice


def _upstream_chat(ui: Ui) -> list[dict[str, Any]]:
    """The last conversation the engine received, without the domain's system prompt."""
    messages = ui.gateway.fake.completion_requests[-1].body["messages"]
    return [m for m in messages if m["role"] != "system"]


# ---------------------------------------------------------------------------- chat


def test_domains_on_their_way_are_announced_then_picked_up_by_themselves(
    start_ui: Callable[..., Ui], publish: Callable[..., Any]
) -> None:
    ui = start_ui(expected=("tea-house", "coffee-shop"))
    chat_list, _, _, _, note, timer = ui.call("/arrivals", None, None)
    assert "tea-house" in note["value"] and "coffee-shop" not in note["value"]
    assert note["visible"] is True and timer["active"] is True
    assert "tea-house" not in [c[1] for c in chat_list["choices"]]

    publish("tea-house", 3, display_name="Leaf & Co")
    chat_list, _, _, _, note, timer = ui.call("/await_domains", "coffee-shop", None)
    assert ["Leaf & Co", "tea-house"] in chat_list["choices"]
    assert chat_list["value"] == "coffee-shop"  # the user's choice is kept
    assert note["visible"] is False and timer["active"] is False


def test_domain_list_comes_from_the_gateway(ui: Ui, publish: Callable[..., Any]) -> None:
    chat_list, compare_list, about, base_label = ui.call("/domains", None, None)
    assert chat_list["choices"] == [
        ["tiny (base model)", "tiny"],
        ["Bean There", "coffee-shop"],
        ["Ledgerly Support", "ledger-desk"],
    ]
    assert chat_list["value"] == "coffee-shop"  # a domain, not the base model, by default
    assert [c[1] for c in compare_list["choices"]] == ["coffee-shop", "ledger-desk"]
    assert about.startswith("**Bean There**") and "v1" in about
    assert base_label["label"] == "tiny (base model)"

    publish("tea-house", 3, display_name="Leaf & Co", description="Loose-leaf tea shop.")
    chat_list, *_ = ui.call("/refresh_domains", "ledger-desk", None)
    assert ["Leaf & Co", "tea-house"] in chat_list["choices"]
    assert chat_list["value"] == "ledger-desk"  # the choice is kept
    _, about = ui.call("/switch_domain", "tea-house")
    assert "Leaf & Co" in about and "Loose-leaf tea shop." in about


def test_an_answer_streams_in_titled_with_its_domain(ui: Ui) -> None:
    words = [f"word{i} " for i in range(12)]
    ui.gateway.fake.enqueue(words, delay_s=0.02)
    job = ui.client.submit("hello there", "coffee-shop", api_name="/send")
    chat, notice, _ = job.result(timeout=20)
    assert [m["role"] for m in chat] == ["user", "assistant"]
    assert _text(chat[0]) == "hello there"
    assert _text(chat[1]) == "".join(words)
    assert _title(chat[1]) == "Bean There"
    assert notice == ""  # nothing was masked
    partial = [_text(out[0][-1]) for out in job.outputs() if out[0][-1]["role"] == "assistant"]
    assert any(0 < len(text) < len("".join(words)) for text in partial)  # it grew in pieces


def test_stop_ends_the_stream_and_keeps_what_arrived(ui: Ui) -> None:
    fake = ui.gateway.fake
    fake.enqueue([f"w{i} " for i in range(200)], delay_s=0.02)
    job = ui.client.submit("a long one, please", "coffee-shop", api_name="/send")
    assert fake.wait_for(lambda: len(job.outputs()) > 3, timeout_s=10)
    job.cancel()
    chat = ui.call("/stop")
    assert fake.wait_for(lambda: fake.cancelled_streams == 1, timeout_s=5)  # engine stopped
    assert chat[-1]["metadata"]["title"] == "Bean There"
    assert chat[-1]["metadata"].get("status") != "pending"
    assert _text(chat[-1]).startswith("w0 w1 ") and not _text(chat[-1]).endswith("w199 ")
    chat, _ = _send(ui, "thanks", "coffee-shop")  # the app keeps working
    assert _text(chat[-1]) == "echo from coffee-shop@v1: thanks"


def test_switching_domain_keeps_the_history_and_marks_it(ui: Ui) -> None:
    chat, _ = _send(ui, "hello", "coffee-shop")
    assert _text(chat[-1]) == "echo from coffee-shop@v1: hello"

    chat, about = ui.call("/switch_domain", "ledger-desk")
    assert len(chat) == 3 and "switched to Ledgerly Support" in _text(chat[-1])
    assert "Ledgerly Support" in about

    chat, _ = _send(ui, "and you?", "ledger-desk")
    texts = [_text(m) for m in chat]
    assert texts[:2] == ["hello", "echo from coffee-shop@v1: hello"]
    assert "switched to Ledgerly Support" in texts[2]
    assert texts[3:] == ["and you?", "echo from ledger-desk@v1: and you?"]
    assert [_title(m) for m in chat] == [None, "Bean There", None, None, "Ledgerly Support"]
    # The engine got the conversation, without the marker.
    assert _upstream_chat(ui) == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "echo from coffee-shop@v1: hello"},
        {"role": "user", "content": "and you?"},
    ]

    # Back and forth with nothing said in between: no marker is left.
    ui.call("/switch_domain", "coffee-shop")
    chat, _ = ui.call("/switch_domain", "ledger-desk")
    assert len(chat) == 5


def test_the_guardrail_notice_counts_without_values(ui: Ui, home: Path) -> None:
    chat, notice = _send(ui, "I'm Jane Porter, jane@example.com", "coffee-shop")
    assert "2 personal data items were masked before reaching the model" in notice
    assert "Jane" not in notice and "jane@" not in notice
    assert "masked" in chat[-1]["metadata"]["log"]
    assert "Jane Porter" not in str(ui.gateway.fake.completion_requests[-1].body)

    (home / "policies").mkdir(parents=True, exist_ok=True)
    (home / "policies" / "ledger-desk.yaml").write_text("entities: {CREDIT_CARD: {input: block}}\n")
    chat, notice = _send(ui, "Card 4111 1111 1111 1111", "ledger-desk")
    refusal = _text(chat[-1])
    assert "blocked by the privacy policy" in refusal and "CREDIT_CARD" in refusal
    assert "4111" not in refusal and notice == ""


def test_retry_asks_again_and_clear_empties(ui: Ui) -> None:
    _send(ui, "hello", "coffee-shop")
    ui.gateway.fake.enqueue(["second ", "try"])
    chat, _, _ = ui.call("/retry", "coffee-shop")
    assert [_text(m) for m in chat] == ["hello", "second try"]
    assert _upstream_chat(ui) == [{"role": "user", "content": "hello"}]
    chat, _, _ = ui.call("/retry", "ledger-desk")  # retry on another domain
    assert _text(chat[-1]) == "echo from ledger-desk@v1: hello"
    assert ui.call("/clear") == ([], "", "")
    chat, _ = _send(ui, "fresh start", "coffee-shop")
    assert len(chat) == 2
    assert _upstream_chat(ui) == [{"role": "user", "content": "fresh start"}]


def test_the_chatbots_own_clear_button_empties_the_session_too(ui: Ui) -> None:
    # The Chatbot's trash icon clears what is shown in the browser; without an event of
    # ours, the session kept the transcript and the next answer brought it all back.
    config = ui.app.get_config_file()
    chatbot = next(c["id"] for c in config["components"] if c["type"] == "chatbot")
    states = {c["id"] for c in config["components"] if c["type"] == "state"}
    on_clear = [
        d
        for d in config["dependencies"]
        if [chatbot, "clear"] in [list(t) for t in d["targets"]] and states & set(d["outputs"])
    ]
    assert len(on_clear) == 1 and chatbot in on_clear[0]["outputs"]


def test_an_unknown_or_removed_domain_reads_as_a_message(ui: Ui, registry: AdapterRegistry) -> None:
    chat, _ = _send(ui, "hello", "no-such-domain")
    assert chat[-1]["role"] == "assistant"
    assert "unknown domain `no-such-domain`" in _text(chat[-1])

    registry.remove("ledger-desk", 1)
    chat, _ = _send(ui, "still there?", "ledger-desk")
    assert "unknown domain `ledger-desk`" in _text(chat[-1])

    chat, _ = _send(ui, "hello again", "coffee-shop")  # the app keeps working
    assert _text(chat[-1]) == "echo from coffee-shop@v1: hello again"
    # Failed questions are not sent again: roles keep alternating.
    assert _upstream_chat(ui) == [{"role": "user", "content": "hello again"}]

    # An engine that drops the stream midway: what arrived stays, followed by the error.
    ui.gateway.fake.enqueue_disconnect(after_chunks=3)
    chat, _ = _send(ui, "tell me more", "coffee-shop")
    assert chat[-1]["role"] == "assistant"
    assert "engine restarting, try again in" in _text(chat[-1])


def test_a_dead_engine_reads_as_restarting_and_the_app_recovers(ui: Ui) -> None:
    _send(ui, "hello", "coffee-shop")
    ui.gateway.fake.kill()
    chat, _ = _send(ui, "are you there?", "coffee-shop")
    assert "engine restarting, try again in 5 s" in _text(chat[-1])
    ui.gateway.fake.restart()
    # Another domain: the gateway does not yet reload, for a streamed request, an adapter
    # the restarted engine lost (it does for a non-streamed one).
    chat, _, _ = ui.call("/retry", "ledger-desk")
    assert _text(chat[-1]) == "echo from ledger-desk@v1: are you there?"
    assert "engine restarting" not in " ".join(_text(m) for m in chat)


def test_a_gateway_that_is_down_reads_as_unreachable(start_ui: Callable[..., Ui]) -> None:
    address = f"http://127.0.0.1:{free_port()}"
    ui = start_ui(api_url=address)
    _, _, about, _ = ui.call("/domains", None, None)
    assert f"gateway unreachable at {address}" in about
    chat, _ = _send(ui, "hello", "coffee-shop")
    assert f"gateway unreachable at {address}" in _text(chat[-1])
    base, domain = ui.call("/compare", "hello", "coffee-shop")
    assert f"gateway unreachable at {address}" in base
    assert f"gateway unreachable at {address}" in domain


# ---------------------------------------------------------------------------- compare


def test_compare_streams_the_base_model_and_the_domain(ui: Ui) -> None:
    job = ui.client.submit("hi there", "coffee-shop", api_name="/compare")
    base, domain = job.result(timeout=20)
    assert base == "echo from tiny: hi there"
    assert domain == "echo from coffee-shop@v1: hi there"
    assert len(job.outputs()) > 2  # streamed, not in one piece
    models = sorted(r.body["model"] for r in ui.gateway.fake.completion_requests)
    assert models == ["coffee-shop@v1", "tiny"]


# ---------------------------------------------------------------------------- admin


def test_admin_actions(ui: Ui, publish: Callable[..., Any]) -> None:
    table, status = ui.call("/adapters")
    assert status == ""
    assert [row[:2] for row in table["data"]] == [["coffee-shop", "v1"], ["ledger-desk", "v1"]]
    assert table["headers"] == adapters.ADAPTER_HEADERS
    assert table["data"][0][3] == "prod" and table["data"][1][LOADED] == "not loaded"

    status, table = ui.call("/load_adapter", "ledger-desk")
    assert status.startswith("\N{CHECK MARK} loaded ledger-desk@v1")
    assert table["data"][1][LOADED] == "engine 0: ready"
    status, table = ui.call("/unload_adapter", "ledger-desk")
    assert status.startswith("\N{CHECK MARK} unloaded ledger-desk@v1")
    assert table["data"][1][LOADED] == "not loaded"

    publish("coffee-shop", 7)  # v2
    status, table = ui.call("/promote", "coffee-shop", 2, "prod")
    assert "coffee-shop@prod now points to v2" in status
    assert [row[3] for row in table["data"][:2]] == ["", "prod"]
    chat, _ = _send(ui, "which version?", "coffee-shop")
    assert _text(chat[-1]) == "echo from coffee-shop@v2: which version?"

    status, _ = ui.call("/rollback", "coffee-shop", "prod")
    assert "coffee-shop@prod rolled back to v1" in status
    status, _ = ui.call("/rollback", "coffee-shop", "prod")
    assert status.startswith("\N{WARNING SIGN}") and "no earlier version" in status
    status, _ = ui.call("/load_adapter", "nope")
    assert status.startswith("\N{WARNING SIGN}")
    status, _ = ui.call("/promote", "", 1, "prod")
    assert "enter the domain first" in status


def test_a_canary_through_the_app(ui: Ui, publish: Callable[..., Any]) -> None:
    publish("coffee-shop", 7)  # v2; v1 is prod
    status, table = ui.call("/start_canary", "coffee-shop", 2, 100)
    assert status == (
        "\N{CHECK MARK} coffee-shop: v2 is the canary for 100% of conversations (prod → v1)"
    )
    assert [row[3] for row in table["data"][:2]] == ["prod", "canary 100%"]

    # Every conversation goes to the canary: the answer names it, the transcript keeps the domain.
    chat, _ = _send(ui, "which version?", "coffee-shop")
    assert _text(chat[-1]) == "echo from coffee-shop@v2: which version?"
    assert _title(chat[-1]) == "Bean There"
    assert chat[-1]["metadata"]["log"] == "coffee-shop@v2"
    # The gateway counted it for v2 (its brand rules, none here, would show beside it).
    live = adapters.ADAPTER_HEADERS.index("live")

    def counted() -> bool:
        return bool(ui.call("/adapters")[0]["data"][1][live] == "1 answer")

    assert ui.gateway.fake.wait_for(counted, timeout_s=5)

    status, table = ui.call("/stop_canary", "coffee-shop", "seen enough")
    assert status.startswith("\N{CHECK MARK} coffee-shop: canary v2 stopped")
    assert table["data"][1][3] == "canary stopped: seen enough"
    status, _ = ui.call("/stop_canary", "coffee-shop", "")
    assert status.startswith("\N{WARNING SIGN}") and "no canary running" in status
    status, _ = ui.call("/start_canary", "coffee-shop", 1, 10)
    assert status.startswith("\N{WARNING SIGN}") and "already prod" in status


def test_the_usage_section_says_when_the_gateway_records_none(ui: Ui) -> None:
    # This gateway has no database: the chart and the table stay empty, the note says why.
    *_, note = ui.call("/usage")
    assert note.startswith("\N{WARNING SIGN}") and "has no database" in note


def test_without_the_admin_key_there_is_no_adapters_tab(start_ui: Callable[..., Ui]) -> None:
    wrong = start_ui(admin_key="not-the-admin-key-at-all")
    _, status = wrong.call("/adapters")
    assert "refused the admin key" in status

    ui = start_ui(admin_key=None)
    endpoints = ui.client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert "/send" in endpoints
    assert not set(ADMIN_ENDPOINTS) & set(endpoints)
    tabs = [block.label for block in ui.app.blocks.values() if isinstance(block, gr.Tab)]
    assert tabs == ["Chat", "Compare"]
    with pytest.raises(ValueError):
        ui.call("/adapters")


# ---------------------------------------------------------------------------- pieces


def _t(kind: Any, text: str = "", model: str = "") -> Turn:
    return turn(kind, text, model, model)


def test_conversation_drops_markers_errors_and_unanswered_questions() -> None:
    turns = [
        _t("user", "a"),
        _t("answer", "A", "x"),
        _t("marker", model="y"),
        _t("user", "b"),
        _t("error", "down", "y"),
        _t("user", "c"),
    ]
    wire = [(m.role, m.content) for m in conversation(turns)]
    assert wire == [("user", "a"), ("assistant", "A"), ("user", "c")]


def test_switch_markers() -> None:
    assert with_switch_marker([], "y", "Y") == []  # nothing to mark yet
    turns = [_t("user", "a"), _t("answer", "A", "x")]
    marked = with_switch_marker(turns, "y", "Y")
    assert [t["kind"] for t in marked] == ["user", "answer", "marker"]
    assert with_switch_marker(marked, "z", "Z")[-1]["model"] == "z"  # replaced, not stacked
    assert with_switch_marker(marked, "x", "X") == turns


def test_error_messages_are_readable() -> None:
    restarting = error_from_response(503, {"retry-after": "7"}, {"error": {"message": "x"}})
    assert isinstance(restarting, EngineRestarting)
    assert str(restarting) == "engine restarting, try again in 7 s"
    blocked = error_from_response(
        400, None, {"message": "the request contains ...: CREDIT_CARD", "code": "pii_blocked"}
    )
    assert isinstance(blocked, BlockedByPrivacyPolicy) and "CREDIT_CARD" in str(blocked)
    injection = {"error": {"message": "... injection ...", "code": "prompt_injection_blocked"}}
    refused = error_from_response(400, None, injection)
    assert isinstance(refused, BlockedByGuardrail)
    assert str(refused).startswith("blocked: the message reads like an attempt to override")
    leak = stream_error({"message": "x", "code": "system_prompt_leak_blocked"}, "coffee")
    assert isinstance(leak, BlockedByGuardrail) and leak.status == 400
    assert "repeated the assistant's instructions" in str(leak)
    assert isinstance(error_from_response(403, None, {}), AccessDenied)
    assert isinstance(error_from_response(404, None, {}, model="m"), UnknownDomain)
    assert GuardrailNotice(0).text == ""
    assert GuardrailNotice(2).text == "2 personal data items were masked before reaching the model"
    assert normalise_api_url("http://h:1/v1/") == "http://h:1"


def test_the_cli_launches_on_loopback(
    cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    launched: dict[str, Any] = {}

    def fake_launch(app: gr.Blocks, host: str, port: int, **_: Any) -> str:
        launched.update(app=app, host=host, port=port)
        return f"http://{host}:{port}"

    monkeypatch.setattr("lorastack.ui.app.launch_app", fake_launch)
    monkeypatch.setattr(gr.Blocks, "block_thread", lambda self: None)
    monkeypatch.setenv("LORASTACK_GATEWAY__PORT", "8123")
    result = cli("ui", "--port", "7999")
    assert result.code == 0, result.err
    assert result.last_line == "http://127.0.0.1:7999"
    assert "gateway: http://127.0.0.1:8123" in result.err
    assert launched["host"] == "127.0.0.1"
    tabs = [b.label for b in launched["app"].blocks.values() if isinstance(b, gr.Tab)]
    assert tabs == ["Chat", "Compare"]  # no admin key in the settings
    assert not any(isinstance(b, gr.Timer) for b in launched["app"].blocks.values())

    cli("ui", "--port", "7999", "--expect", "tea-house", "--expect", "bakery")
    timers = [b for b in launched["app"].blocks.values() if isinstance(b, gr.Timer)]
    notes = [b for b in launched["app"].blocks.values() if isinstance(b, gr.Markdown)]
    assert len(timers) == 1
    assert any("tea-house, bakery" in str(note.value) for note in notes)


def test_answers_are_capped_like_a_chat_reply(ui: Ui) -> None:
    _send(ui, "hello", "coffee-shop")
    body = ui.gateway.fake.completion_requests[-1].body
    assert body["max_tokens"] == 256
    assert body["temperature"] == 0.7
