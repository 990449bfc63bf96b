"""The canonical training records and what the rest of the data pipeline asks of them.

Every input format becomes one of three canonical formats (TRL's): OpenAI chat
`messages`, `prompt`/`completion` (both strings, or both message lists) or
`text`. The helpers here read and rewrite records of those shapes; the walk
over their texts is `lorastack.texts`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Literal, TypedDict, cast

from lorastack.errors import LorastackError
from lorastack.texts import map_record, message_texts, record_texts

Role = Literal["system", "user", "assistant"]
ROLES: tuple[Role, ...] = ("system", "user", "assistant")

InputFormat = Literal["messages", "prompt-completion", "text", "alpaca", "sharegpt"]
INPUT_FORMATS: tuple[InputFormat, ...] = (
    "messages",
    "prompt-completion",
    "text",
    "alpaca",
    "sharegpt",
)
CanonicalFormat = Literal["messages", "prompt-completion", "text"]
CANONICAL: dict[InputFormat, CanonicalFormat] = {
    "messages": "messages",
    "sharegpt": "messages",
    "prompt-completion": "prompt-completion",
    "alpaca": "prompt-completion",
    "text": "text",
}


class Message(TypedDict):
    role: Role
    content: str


class ChatRecord(TypedDict):
    """OpenAI-style chat: TRL's conversational language-modelling format."""

    messages: list[Message]


class PromptCompletionRecord(TypedDict):
    """Both strings, or (TRL's conversational form) both lists of messages."""

    prompt: str | list[Message]
    completion: str | list[Message]


class TextRecord(TypedDict):
    """Unsupervised domain text."""

    text: str


Record = ChatRecord | PromptCompletionRecord | TextRecord


class DataError(LorastackError):
    """The input data cannot be prepared; the message says where and why."""


def record_format(record: Record) -> CanonicalFormat:
    """Which of the three canonical formats a (valid, canonical) record is."""
    if "messages" in record:
        return "messages"
    if "text" in record:
        return "text"
    return "prompt-completion"


def map_texts(record: Record, transform: Callable[[str], str]) -> Record:
    """A copy of `record` with `transform` applied to every text it holds."""
    return cast(Record, map_record(record, transform))


# The fields of a canonical record, in the order a model reads them.
_TURN_FIELDS = ("messages", "prompt", "completion", "text")


def record_turns(record: Record) -> list[tuple[str, str]]:
    """(role, text) for every text of a record; prompt/completion strings use those names."""
    fields: dict[str, object] = dict(record)
    turns: list[tuple[str, str]] = []
    for name in _TURN_FIELDS:
        value = fields.get(name)
        if isinstance(value, str):
            turns.append((name, value))
        elif isinstance(value, list):
            messages = cast(list[Message], value)
            turns.extend((m["role"], text) for m in messages for text in message_texts(m))
    return turns


def record_chars(record: Record) -> int:
    """Characters of text in a record (roles and JSON syntax not counted)."""
    return sum(len(text) for text in record_texts(record))


def without_empty_system(record: Record) -> Record:
    """The record without system messages whose content is empty."""

    def keep(messages: list[Message]) -> list[Message]:
        return [m for m in messages if m["role"] != "system" or m["content"]]

    kind = record_format(record)
    if kind == "messages":
        return {"messages": keep(cast(ChatRecord, record)["messages"])}
    if kind == "prompt-completion":
        pair = cast(PromptCompletionRecord, record)
        if isinstance(pair["prompt"], list):
            return {"prompt": keep(pair["prompt"]), "completion": pair["completion"]}
    return record


def is_empty(record: Record) -> bool:
    """True when any text a model would learn from or answer to is empty."""
    return any(not text for role, text in record_turns(record) if role != "system")


def add_system_prompt(record: Record, system_prompt: str) -> Record:
    """Chats (and conversational prompts) without a system message get `system_prompt` first."""
    system: Message = {"role": "system", "content": system_prompt}
    kind = record_format(record)
    if kind == "messages":
        messages = cast(ChatRecord, record)["messages"]
        if messages and messages[0]["role"] != "system":
            return {"messages": [system, *messages]}
    elif kind == "prompt-completion":
        pair = cast(PromptCompletionRecord, record)
        prompt = pair["prompt"]
        if isinstance(prompt, list) and prompt and prompt[0]["role"] != "system":
            return {"prompt": [system, *prompt], "completion": pair["completion"]}
    return record


def is_conversational(record: Record) -> bool:
    """A prompt/completion record made of message lists (one shape per dataset)."""
    return record_format(record) == "prompt-completion" and isinstance(
        cast(PromptCompletionRecord, record)["prompt"], list
    )


def record_label(record: Record) -> str | None:
    """The completion as a label (prompt/completion records only)."""
    if record_format(record) != "prompt-completion":
        return None
    completion = cast(PromptCompletionRecord, record)["completion"]
    if isinstance(completion, str):
        return completion
    return "\n".join(m["content"] for m in completion)


# -- cleaning ----------------------------------------------------------------------

_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_LINE_BREAKS = str.maketrans({"\r": "\n", "\u2028": "\n", "\u2029": "\n", "\x85": "\n"})


def normalize_text(text: str) -> str:
    """NFC; spaces and tabs collapsed; lines stripped; at most one blank line in a row."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n")).translate(_LINE_BREAKS)
    lines = [_HORIZONTAL_SPACE.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
