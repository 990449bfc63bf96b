"""The texts inside chat messages and training records, found in one place.

Masking a prompt, scrubbing training data, normalising whitespace and
counting characters all need "every text in this message or record" while
keeping its shape. `map_*` returns a copy with a function applied to each
text; `*_texts` lists them (the same walk, collecting). Knows the OpenAI chat
shapes (string content or a list of content parts), ShareGPT turns
(`from`/`value`) and the record formats lorastack trains on (preferences too).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Transform = Callable[[str], str]

# Fields of a training record that hold text or messages, in every input format.
RECORD_FIELDS = (
    "messages",
    "conversations",
    "prompt",
    "completion",
    "chosen",
    "rejected",
    "text",
    "instruction",
    "input",
    "output",
)
CUSTOMER_FIELDS = frozenset({"prompt", "instruction", "input"})
"""Record fields that, as plain strings, hold what a customer asked."""
CUSTOMER_ROLES = frozenset({"user", "human"})
"""Chat roles (OpenAI `role`, ShareGPT `from`) of the customer's turns."""


def map_content(content: Any, transform: Transform) -> Any:
    """A message's `content`: a string, or a list of parts whose `text` parts change."""
    if isinstance(content, str):
        return transform(content)
    if isinstance(content, list):
        return [
            {**part, "text": transform(part["text"])}
            if isinstance(part, dict) and isinstance(part.get("text"), str)
            else part
            for part in content
        ]
    return content


def map_message(message: Mapping[str, Any], transform: Transform) -> dict[str, Any]:
    """A copy of one chat message (OpenAI or ShareGPT style) with its texts transformed."""
    copy = dict(message)
    if "content" in copy:
        copy["content"] = map_content(copy["content"], transform)
    if isinstance(copy.get("value"), str) and "from" in copy:  # a ShareGPT turn
        copy["value"] = transform(copy["value"])
    return copy


def map_messages(messages: Any, transform: Transform) -> Any:
    """A list of chat messages with their texts transformed; anything else unchanged."""
    if not isinstance(messages, list):
        return messages
    return [map_message(m, transform) if isinstance(m, Mapping) else m for m in messages]


def map_record(record: Mapping[str, Any], transform: Transform) -> dict[str, Any]:
    """A copy of a training record with every text it holds transformed.

    A field may be a string or a list of messages (`prompt` and `completion`
    are either, in TRL's conversational form); other fields stay as they are.
    """
    copy = dict(record)
    for key in RECORD_FIELDS:
        value = copy.get(key)
        if isinstance(value, str):
            copy[key] = transform(value)
        elif isinstance(value, list):
            copy[key] = map_messages(value, transform)
    return copy


def _collect(walk: Callable[[Transform], object]) -> list[str]:
    found: list[str] = []

    def keep(text: str) -> str:
        found.append(text)
        return text

    walk(keep)
    return found


def content_texts(content: Any) -> list[str]:
    return _collect(lambda keep: map_content(content, keep))


def message_texts(message: Mapping[str, Any]) -> list[str]:
    return _collect(lambda keep: map_message(message, keep))


def record_texts(record: Mapping[str, Any]) -> list[str]:
    return _collect(lambda keep: map_record(record, keep))


def is_customer_turn(message: Mapping[str, Any]) -> bool:
    """Whether a chat message (OpenAI or ShareGPT style) is the customer's."""
    return message.get("role", message.get("from")) in CUSTOMER_ROLES


def business_texts(record: Mapping[str, Any]) -> list[str]:
    """The texts of a training record that the business wrote: system and assistant
    turns, completions, answers and plain text; not the customer's turns, prompts or
    inputs (`record_texts` lists those too)."""
    found: list[str] = []
    for key in RECORD_FIELDS:
        value = record.get(key)
        if isinstance(value, str) and key not in CUSTOMER_FIELDS:
            found.append(value)
        elif isinstance(value, list):
            for message in value:
                if isinstance(message, Mapping) and not is_customer_turn(message):
                    found += message_texts(message)
    return found
