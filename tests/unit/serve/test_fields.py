"""Which parts of a request reach the engine, and which texts of an answer are screened."""

from __future__ import annotations

from typing import Any

import pytest

from lorastack.serve.errors import BadRequest
from lorastack.serve.fields import answer_slots, check_values, prepare_chat, prepare_completion

EMAIL = "jane@example.com"


def _chat(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": f"mail {EMAIL}"}], **extra}


def _paths(body: dict[str, Any]) -> dict[str, str]:
    return {slot.path: slot.text for slot in prepare_chat(body)}


def test_every_text_the_engine_reads_is_a_slot_to_screen() -> None:
    body = _chat(
        messages=[
            {"role": "system", "content": [{"type": "text", "text": f"system {EMAIL}"}]},
            {"role": "user", "name": "jane_porter", "content": "hi"},
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": f"think {EMAIL}",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": f'{{"email": "{EMAIL}"}}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": f"found {EMAIL}"},
            {"role": "assistant", "function_call": {"name": "f", "arguments": EMAIL}},
        ],
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "description": f"Look up {EMAIL}",
                    "parameters": {
                        "type": "object",
                        "properties": {"email": {"type": "string", "description": EMAIL}},
                        "required": ["email"],
                    },
                },
            }
        ],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"title": EMAIL, "type": "object"}},
        },
        stop=[EMAIL, "\n"],
    )
    paths = _paths(body)
    assert set(paths) == {
        "messages[0].content[0].text",
        "messages[1].content",
        "messages[1].name",
        "messages[2].reasoning_content",
        "messages[2].tool_calls[0].function.arguments",
        "messages[3].content",
        "messages[4].function_call.arguments",
        "tools[0].function.description",
        "tools[0].function.parameters.properties.email.description",
        "response_format.json_schema.schema.title",
        "stop[0]",
        "stop[1]",
    }
    # Names and structure pass as they are: a tool's name, a schema's types and keys.
    assert "lookup" not in paths.values() and "object" not in paths.values()


def test_slots_write_back_in_place() -> None:
    body = _chat(stop=EMAIL)
    for slot in prepare_chat(body):
        slot.replace(slot.text.replace(EMAIL, "<EMAIL_ADDRESS_1>"))
    assert body["messages"][0]["content"] == "mail <EMAIL_ADDRESS_1>"
    assert body["stop"] == "<EMAIL_ADDRESS_1>"


def test_the_callers_own_fields_are_never_forwarded() -> None:
    body = _chat(user=EMAIL, metadata={"customer": EMAIL}, temperature=0.1)
    prepare_chat(body)
    assert "user" not in body and "metadata" not in body
    assert body["temperature"] == 0.1


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"chat_template": "{{ messages }}"}, "chat_template"),
        ({"guided_regex": ".*"}, "guided_regex"),
        ({"chat_template_kwargs": {"custom": EMAIL}}, "chat_template_kwargs"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages[0].content[0]",
        ),
        (
            {"messages": [{"role": "user", "content": "x", "audio": {"id": "a"}}]},
            "messages[0].audio",
        ),
    ],
)
def test_what_cannot_be_screened_is_refused_naming_it(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as refused:
        prepare_chat(_chat(**extra))
    assert refused.value.param == param
    assert param in str(refused.value)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"stream": True, "stream_options": "yes"}, "stream_options"),
        ({"logit_bias": {"hello": 1}}, "logit_bias"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": float("inf")}, "top_p"),
        ({"stop": ["ok", "\ud800"]}, "stop[1]"),
        ({"messages": [{"role": "user", "content": "bad \udc00 text"}]}, "messages[0].content"),
    ],
)
def test_client_mistakes_are_400s_naming_the_field(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as refused:
        prepare_chat(_chat(**extra))
    assert refused.value.param == param
    assert refused.value.status == 400


def test_the_usual_parameters_pass() -> None:
    body = _chat(
        temperature=0.2,
        top_p=0.9,
        max_tokens=7,
        seed=3,
        n=1,
        logprobs=True,
        top_logprobs=2,
        logit_bias={"50256": -100},
        tool_choice="auto",
        stream=True,
        stream_options={"include_usage": True},
        ignore_eos=True,
        chat_template_kwargs={"enable_thinking": False},
    )
    assert list(_paths(body)) == ["messages[0].content"]


def test_completions_screen_prompt_suffix_and_stop() -> None:
    body = {"model": "m", "prompt": ["a", EMAIL], "suffix": EMAIL, "stop": "x", "echo": True}
    assert [s.path for s in prepare_completion(body)] == [
        "prompt[0]",
        "prompt[1]",
        "suffix",
        "stop",
    ]
    with pytest.raises(BadRequest, match="functions"):
        prepare_completion({"model": "m", "prompt": "a", "functions": []})


def test_check_values_accepts_ordinary_json() -> None:
    check_values({"a": [1, 2.5, "text", None, True, {"b": "é"}]})


def test_an_answer_names_each_text_channel() -> None:
    choice = {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": "hello",
            "reasoning_content": "why",
            "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}],
            "function_call": {"name": "g", "arguments": "[]"},
        },
    }
    channels = {channel: slot.text for channel, slot in answer_slots(choice, "message")}
    assert channels == {
        "content": "hello",
        "reasoning_content": "why",
        "tool_calls.0": "{}",
        "function_call": "[]",
    }
    streamed = {"delta": {"tool_calls": [{"index": 3, "function": {"arguments": '{"a'}}]}}
    assert [c for c, _ in answer_slots(streamed, "delta")] == ["tool_calls.3"]
    assert [c for c, _ in answer_slots({"text": "hi"}, None)] == ["text"]
