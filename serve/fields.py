"""Which parts of a request reach the engine, and which texts of an answer reach the client.

Every parameter a client sends is one of:

- **screened**: a text the engine reads (message content, a message's `name`, tool-call
  arguments, a tool's description, a JSON schema's descriptions, `stop`, `suffix`): masked
  by the domain's input policy, like the conversation;
- **passed**: a number, a flag, or a name or choice from a fixed set (`temperature`,
  `tool_choice`, a tool's `name`, a schema's `type`): forwarded as it is;
- **dropped**: `user` and `metadata`, which describe the caller: never forwarded;
- **refused**: anything else, with a 400 naming the parameter. The engine would read text
  the gateway cannot screen (an image, a chat template, a grammar), or the gateway does not
  know what the engine does with it.

Every string is checked to be valid Unicode and every number finite, so no client mistake
reaches a JSON encoder or the detector as a 500 or a 503.

On the way out, `answer_slots` finds each text of a choice (content, reasoning, refusal,
tool-call and function-call arguments) so that each goes through the output policy
(`answer_text` the one the brand rules judge);
`logprobs` hold single tokens that no policy can judge, so they are dropped while
screening is on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, MutableMapping, MutableSequence
from dataclasses import dataclass
from typing import Any

from lorastack.serve.errors import BadRequest

# Parameters forwarded unchanged: numbers, flags, and choices from fixed sets.
_PASSED_COMMON = frozenset(
    {
        "model",
        "stream",
        "stream_options",
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "n",
        "max_tokens",
        "max_completion_tokens",
        "min_tokens",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
        "length_penalty",
        "seed",
        "logprobs",
        "top_logprobs",
        "ignore_eos",
        "stop_token_ids",
        "include_stop_str_in_output",
        "skip_special_tokens",
        "spaces_between_special_tokens",
        "truncate_prompt_tokens",
        "logit_bias",
        "service_tier",
    }
)
_PASSED_CHAT = _PASSED_COMMON | {
    "tool_choice",
    "parallel_tool_calls",
    "function_call",
    "add_generation_prompt",
    "continue_final_message",
    "chat_template_kwargs",
}
_PASSED_COMPLETIONS = _PASSED_COMMON | {"echo", "best_of"}
DROPPED = frozenset({"user", "metadata"})

_MESSAGE_PASSED = frozenset({"role", "tool_call_id"})
_MESSAGE_TEXTS = frozenset({"name", "reasoning_content", "reasoning", "refusal"})
# The parts of a JSON schema that are prose (masked); the rest is structure (passed).
_SCHEMA_PROSE = frozenset({"description", "title", "default", "examples", "const", "enum"})
_ANSWER_TEXTS = ("content", "reasoning_content", "reasoning", "refusal")
ANSWER_CHANNELS = frozenset({"content", "text"})
"""The channels (`answer_slots`) holding a choice's answer proper, as `answer_text` reads it."""


@dataclass(frozen=True)
class Slot:
    """Where one text lives in a request or an answer, so that it can be replaced."""

    holder: MutableMapping[str, Any] | MutableSequence[Any]
    key: Any
    path: str
    """How the client would name it, e.g. `messages[2].tool_calls[0].function.arguments`."""

    @property
    def text(self) -> str:
        value = self.holder[self.key]
        assert isinstance(value, str)
        return value

    def replace(self, text: str) -> None:
        self.holder[self.key] = text


