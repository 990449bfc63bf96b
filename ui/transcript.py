"""The chat transcript: what a session keeps, what the Chatbot shows, what the gateway gets.

A transcript is a list of `Turn`s: the user's questions, the answers (each with the domain
that wrote it, the exact version that did when the gateway names one, and the answer's `id`
to rate it by), markers where the user switched domain, and errors. It lives in the
session (`gr.State`) as plain dicts; the functions here never change one in place. The
Chatbot shows one message per turn, so a message's index (a like's) is its turn's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypedDict

from lorastack.ui.client import Message
from lorastack.ui.wording import ERROR_ICON

DASH = "\N{EM DASH}"
MIDDLE_DOT = "\N{MIDDLE DOT}"

Kind = Literal["user", "answer", "marker", "error"]


class Turn(TypedDict):
    """One entry of the transcript, as the session keeps it (gr.State)."""

    kind: Kind
    text: str
    model: str  # the domain that answered, was switched to, or failed ("" for user turns)
    title: str  # its display name
    note: str  # subdued detail shown next to the title (the guardrail notice)
    pending: bool  # an answer still streaming
    # The model the gateway says wrote the answer (`coffee-shop@v2`, perhaps the canary);
    # `model` stays the domain the user picked, which the transcript is about.
    answered_by: str
    response_id: str  # the answer's `id` at the gateway, what a rating names ("" for others)


def turn(
    kind: Kind,
    text: str,
    model: str = "",
    title: str = "",
    note: str = "",
    *,
    pending: bool = False,
    answered_by: str = "",
    response_id: str = "",
) -> Turn:
    return Turn(
        kind=kind,
        text=text,
        model=model,
        title=title,
        note=note,
        pending=pending,
        answered_by=answered_by,
        response_id=response_id,
    )


def render(turns: Sequence[Turn]) -> list[dict[str, Any]]:
    """The Chatbot's messages for a transcript."""
    messages: list[dict[str, Any]] = []
    for entry in turns:
        if entry["kind"] == "user":
            messages.append({"role": "user", "content": entry["text"]})
        elif entry["kind"] == "answer":
            # The metadata title names the domain that wrote the answer; the log, in
            # subdued text beside it, the version (when it is news) and the guardrail notice.
            metadata: dict[str, Any] = {"title": entry["title"]}
            log = [entry["note"]] if entry["note"] else []
            if entry["answered_by"] and entry["answered_by"] != entry["model"]:
                log.insert(0, entry["answered_by"])
            if log:
                metadata["log"] = f" {MIDDLE_DOT} ".join(log)
            if entry["pending"]:
                metadata["status"] = "pending"
            messages.append({"role": "assistant", "content": entry["text"], "metadata": metadata})
        elif entry["kind"] == "marker":
            messages.append(
                {"role": "assistant", "content": f"*{DASH} switched to {entry['title']} {DASH}*"}
            )
        else:
            messages.append(
                {"role": "assistant", "content": f"{ERROR_ICON} {entry['title']}: {entry['text']}"}
            )
    return messages


def conversation(turns: Sequence[Turn]) -> list[Message]:
    """What the gateway gets: user and assistant turns only, no markers and no errors.

    A question whose answer failed is dropped once a later question follows, so the
    roles keep alternating as chat templates expect.
    """
    messages: list[Message] = []
    waiting: Turn | None = None
    for entry in turns:
        if entry["kind"] == "user":
            waiting = entry
        elif entry["kind"] == "answer" and entry["text"] and waiting is not None:
            messages += [Message("user", waiting["text"]), Message("assistant", entry["text"])]
            waiting = None
    if waiting is not None:
        messages.append(Message("user", waiting["text"]))
    return messages


def settled(turns: Sequence[Turn]) -> list[Turn]:
    """The transcript with no answer shown as streaming (after Stop cut one short)."""
    return [{**t, "pending": False} if t["pending"] else t for t in turns]


def current_model(turns: Sequence[Turn]) -> str | None:
    """The domain the transcript is on: the last one that answered, failed or was picked."""
    for entry in reversed(turns):
        if entry["kind"] != "user":
            return entry["model"]
    return None


def with_switch_marker(turns: Sequence[Turn], model: str, title: str) -> list[Turn]:
    """The transcript with a marker if `model` is not the domain it is on.

    Switching back and forth with nothing said in between leaves one marker, or none.
    """
    result = list(turns)
    if result and result[-1]["kind"] == "marker":
        result.pop()
    current = current_model(result)
    if current is not None and current != model:
        result.append(turn("marker", "", model, title))
    return result


def last_answer(turns: Sequence[Turn]) -> Turn | None:
    """The transcript's last answer that can be rated (the gateway gave its `id`)."""
    return next((t for t in reversed(turns) if t["kind"] == "answer" and t["response_id"]), None)


def last_question(turns: Sequence[Turn]) -> int | None:
    """The index of the transcript's last user turn, if any."""
    return max((i for i, t in enumerate(turns) if t["kind"] == "user"), default=None)
