"""Record formats: detect a record's format, validate it, convert it to canonical form.

Seven input formats are accepted (OpenAI chat `messages`, `prompt`/`completion`,
`text`, Alpaca, ShareGPT, and TRL's preference formats: `prompt`/`chosen`/`rejected`
and `prompt`/`completion`/`label`); Alpaca becomes prompt/completion and ShareGPT
becomes messages. Each problem names the offending field, so the pipeline can
report it with the file and line it came from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

from lorastack.train.data.records import (
    DataError,
    InputFormat,
    Message,
    Record,
    Role,
    normalize_text,
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
    if {"chosen", "rejected"} <= keys:
        return "preference"
    if {"prompt", "completion", "label"} <= keys and not isinstance(record["label"], str):
        # A string label is a classification dataset's extra column (CSV cells are all
        # strings): that stays prompt/completion. Anything else means KTO, and a label
        # that is not true or false is then reported as such.
        return "unpaired-preference"
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
        return cast(Record, _prompt_and_answers(value, fmt, ("completion",)))
    if fmt == "preference":
        return _preference(value)
    if fmt == "unpaired-preference":
        return _unpaired_preference(value)
    if fmt == "alpaca":
        instruction = _string(_required(value, "instruction", fmt), "instruction")
        extra = value.get("input")
        extra = "" if extra is None else _string(extra, "input")
        output = _string(_required(value, "output", fmt), "output")
        prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        return {"prompt": prompt, "completion": output}
    return {"text": _string(_required(value, "text", fmt), "text")}


def _prompt_and_answers(
    value: Mapping[str, Any], fmt: InputFormat, answers: tuple[str, ...]
) -> dict[str, Any]:
    """`prompt` and the answer fields: all strings, or (TRL's conversational form) a
    prompt of messages with a user turn and answers of assistant messages."""
    if "prompt" not in value and {"chosen", "rejected"} <= set(value):
        # TRL's implicit-prompt form (whole conversations in chosen and rejected).
        raise InvalidRecord(
            "prompt", "missing (the prompt's turns go in `prompt`, not in chosen and rejected)"
        )
    prompt = _required(value, "prompt", fmt)
    given = {name: _required(value, name, fmt) for name in answers}
    if isinstance(prompt, str):
        for name, answer in given.items():
            if not isinstance(answer, str):
                raise InvalidRecord(
                    name, f"expected a string like the prompt, got {json_type(answer)}"
                )
        return {"prompt": prompt, **given}
    if not isinstance(prompt, list):
        raise InvalidRecord(
            "prompt", f"expected a string or a list of messages, got {json_type(prompt)}"
        )
    prompt_messages = _messages(prompt, "prompt", _OPENAI_ROLES, "role", "content")
    parsed: dict[str, list[Message]] = {}
    for name, answer in given.items():
        if not isinstance(answer, list):
            raise InvalidRecord(
                name, f"expected a list of messages like the prompt, got {json_type(answer)}"
            )
        parsed[name] = _messages(answer, name, _OPENAI_ROLES, "role", "content")
    _check_system_first(prompt_messages, "prompt", "role")
    if not any(m["role"] == "user" for m in prompt_messages):
        raise InvalidRecord("prompt", "needs at least one user turn")
    for name, messages in parsed.items():
        if not messages:
            raise InvalidRecord(name, "needs at least one assistant turn")
        for index, message in enumerate(messages):
            if message["role"] != "assistant":
                raise InvalidRecord(
                    f"{name}[{index}].role", f"expected 'assistant', got {_show(message['role'])}"
                )
    return {"prompt": prompt_messages, **parsed}


def _answer_text(answer: str | list[Message]) -> str:
    if isinstance(answer, str):
        return normalize_text(answer)
    return normalize_text("\n".join(m["content"] for m in answer))


def _preference(value: Mapping[str, Any]) -> Record:
    record = _prompt_and_answers(value, "preference", ("chosen", "rejected"))
    # Compared as the pipeline will see them (whitespace normalised): a pair that only
    # differs in spacing teaches nothing, and DPO's loss on it is a constant.
    if _answer_text(record["chosen"]) == _answer_text(record["rejected"]):
        raise InvalidRecord("rejected", "the same as chosen (a preference needs two answers)")
    return cast(Record, record)


def _unpaired_preference(value: Mapping[str, Any]) -> Record:
    record = _prompt_and_answers(value, "unpaired-preference", ("completion",))
    label = _required(value, "label", "unpaired-preference")
    if not isinstance(label, bool):
        # 1 and "true" are refused too: guessing what they mean could flip a label.
        raise InvalidRecord("label", f"expected true or false, got {json_type(label)}")
    return cast(Record, {**record, "label": label})