def _is_unicode(text: str) -> bool:
    """No lone surrogate: what UTF-8 (and every JSON encoder after us) can encode.

    Both tests run in C: a regular expression over a 900 KB prompt took 13 ms.
    """
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_values(value: Any, path: str = "") -> None:
    """Refuse a lone surrogate in any string, a non-finite number anywhere (400 naming it)."""
    if isinstance(value, str):
        if not _is_unicode(value):
            raise BadRequest(f"{path or 'body'}: not valid Unicode text", param=path or None)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise BadRequest(f"{path}: must be a finite number", param=path)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_values(key, path)
            check_values(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_values(item, f"{path}[{index}]")


def _refuse(path: str, why: str) -> BadRequest:
    return BadRequest(f"`{path}` is not accepted: {why}", param=path, code="unsupported_parameter")


def _text_slots(holder: Any, key: Any, path: str) -> Iterator[Slot]:
    """The slot for a string, or for each string of a list of strings; refuse other shapes."""
    value = holder[key]
    if isinstance(value, str):
        yield Slot(holder, key, path)
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        for index in range(len(value)):
            yield Slot(value, index, f"{path}[{index}]")
    elif value is not None:
        raise _refuse(path, "expected text or a list of texts")


def _schema_slots(schema: Any, path: str) -> Iterator[Slot]:
    if isinstance(schema, dict):
        for key, value in schema.items():
            inner = f"{path}.{key}"
            if key in _SCHEMA_PROSE:
                yield from _leaf_slots(schema, key, inner)
            else:
                yield from _schema_slots(value, inner)
    elif isinstance(schema, list):
        for index, item in enumerate(schema):
            yield from _schema_slots(item, f"{path}[{index}]")


def _leaf_slots(holder: Any, key: Any, path: str) -> Iterator[Slot]:
    """Every string inside `holder[key]`, however nested."""
    value = holder[key]
    if isinstance(value, str):
        yield Slot(holder, key, path)
    elif isinstance(value, dict):
        for inner in value:
            yield from _leaf_slots(value, inner, f"{path}.{inner}")
    elif isinstance(value, list):
        for index in range(len(value)):
            yield from _leaf_slots(value, index, f"{path}[{index}]")


def _call_slots(call: Any, path: str) -> Iterator[Slot]:
    """A tool call or function call: its arguments are text, its id and name are names."""
    function = call.get("function", call) if isinstance(call, dict) else None
    if not isinstance(function, dict):
        raise _refuse(path, "expected an object")
    if "arguments" in function:
        yield from _text_slots(function, "arguments", f"{path}.arguments")


def _content_slots(message: dict[str, Any], path: str) -> Iterator[Slot]:
    content = message.get("content")
    if isinstance(content, str):
        yield Slot(message, "content", f"{path}.content")
    elif isinstance(content, list):
        for index, part in enumerate(content):
            part_path = f"{path}.content[{index}]"
            if not isinstance(part, dict) or part.get("type") not in ("text", None):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise _refuse(part_path, f"content of type {kind!r} cannot be screened")
            yield from _text_slots(part, "text", f"{part_path}.text")


def _message_slots(message: dict[str, Any], path: str) -> Iterator[Slot]:
    yield from _content_slots(message, path)
    for key in message:
        key_path = f"{path}.{key}"
        if key == "content" or key in _MESSAGE_PASSED:
            continue
        if key in _MESSAGE_TEXTS:
            yield from _text_slots(message, key, key_path)
        elif key == "tool_calls" and isinstance(message[key], list):
            for index, call in enumerate(message[key]):
                yield from _call_slots(call, f"{key_path}[{index}].function")
        elif key == "function_call" and message[key] is not None:
            yield from _call_slots(message[key], key_path)
        elif message[key] is not None:
            raise _refuse(key_path, "not a message field the gateway knows")


def _tool_slots(tools: Any, path: str) -> Iterator[Slot]:
    if not isinstance(tools, list):
        raise _refuse(path, "expected a list")
    for index, tool in enumerate(tools):
        tool_path = f"{path}[{index}]"
        function = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(function, dict):
            raise _refuse(tool_path, "expected an object")
        inner = f"{tool_path}.function" if function is not tool else tool_path
        if "description" in function:
            yield from _text_slots(function, "description", f"{inner}.description")
        if "parameters" in function:
            yield from _schema_slots(function["parameters"], f"{inner}.parameters")


def _response_format_slots(response_format: Any, path: str) -> Iterator[Slot]:
    if not isinstance(response_format, dict):
        raise _refuse(path, "expected an object")
    schema = response_format.get("json_schema")
    if isinstance(schema, dict):
        if "description" in schema:
            yield from _text_slots(schema, "description", f"{path}.json_schema.description")
        if "schema" in schema:
            yield from _schema_slots(schema["schema"], f"{path}.json_schema.schema")


def _is_token_bias(value: Any) -> bool:
    return isinstance(value, dict) and all(re.fullmatch(r"\d{1,9}", k) for k in value)


def _is_flags(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(v, bool | int | float) or v is None for v in value.values()
    )


def _check_passed(body: dict[str, Any]) -> None:
    """The passed parameters whose shape the gateway itself relies on, or that could carry
    text the engine reads."""
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise BadRequest("stream_options: must be an object", param="stream_options")
    bias = body.get("logit_bias")
    if bias is not None and not _is_token_bias(bias):
        raise BadRequest("logit_bias: must map token ids (digits) to numbers", param="logit_bias")
    kwargs = body.get("chat_template_kwargs")
    if kwargs is not None and not _is_flags(kwargs):
        raise _refuse("chat_template_kwargs", "only flags and numbers (text there is not screened)")


def prepare_chat(body: dict[str, Any]) -> list[Slot]:
    """Drop the caller's own fields, refuse unknown ones; return every text to screen."""
    return _prepare(body, _PASSED_CHAT, _chat_slots)


def prepare_completion(body: dict[str, Any]) -> list[Slot]:
    return _prepare(body, _PASSED_COMPLETIONS, _completion_slots)


def _chat_slots(body: dict[str, Any], key: str) -> Iterator[Slot] | None:
    if key == "messages":
        return (
            slot
            for index, message in enumerate(body["messages"])
            for slot in _message_slots(message, f"messages[{index}]")
        )
    if key in ("tools", "functions"):
        return _tool_slots(body[key], key)
    if key == "response_format":
        return _response_format_slots(body[key], key)
    if key == "stop":
        return _text_slots(body, key, key)
    return None


def _completion_slots(body: dict[str, Any], key: str) -> Iterator[Slot] | None:
    if key in ("prompt", "suffix", "stop"):
        return _text_slots(body, key, key)
    return None


def _prepare(body: dict[str, Any], passed: frozenset[str], slots_of: Any) -> list[Slot]:
    check_values(body)
    for key in DROPPED & body.keys():
        del body[key]
    _check_passed(body)
    slots: list[Slot] = []
    for key in body:
        found = slots_of(body, key)
        if found is not None:
            slots.extend(found)
        elif key not in passed:
            raise _refuse(key, "not a parameter this gateway forwards (see docs/serving.md)")
    return slots


def answer_slots(choice: dict[str, Any], holder_key: str | None) -> Iterator[tuple[str, Slot]]:
    """Each text of one choice, keyed by its channel (`content`, `tool_calls.0`, ...).

    `holder_key` is `message` or `delta` for chat, None for a text completion (its `text`).
    A streamed tool call's pieces share a channel by its `index`.
    """
    if holder_key is None:
        if isinstance(choice.get("text"), str):
            yield "text", Slot(choice, "text", "text")
        return
    holder = choice.get(holder_key)
    if not isinstance(holder, dict):
        return
    for key in _ANSWER_TEXTS:
        if isinstance(holder.get(key), str):
            yield key, Slot(holder, key, key)
    for position, call in enumerate(holder.get("tool_calls") or []):
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            index = call.get("index", position)
            yield f"tool_calls.{index}", Slot(function, "arguments", "arguments")
    function_call = holder.get("function_call")
    if isinstance(function_call, dict) and isinstance(function_call.get("arguments"), str):
        yield "function_call", Slot(function_call, "arguments", "arguments")


def answer_text(choice: Any, holder_key: str | None) -> str | None:
    """A choice's answer proper (the `content` of chat, the `text` of a completion), the
    text brand rules judge; None when it has none (only tool calls, say)."""
    if not isinstance(choice, dict):
        return None
    holder = choice if holder_key is None else choice.get(holder_key)
    key = "text" if holder_key is None else "content"
    text = holder.get(key) if isinstance(holder, dict) else None
    return text if isinstance(text, str) else None


def answer_texts(choices: Any, holder_key: str | None) -> list[str]:
    """Each whole choice's answer text, for those that said something (not only tool calls)."""
    texts = [answer_text(choice, holder_key) for choice in choices or []]
    return [text for text in texts if text]


def append_to_channel(
    choice: dict[str, Any], holder_key: str | None, channel: str, text: str
) -> None:
    """Add `text` to a choice's channel (as `answer_slots` names it), creating it if absent."""
    if holder_key is None:
        choice["text"] = (choice.get("text") or "") + text
        return
    holder = choice.setdefault(holder_key, {})
    if channel.startswith("tool_calls."):
        index = int(channel.split(".", 1)[1])
        calls = holder.setdefault("tool_calls", [])
        calls.append({"index": index, "function": {"arguments": text}})
    elif channel == "function_call":
        holder["function_call"] = {"arguments": text}
    else:
        holder[channel] = (holder.get(channel) or "") + text
