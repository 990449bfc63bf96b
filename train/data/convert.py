"""Record formats: detect a record's format, validate it, convert it to canonical form.

Five input formats are accepted (OpenAI chat `messages`, `prompt`/`completion`,
`text`, Alpaca and ShareGPT); Alpaca becomes prompt/completion and ShareGPT
becomes messages. Each problem names the offending field, so the pipeline can
report it with the file and line it came from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from lorastack.train.data.records import (
    DataError,
    InputFormat,
    Message,
    PromptCompletionRecord,
    Record,
    Role,
)


class InvalidRecord(DataError):
    """One record does not match its format; `field` names the offending value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def detect_format(record: Mapping[str, Any]) -> InputFormat | None:
    """The format a record's fields suggest, or None."""
    keys = set(record)
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if {"prompt", "completion"} <= keys:
        return "prompt-completion"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    if "text" in keys:
        return "text"
    return None


def json_type(value: Any) -> str:
    """The JSON name of a value's type, for messages ("expected a string, got number")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _show(value: Any) -> str:
    """A short rendering of a bad value for a message (repr for strings, JSON otherwise)."""
    shown = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return shown if len(shown) <= 40 else shown[:37] + "..."


_MISSING = object()


def _required(record: Mapping[str, Any], key: str, fmt: InputFormat) -> Any:
    if key in record:
        return record[key]
    other = detect_format(record)
    hint = f" (this record looks like {other}, the file's records are {fmt})" if other else ""
    raise InvalidRecord(key, f"missing{hint}")


def _string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidRecord(field, f"expected a string, got {json_type(value)}")
    return value


def _content(value: Any, field: str) -> str:
    if value is _MISSING:
        raise InvalidRecord(field, "missing")
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        # OpenAI content parts: only text can be trained on here.
        texts: list[str] = []
        for index, part in enumerate(value):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text" or not isinstance(part.get("text"), str):
                raise InvalidRecord(
                    f"{field}[{index}]", f"only text parts are supported, got {_show(part)}"
                )
            texts.append(part["text"])
        return "\n".join(texts)
    raise InvalidRecord(field, f"expected a string, got {json_type(value)}")


_OPENAI_ROLES: dict[str, Role] = {"system": "system", "user": "user", "assistant": "assistant"}
_SHAREGPT_ROLES: dict[str, Role] = {"system": "system", "human": "user", "gpt": "assistant"}


def _messages(
    value: Any, field: str, roles: Mapping[str, Role], role_key: str, content_key: str
) -> list[Message]:
    if not isinstance(value, list):
        raise InvalidRecord(field, f"expected a list of messages, got {json_type(value)}")
    messages: list[Message] = []
    for index, item in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(item, dict):
            raise InvalidRecord(where, f"expected an object, got {json_type(item)}")
        if role_key not in item:
            raise InvalidRecord(f"{where}.{role_key}", "missing")
        role = item[role_key]
        if not isinstance(role, str) or role not in roles:
            raise InvalidRecord(
                f"{where}.{role_key}", f"expected one of {', '.join(roles)}, got {_show(role)}"
            )
        content = _content(item.get(content_key, _MISSING), f"{where}.{content_key}")
        messages.append({"role": roles[role], "content": content})
    return messages


def _check_system_first(messages: Sequence[Message], field: str, role_key: str) -> None:
    for index, message in enumerate(messages):
        if message["role"] == "system" and index > 0:
            # Most chat templates reject (or silently drop) a system turn elsewhere.
            raise InvalidRecord(
                f"{field}[{index}].{role_key}", "a system message may only come first"
            )


def _check_chat(
    messages: Sequence[Message], field: str, roles: Mapping[str, Role], role_key: str
) -> None:
    names = {role: name for name, role in roles.items()}

    def turn(role: Role) -> str:  # "assistant", or "assistant ('gpt')" for ShareGPT
        return role if names[role] == role else f"{role} ({names[role]!r})"

    _check_system_first(messages, field, role_key)
    present = {m["role"] for m in messages}
    for needed in ("user", "assistant"):
        if needed not in present:
            raise InvalidRecord(field, f"a chat needs at least one {turn(needed)} turn")
    last = messages[-1]["role"]
    if last != "assistant":
        raise InvalidRecord(
            f"{field}[{len(messages) - 1}].{role_key}",
            f"a chat must end with an {turn('assistant')} turn, got {_show(names[last])}",
        )


def convert_record(value: Any, fmt: InputFormat) -> Record:
    """`value` (a parsed JSON object or table row) in canonical form.

    Alpaca records become prompt/completion, ShareGPT ones become messages.
    Fields other than the format's own are left out, so that every record of
    a dataset has the same shape. Raises `InvalidRecord` naming the field.
    """
    if not isinstance(value, dict):
        raise InvalidRecord("record", f"expected a JSON object, got {json_type(value)}")
    if fmt == "messages":
        messages = _messages(
            _required(value, "messages", fmt), "messages", _OPENAI_ROLES, "role", "content"
        )
        _check_chat(messages, "messages", _OPENAI_ROLES, "role")
        return {"messages": messages}
    if fmt == "sharegpt":
        turns = _messages(
            _required(value, "conversations", fmt),
            "conversations",
            _SHAREGPT_ROLES,
            "from",
            "value",
        )
        _check_chat(turns, "conversations", _SHAREGPT_ROLES, "from")
        return {"messages": turns}
    if fmt == "prompt-completion":
        return _prompt_completion(value)
    if fmt == "alpaca":
        instruction = _string(_required(value, "instruction", fmt), "instruction")
        extra = value.get("input")
        extra = "" if extra is None else _string(extra, "input")
        output = _string(_required(value, "output", fmt), "output")
        prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        return {"prompt": prompt, "completion": output}
    return {"text": _string(_required(value, "text", fmt), "text")}


def _prompt_completion(value: Mapping[str, Any]) -> PromptCompletionRecord:
    prompt = _required(value, "prompt", "prompt-completion")
    completion = _required(value, "completion", "prompt-completion")
    if isinstance(prompt, str):
        if not isinstance(completion, str):
            raise InvalidRecord(
                "completion", f"expected a string like the prompt, got {json_type(completion)}"
            )
        return {"prompt": prompt, "completion": completion}
    if not isinstance(prompt, list):
        raise InvalidRecord(
            "prompt", f"expected a string or a list of messages, got {json_type(prompt)}"
        )
    prompt_messages = _messages(prompt, "prompt", _OPENAI_ROLES, "role", "content")
    if not isinstance(completion, list):
        raise InvalidRecord(
            "completion",
            f"expected a list of messages like the prompt, got {json_type(completion)}",
        )
    completion_messages = _messages(completion, "completion", _OPENAI_ROLES, "role", "content")
    _check_system_first(prompt_messages, "prompt", "role")
    if not any(m["role"] == "user" for m in prompt_messages):
        raise InvalidRecord("prompt", "needs at least one user turn")
    if not completion_messages:
        raise InvalidRecord("completion", "needs at least one assistant turn")
    for index, message in enumerate(completion_messages):
        if message["role"] != "assistant":
            raise InvalidRecord(
                f"completion[{index}].role", f"expected 'assistant', got {_show(message['role'])}"
            )
    return {"prompt": prompt_messages, "completion": completion_messages}
