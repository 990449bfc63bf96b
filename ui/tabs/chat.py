"""The Chat tab: pick a domain (the `model`) and stream its answers; rate them.

Switching domain keeps the transcript and marks the switch; each answer is titled with
the domain that wrote it, and names the version that did (`coffee-shop@v2`, which may be a
canary) when the gateway says which.

Every answer has the Chatbot's thumbs up and down, and the last one an "Improve this
answer" box: both send `POST /v1/feedback` for the answer's `id`, and a line under the
chat says whether the rating was saved (a domain whose capture is off keeps none).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from functools import partial
from typing import Any

import gradio as gr

from lorastack.ui.catalogue import Catalogue, describe
from lorastack.ui.client import AnsweredBy, Gateway, GuardrailNotice, Vote
from lorastack.ui.errors import UiClientError
from lorastack.ui.streaming import ANSWER_PARAMS
from lorastack.ui.tabs import CONCURRENCY_LIMIT
from lorastack.ui.transcript import (
    Turn,
    conversation,
    last_answer,
    last_question,
    render,
    settled,
    turn,
    with_switch_marker,
)
from lorastack.ui.wording import notice_text, warning

# The Chatbot's messages, the session's transcript, the guardrail notice, the message box.
ChatOutput = tuple[list[dict[str, Any]], list[Turn], str, str]

RATED = {1: "\N{THUMBS UP SIGN} Rating saved", -1: "\N{THUMBS DOWN SIGN} Rating saved"}


def _shown(turns: list[Turn], notice: str = "") -> ChatOutput:
    return render(turns), turns, notice, ""


# ---------------------------------------------------------------------------- handlers


async def _answer(
    client: Gateway, catalogue: Catalogue, turns: list[Turn], model: str
) -> AsyncGenerator[ChatOutput, None]:
    """Stream the answer to the transcript's last question, yielding the Chatbot value."""
    title = await catalogue.title(model)
    wire = conversation(turns)
    reply = turn("answer", "", model, title, pending=True)
    turns = [*settled(turns), reply]
    yield _shown(turns)
    notice: GuardrailNotice | None = None
    pieces: list[str] = []
    try:
        async for piece in client.stream_chat(model, wire, **ANSWER_PARAMS):
            if isinstance(piece, GuardrailNotice):
                notice = piece
                continue
            if isinstance(piece, AnsweredBy):
                reply = {**reply, "answered_by": piece.model, "response_id": piece.response_id}
                turns[-1] = {**reply, "text": "".join(pieces)}
                continue
            pieces.append(piece)
            turns[-1] = {**reply, "text": "".join(pieces)}
            yield _shown(turns)
    except UiClientError as error:
        turns = turns[:-1]
        if pieces:  # what arrived stays; the error right after it says why it stopped
            turns.append({**reply, "text": "".join(pieces), "pending": False})
        turns.append(turn("error", str(error), model, title))
        yield _shown(turns)
        return
    note = notice_text(notice)
    turns[-1] = {**reply, "text": "".join(pieces), "note": note, "pending": False}
    yield _shown(turns, note)


async def on_send(
    client: Gateway, catalogue: Catalogue, text: str, model: str | None, turns: list[Turn]
) -> AsyncGenerator[ChatOutput, None]:
    """Send a message to `model`: the transcript grows by the question, then its answer."""
    text = (text or "").strip()
    if not text:
        yield _shown(turns)
        return
    if not model:
        problem = turn("error", "pick an assistant first", "", "No assistant")
        yield _shown([*turns, turn("user", text), problem])
        return
    turns = with_switch_marker(turns, model, await catalogue.title(model))
    async for output in _answer(client, catalogue, [*turns, turn("user", text)], model):
        yield output


async def on_retry(
    client: Gateway, catalogue: Catalogue, model: str | None, turns: list[Turn]
) -> AsyncGenerator[ChatOutput, None]:
    """Ask the last question again (of `model`, which may be another domain)."""
    last = last_question(turns)
    if last is None or not model:
        yield _shown(turns)
        return
    async for output in _answer(client, catalogue, list(turns[: last + 1]), model):
        yield output


def on_clear() -> ChatOutput:
    """An empty conversation."""
    return [], [], "", ""


def on_stop(turns: list[Turn]) -> tuple[list[dict[str, Any]], list[Turn]]:
    """The transcript once Stop cut the streaming answer short."""
    turns = settled(turns)
    return render(turns), turns


async def on_switch(
    catalogue: Catalogue, model: str | None, turns: list[Turn]
) -> tuple[list[dict[str, Any]], list[Turn], str]:
    """The user picked another domain: mark the switch, describe the domain."""
    if not model:
        return render(turns), turns, describe(None)
    found = await catalogue.lookup(model)
    title = found.label if found is not None else model
    turns = with_switch_marker(turns, model, title)
    return render(turns), turns, describe(found)


async def _rate(
    client: Gateway, answer: Turn, vote: Vote, correction: str | None = None
) -> tuple[bool, str]:
    """Rate one answer of the transcript: (saved, what to say of it, a refusal included)."""
    if answer["pending"]:
        # Its exchange is stored once the answer is complete: a rating now would miss it.
        return False, warning("wait for the answer to finish, then rate it")
    try:
        await client.rate(answer["response_id"], vote, correction)
    except UiClientError as error:
        return False, warning(error)
    return True, RATED[vote] + (", with your better answer" if correction else "")


