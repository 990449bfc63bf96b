"""The canonical training records and what the rest of the data pipeline asks of them.

Every input format becomes one of five canonical formats (TRL's): OpenAI chat
`messages`, `prompt`/`completion` (both strings, or both message lists),
`text`, and the two preference formats: `preference` (`prompt`, `chosen`,
`rejected`: DPO) and `unpaired-preference` (`prompt`, `completion`, `label`:
KTO). The helpers here read and rewrite records of those shapes; the walk over
their texts is `lorastack.texts`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Literal, TypedDict, cast, get_args

from lorastack.errors import LorastackError
from lorastack.texts import map_record, message_texts, record_texts

Role = Literal["system", "user", "assistant"]
ROLES: tuple[Role, ...] = get_args(Role)

InputFormat = Literal[
    "messages",
    "prompt-completion",
    "text",
    "alpaca",
    "sharegpt",
    "preference",
    "unpaired-preference",
]
INPUT_FORMATS: tuple[InputFormat, ...] = get_args(InputFormat)
CanonicalFormat = Literal[
    "messages", "prompt-completion", "text", "preference", "unpaired-preference"
]
CANONICAL: dict[InputFormat, CanonicalFormat] = {
    "messages": "messages",
    "sharegpt": "messages",
    "prompt-completion": "prompt-completion",
    "alpaca": "prompt-completion",
    "text": "text",
    "preference": "preference",
    "unpaired-preference": "unpaired-preference",
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


class PreferenceRecord(TypedDict):
    """A prompt, a better and a worse answer: TRL's preference format (DPO)."""

    prompt: str | list[Message]
    chosen: str | list[Message]
    rejected: str | list[Message]


class UnpairedPreferenceRecord(TypedDict):
    """A prompt, an answer and whether it is a good one: TRL's unpaired preference (KTO)."""

    prompt: str | list[Message]
    completion: str | list[Message]
    label: bool


Record = (
    ChatRecord | PromptCompletionRecord | TextRecord | PreferenceRecord | UnpairedPreferenceRecord
)


class DataError(LorastackError):
    """The input data cannot be prepared; the message says where and why."""


def record_format(record: Record) -> CanonicalFormat:
    """Which of the canonical formats a (valid, canonical) record is."""
    if "messages" in record:
        return "messages"
    if "text" in record:
        return "text"
    if "chosen" in record:
        return "preference"
    if "label" in record:
        return "unpaired-preference"
    return "prompt-completion"


def map_texts(record: Record, transform: Callable[[str], str]) -> Record:
    """A copy of `record` with `transform` applied to every text it holds."""
    return cast(Record, map_record(record, transform))


# The fields of a canonical record, in the order a model reads them.
_TURN_FIELDS = ("messages", "prompt", "completion", "chosen", "rejected", "text")
# A preference's two answers are both assistant turns: their turns are named after the
# side they are on, so that keys built from turns tell chosen from rejected.
_SIDES = ("chosen", "rejected")


def record_turns(record: Record) -> list[tuple[str, str]]:
    """(role, text) for every text of a record; prompt/completion strings use those names,
    and so does every text of a preference's `chosen` and `rejected` answers."""
    fields: dict[str, object] = dict(record)
    turns: list[tuple[str, str]] = []
    for name in _TURN_FIELDS:
        value = fields.get(name)
        if isinstance(value, str):
            turns.append((name, value))
        elif isinstance(value, list):
            messages = cast(list[Message], value)
            turns.extend(
                (name if name in _SIDES else m["role"], text)
                for m in messages
                for text in message_texts(m)
            )
    return turns


def record_chars(record: Record) -> int:
    """Characters of text in a record (roles and JSON syntax not counted)."""
    return sum(len(text) for text in record_texts(record))


def without_empty_system(record: Record) -> Record:
    """The record without system messages whose content is empty."""

    def keep(messages: list[Message]) -> list[Message]:
        return [m for m in messages if m["role"] != "system" or m["content"]]

    if record_format(record) == "messages":
        return {"messages": keep(cast(ChatRecord, record)["messages"])}
    prompt = _prompt(record)
    if isinstance(prompt, list):
        return _with_prompt(record, keep(prompt))
    return record


def _prompt(record: Record) -> str | list[Message] | None:
    """The prompt of a record that has one (every format but chats and text)."""
    return cast(dict[str, "str | list[Message]"], record).get("prompt")


def _with_prompt(record: Record, prompt: list[Message]) -> Record:
    """A copy of a prompt-based record with another prompt, its other fields as they are."""
    return cast(Record, {**record, "prompt": prompt})


def is_empty(record: Record) -> bool:
    """True when any text a model would learn from or answer to is empty."""
    return any(not text for role, text in record_turns(record) if role != "system")


def add_system_prompt(record: Record, system_prompt: str) -> Record:
    """Chats (and conversational prompts) without a system message get `system_prompt` first."""
    system: Message = {"role": "system", "content": system_prompt}
    if record_format(record) == "messages":
        messages = cast(ChatRecord, record)["messages"]
        if messages and messages[0]["role"] != "system":
            return {"messages": [system, *messages]}
        return record
    prompt = _prompt(record)
    if isinstance(prompt, list) and prompt and prompt[0]["role"] != "system":
        return _with_prompt(record, [system, *prompt])
    return record


def is_conversational(record: Record) -> bool:
    """A prompt-based record made of message lists (one shape per dataset)."""
    return isinstance(_prompt(record), list)


def record_label(record: Record) -> str | None:
    """The record's label: a prompt/completion's completion, an unpaired preference's
    `label` ("true" or "false"); None for the other formats."""
    kind = record_format(record)
    if kind == "unpaired-preference":
        return "true" if cast(UnpairedPreferenceRecord, record)["label"] else "false"
    if kind != "prompt-completion":
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
