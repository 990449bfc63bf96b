"""The Responses API: its request as a chat request, its answer in its own shape."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from lorastack.registry import AdapterRegistry
from lorastack.serve.errors import BadRequest
from lorastack.serve.responses import ResponsesRequest, to_chat
from tests.fake_feedback import MemoryFeedbackStore
from tests.unit.serve.conftest import COFFEE_VOICE, Running

EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
# The deltas as one: the stream redactor decides how the answer's pieces are cut.
STREAM_ORDER = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def _chat(**body: Any) -> dict[str, Any]:
    request = ResponsesRequest.model_validate({"model": "coffee-shop", **body})
    return to_chat(request).model_dump(exclude_unset=True)


def _client(gw: Running) -> OpenAI:
    return OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0)


def _sse(response: httpx.Response) -> list[dict[str, Any]]:
    """Each event's data, checked against its `event:` line and the SDK's own types."""
    events = []
    for block in response.text.strip().split("\n\n"):
        name, data = block.split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        EVENTS.validate_python(event)
        events.append(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def _order(types: list[str]) -> list[str]:
    return [t for i, t in enumerate(types) if i == 0 or t != types[i - 1]]


def _text(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


def _post(gw: Running, **body: Any) -> httpx.Response:
    return gw.client.post("/v1/responses", json={"model": "coffee-shop", **body})


# -- the request, as a chat request -------------------------------------------------------


def test_a_string_input_with_instructions_is_a_system_and_a_user_message() -> None:
    chat = _chat(
        input="Do you have oat milk?",
        instructions="Answer in one sentence.",
        max_output_tokens=16,
        temperature=0.2,
        top_p=0.9,
        metadata={"ticket": "T-1"},
        user="guest-7",
        store=False,
        tools=[],
        tool_choice="auto",
    )
    assert chat == {
        "model": "coffee-shop",
        "messages": [
            {"role": "system", "content": "Answer in one sentence."},
            {"role": "user", "content": "Do you have oat milk?"},
        ],
        "stream": False,
        "max_tokens": 16,
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "guest-7",  # picks a canary's side; the chat path never forwards it
    }


def test_message_input_keeps_roles_and_text_parts_and_takes_an_earlier_answer_back() -> None:
    earlier_answer = {
        "type": "message",
        "id": "msg_1",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "Yes!", "annotations": []}],
    }
    chat = _chat(
        input=[
            {"role": "developer", "content": "Be brief."},
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Oat?"}],
            },
            earlier_answer,
            {"role": "user", "content": "And soy?"},
        ],
        stream=True,
    )
    assert chat["messages"] == [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Oat?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Yes!"}]},
        {"role": "user", "content": "And soy?"},
    ]
    assert chat["stream"] is True


@pytest.mark.parametrize(
    ("body", "param", "why"),
    [
        ({"store": True}, "store", "stateless"),
        ({"previous_response_id": "resp_1"}, "previous_response_id", "stateless"),
        ({"conversation": "conv_1"}, "conversation", "stateless"),
        ({"background": True}, "background", "whole or streamed"),
        ({"tools": [{"type": "web_search"}]}, "tools", "without tools"),
        ({"tool_choice": "required"}, "tool_choice", "without tools"),
        ({"text": {"format": {"type": "json_object"}}}, "text", "plain text"),
        ({"reasoning": {"effort": "low"}}, "reasoning", "reason"),
        ({"include": ["message.output_text.logprobs"]}, "include", "text only"),
        ({"prompt_cache_key": "k"}, "prompt_cache_key", "not a parameter"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input[0].content[0]",
            "cannot be screened",
        ),
        (
            {"input": [{"type": "function_call_output", "call_id": "c", "output": "{}"}]},
            "input[0].type",
            "only messages",
        ),
        ({"input": [{"role": "user", "content": "x", "name": "Jo"}]}, "input[0].name", "field"),
    ],
)
def test_what_a_stateless_text_only_gateway_cannot_do_is_a_400_naming_it(
    body: dict[str, Any], param: str, why: str
) -> None:
    with pytest.raises(BadRequest) as raised:
        _chat(**{"input": "hi", **body})
    error = raised.value.body()["error"]
    assert (raised.value.status, error["param"]) == (400, param)
    assert error["code"] == "unsupported_parameter"
    assert why in error["message"] and f"`{param}`" in error["message"]


def test_values_are_checked_under_the_responses_names() -> None:
    with pytest.raises(BadRequest) as raised:
        _chat(input="hi", instructions="\ud800")
    assert raised.value.param == "instructions"
    with pytest.raises(BadRequest) as raised:
        _chat(input=[{"role": "tool", "content": "x"}])
    assert (raised.value.param, raised.value.code) == ("input[0].role", "invalid_value")


# -- through the gateway ------------------------------------------------------------------


def test_the_official_client_gets_a_response_naming_the_version(gw: Running) -> None:
    raw = _client(gw).responses.with_raw_response.create(
        model="coffee-shop", input="What do you sell?", instructions="Be brief."
    )
    answer = raw.parse()
    assert answer.id.startswith("resp_") and answer.object == "response"
    assert answer.model == "coffee-shop@v1"
    assert raw.headers["x-lorastack-adapter"] == "coffee-shop@v1"
    assert answer.status == "completed" and answer.incomplete_details is None
    assert answer.output_text == "echo from coffee-shop@v1: What do you sell?"
    assert answer.usage is not None and answer.usage.total_tokens > 0
    # The SDK's types, strictly: every field they require is there.
    Response.model_validate(json.loads(raw.content))
    # The instructions are the client's system message: the brand voice comes first.
    sent = gw.fake.completion_requests[-1].body
    assert sent["model"] == "coffee-shop@v1"
    assert sent["messages"][0] == {"role": "system", "content": f"{COFFEE_VOICE}\n\nBe brief."}
    metrics = gw.gateway.metrics.registry.get_sample_value
    labels = {"domain": "coffee-shop", "endpoint": "/v1/responses", "status": "200"}
    assert metrics("lorastack_requests_total", labels) == 1


def test_a_streamed_answer_parsed_by_the_official_client(gw: Running) -> None:
    gw.fake.enqueue(["Fresh ", "croissants."])
    events = list(_client(gw).responses.create(model="coffee-shop", input="Today?", stream=True))
    assert _order([e.type for e in events]) == STREAM_ORDER
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "Fresh croissants."
    done = events[-1]
    assert done.type == "response.completed"
    assert done.response.output_text == "Fresh croissants."
    assert done.response.model == "coffee-shop@v1"
    assert done.response.usage is not None and done.response.usage.output_tokens == 2
    assert {e.response.id for e in events if hasattr(e, "response")} == {done.response.id}
    gw.fake.enqueue(["Hel", "lo"])
    with _client(gw).responses.stream(model="ledger-desk", input="Hi") as stream:
        assert stream.get_final_response().output_text == "Hello"


def test_the_stream_names_every_event_and_numbers_them(gw: Running) -> None:
    gw.fake.enqueue(["a ", "b"])
    response = _post(gw, input="x", stream=True)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-lorastack-adapter"] == "coffee-shop@v1"
    assert "[DONE]" not in response.text
    events = _sse(response)
    assert _order([e["type"] for e in events]) == STREAM_ORDER
    assert _text(events) == "a b"


def test_personal_data_is_masked_before_the_engine_and_restored_for_the_user(
    gw: Running,
) -> None:
    user = "I'm Jane Porter, jane@example.com."
    answer = _client(gw).responses.create(model="tiny", input=[{"role": "user", "content": user}])
    sent = gw.fake.completion_requests[-1].body["messages"][-1]["content"]
    assert sent == "I'm <PERSON_1>, <EMAIL_ADDRESS_1>."
    assert answer.output_text == f"echo from tiny: {user}"
    # What the model makes up is redacted, streamed too.
    gw.fake.enqueue(["Ask Jo", "sé Gar", "cía at olu@exa", "mple.org."])
    events = _sse(_post(gw, model="tiny", input="who?", stream=True))
    text = _text(events)
    assert text == "Ask <PERSON> at <EMAIL_ADDRESS>."
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == text


def test_an_answer_cut_at_its_token_limit_is_incomplete(gw: Running) -> None:
    gw.fake.enqueue(["one ", "two"], finish_reason="length")
    whole = _client(gw).responses.create(model="tiny", input="count", max_output_tokens=2)
    assert whole.status == "incomplete"
    assert whole.incomplete_details is not None
    assert whole.incomplete_details.reason == "max_output_tokens"
    assert whole.output[0].status == "incomplete"
    assert gw.fake.completion_requests[-1].body["max_tokens"] == 2
    gw.fake.enqueue(["one ", "two"], finish_reason="length")
    events = _sse(_post(gw, model="tiny", input="count", stream=True))
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_refusals_are_openai_errors_before_anything_reaches_the_engine(gw: Running) -> None:
    client = _client(gw)
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="coffee-shop", input="hi", previous_response_id="resp_1")
    assert raised.value.code == "unsupported_parameter"
    assert raised.value.param == "previous_response_id"
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="coffee-shop", input="hi", store=True)
    assert raised.value.param == "store"
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="nope", input="hi")
    assert gw.fake.completion_requests == []


def test_a_stream_that_breaks_ends_with_an_error_and_a_failed_response(gw: Running) -> None:
    gw.fake.enqueue_disconnect(after_chunks=16)  # enough for the redactor to release some
    events = _sse(_post(gw, model="tiny", input="x", stream=True))
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert events[-2]["code"] == "engine_unavailable"  # the gateway's code, as for chat
    assert failed["error"] == {"code": "server_error", "message": events[-2]["message"]}
    said = _text(events)
    assert said and failed["output"][0]["content"][0]["text"] == said


def test_a_request_without_a_valid_key_is_refused_before_its_body_is_read(
    start_gateway: Callable[..., Running],
) -> None:
    gw = start_gateway(api_keys=["sk-responses-0123456789abcd"])
    head = b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    parts = urlsplit(gw.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as conn:
        conn.sendall(head + b'{"model": "tiny", "input": "')
        assert conn.recv(65536).startswith(b"HTTP/1.1 401")


def test_a_captured_answer_is_rated_by_its_response_id(
    start_gateway: Callable[..., Running], registry: AdapterRegistry
) -> None:
    registry.set_capture("coffee-shop", True)
    feedback = MemoryFeedbackStore()
    gw = start_gateway(feedback_store=feedback)
    answer = _client(gw).responses.create(model="coffee-shop", input="I'm Jane Porter. Hi!")
    rated = gw.client.post("/v1/feedback", json={"response_id": answer.id, "rating": 1})
    assert rated.status_code == 200, rated.text
    stored = feedback.exchanges_by_id[answer.id]
    assert stored.messages[-1]["content"] == "I'm <PERSON_1>. Hi!"