async def on_like(client: Gateway, turns: list[Turn], like: gr.LikeData) -> str:
    """A thumb up or down on a message of the Chatbot: rate the answer it shows."""
    if like.liked == "":  # the thumb clicked again, to unselect it
        return "Ratings are kept: this one stays saved."
    index = like.index if isinstance(like.index, int) else -1
    shown = turns[index] if 0 <= index < len(turns) else None
    if shown is None or shown["kind"] != "answer" or not shown["response_id"]:
        return warning("only an assistant's answer can be rated")
    _, said = await _rate(client, shown, 1 if like.liked is True else -1)
    return said


async def on_improve(client: Gateway, text: str, turns: list[Turn]) -> tuple[str, Any]:
    """Send a better answer to the last question, with a thumb down on the last answer:
    (what became of it, the box: emptied once it is saved)."""
    text = (text or "").strip()
    answer = last_answer(turns)
    if answer is None:
        return warning("there is no answer to improve yet"), gr.update()
    if not text:
        return warning("write the better answer first"), gr.update()
    saved, said = await _rate(client, answer, -1, text)
    return said, "" if saved else gr.update()


# ---------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class ChatParts:
    """What the page-wide events need from the Chat tab."""

    domain: gr.Dropdown
    about: gr.Markdown
    refresh: gr.Button


def build(client: Gateway, catalogue: Catalogue) -> ChatParts:
    """Lay out the tab (inside a `gr.Tab`) and wire its events."""
    turns_state = gr.State([])
    # Compact enough for a laptop screen: the picker shares its row with the domain's
    # details, and the message box its row with the buttons.
    with gr.Row():
        domain = gr.Dropdown(
            label="Assistant",
            info="The domain answering; type `name@version` or `name@alias` for another one.",
            choices=[],
            allow_custom_value=True,  # domain@2, domain@canary
            scale=3,
        )
        with gr.Column(scale=1, min_width=220):
            refresh = gr.Button("\N{CLOCKWISE OPEN CIRCLE ARROW} Refresh the list", size="sm")
            with gr.Accordion("About this assistant", open=False):
                about = gr.Markdown(describe(None))
    chatbot = gr.Chatbot(
        label="Conversation",
        # The window's height less the rest of the tab: the picker and the message box
        # stay in view on a laptop; a taller window gets a taller transcript.
        height="calc(100vh - 360px)",
        min_height=240,
        group_consecutive_messages=False,  # a switch marker is not part of an answer
        elem_classes=["lorastack-chat"],
        buttons=["copy", "copy_all"],
        placeholder="Ask the selected assistant anything.",
        feedback_options=("Like", "Dislike"),  # thumbs under each answer (`.like` below)
    )
    with gr.Row():
        message = gr.Textbox(
            show_label=False,
            placeholder="Type a message and press Enter",
            autofocus=True,
            scale=4,
            max_lines=8,
        )
        with gr.Column(scale=1, min_width=220):
            send = gr.Button("Send", variant="primary", size="md")
            with gr.Row():
                stop = gr.Button("Stop", variant="stop", size="sm", min_width=60)
                retry = gr.Button("Retry", size="sm", min_width=60)
                clear = gr.Button("Clear", size="sm", min_width=60)
    notice = gr.Markdown()  # the guardrail notice of the last answer
    rated = gr.Markdown()  # what became of the last rating
    with gr.Accordion("Improve this answer", open=False):
        correction = gr.Textbox(
            show_label=False,
            placeholder="A better answer to the last question (sent with a thumb down)",
            lines=2,
            max_lines=8,
        )
        improve = gr.Button("Send the better answer", size="sm")

    chat_outputs = [chatbot, turns_state, notice, message]
    sending = gr.on(
        [message.submit, send.click],
        partial(on_send, client, catalogue),
        [message, domain, turns_state],
        chat_outputs,
        api_name="send",
        concurrency_limit=CONCURRENCY_LIMIT,
        show_progress="hidden",
    )
    retrying = retry.click(
        partial(on_retry, client, catalogue),
        [domain, turns_state],
        chat_outputs,
        api_name="retry",
        show_progress="hidden",
        concurrency_limit=CONCURRENCY_LIMIT,
    )
    # Stop cancels the streaming event; closing its generator closes the stream, and the
    # gateway stops the engine. What arrived so far stays in the transcript, settled.
    stop.click(None, None, None, cancels=[sending, retrying], api_visibility="private").then(
        on_stop, turns_state, [chatbot, turns_state], api_name="stop"
    )
    clear.click(on_clear, None, chat_outputs, api_name="clear", cancels=[sending, retrying])
    # The Chatbot's own trash button empties what is shown; the session's transcript must
    # follow, or the next answer brings the old conversation back (and sends it on).
    chatbot.clear(
        on_clear, None, chat_outputs, cancels=[sending, retrying], api_visibility="private"
    )

    async def like(turns: list[Turn], data: gr.LikeData) -> str:
        # Not a partial: Gradio hands the LikeData to the parameter typed so, which it
        # cannot see through a partial.
        return await on_like(client, turns, data)

    rating_options: dict[str, Any] = {
        "concurrency_limit": CONCURRENCY_LIMIT,
        "show_progress": "hidden",
    }
    chatbot.like(like, turns_state, rated, api_name="rate_answer", **rating_options)
    improve.click(
        partial(on_improve, client),
        [correction, turns_state],
        [rated, correction],
        api_name="improve_answer",
        **rating_options,
    )
    # `input`, not `change`: filling the list on page load is not a switch.
    domain.input(
        partial(on_switch, catalogue),
        [domain, turns_state],
        [chatbot, turns_state, about],
        api_name="switch_domain",
        concurrency_limit=CONCURRENCY_LIMIT,
        show_progress="hidden",
    )
    return ChatParts(domain, about, refresh)
