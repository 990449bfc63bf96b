"""Personal data in every field: what reaches the engine, what reaches the client."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes import RegexDetector
from tests.unit.serve.conftest import Running

EMAIL = "jane@example.com"
PHONE = "+44 20 7946 0958"


def _sent(gw: Running) -> str:
    return json.dumps(gw.fake.completion_requests[-1].body)


def test_every_text_field_of_a_request_is_masked_before_the_engine(gw: Running) -> None:
    body = {
        "model": "tiny",
        "messages": [
            {"role": "user", "name": "Jane Porter", "content": f"I am {EMAIL}"},
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": f"the user is {EMAIL}",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "find", "arguments": json.dumps({"who": EMAIL})},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": f"found {EMAIL}"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "find",
                    "description": f"Finds {EMAIL}",
                    "parameters": {
                        "type": "object",
                        "properties": {"who": {"type": "string", "description": EMAIL}},
                    },
                },
            }
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "description": EMAIL, "schema": {"type": "object"}},
        },
        "stop": [EMAIL],
        "user": EMAIL,
        "metadata": {"customer": EMAIL},
    }
    response = gw.client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    sent = gw.fake.completion_requests[-1].body
    assert EMAIL not in json.dumps(sent) and "Jane Porter" not in json.dumps(sent)
    assert "user" not in sent and "metadata" not in sent
    # One vault for the whole request: the same value, the same placeholder everywhere.
    assert sent["messages"][0]["content"] == "I am <EMAIL_ADDRESS_1>"
    assert sent["stop"] == ["<EMAIL_ADDRESS_1>"]
    assert sent["tools"][0]["function"]["name"] == "find"


def test_text_completion_suffix_and_stop_are_masked(gw: Running) -> None:
    body = {"model": "tiny", "prompt": "Write to", "suffix": EMAIL, "stop": EMAIL}
    assert gw.client.post("/v1/completions", json=body).status_code == 200
    assert EMAIL not in _sent(gw)


def test_what_cannot_be_screened_is_a_400_naming_the_field(gw: Running) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    cases = {
        "messages[0].content[1]": {
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, image]}]
        },
        "chat_template": {"chat_template": "{{ messages }}"},
        "chat_template_kwargs": {"chat_template_kwargs": {"note": EMAIL}},
    }
    for param, extra in cases.items():
        body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], **extra}
        response = gw.client.post("/v1/chat/completions", json=body)
        assert response.status_code == 400, (param, response.text)
        assert response.json()["error"]["param"] == param
        assert param in response.json()["error"]["message"]
    assert gw.fake.completion_requests == []


def _choice(message: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"index": 0, "message": message, "finish_reason": "stop", **extra}


def test_every_text_of_a_whole_answer_goes_through_the_output_policy(gw: Running) -> None:
    logprobs = {"content": [{"token": "jane", "logprob": -0.1, "top_logprobs": []}]}
    gw.fake.enqueue_choices(
        [
            _choice(
                {
                    "role": "assistant",
                    "content": f"Call {PHONE}",
                    "reasoning_content": f"write to {EMAIL}",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "mail", "arguments": json.dumps({"to": EMAIL})},
                        }
                    ],
                    "function_call": {"name": "mail", "arguments": EMAIL},
                },
                logprobs=logprobs,
            )
        ]
    )
    response = gw.chat("tiny", "who?", logprobs=True)
    assert response.status_code == 200, response.text
    # Every field but the answer's random id, which may hold "7946" by chance.
    text = json.dumps({**response.json(), "id": None})
    assert EMAIL not in text and "7946" not in text and "jane" not in text
    message = response.json()["choices"][0]["message"]
    assert message["reasoning_content"] == "write to <EMAIL_ADDRESS>"
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {
        "to": "<EMAIL_ADDRESS>"
    }
    assert response.json()["choices"][0]["logprobs"] is None


def _delta(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "finish_reason": finish, **extra}


def test_every_text_of_a_streamed_answer_goes_through_the_output_policy(gw: Running) -> None:
    token = {"content": [{"token": "olu", "logprob": -0.1}]}
    gw.fake.enqueue_choices(
        [
            _delta({"role": "assistant", "reasoning_content": "mail olu@exa"}, logprobs=token),
            _delta({"reasoning_content": "mple.org now"}),
            _delta({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "mail"}}]}),
            _delta({"tool_calls": [{"index": 0, "function": {"arguments": '{"to": "olu@'}}]}),
            _delta({"tool_calls": [{"index": 0, "function": {"arguments": 'example.org"}'}}]}),
            _delta({"content": "Done, Jo"}),
            _delta({"content": "sé García."}, finish="tool_calls"),
        ]
    )
    response = gw.chat("tiny", "who?", stream=True)
    assert response.status_code == 200
    events = [
        json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")
    ]
    assert "olu@" not in response.text and "José" not in response.text
    assert all(e["choices"][0].get("logprobs") is None for e in events if e.get("choices"))
    arguments = "".join(
        call["function"].get("arguments", "")
        for e in events
        for call in e["choices"][0].get("delta", {}).get("tool_calls", [])
    )
    assert json.loads(arguments) == {"to": "<EMAIL_ADDRESS>"}
    reasoning = "".join(e["choices"][0]["delta"].get("reasoning_content", "") for e in events)
    assert reasoning == "mail <EMAIL_ADDRESS> now"


def test_text_completion_logprobs_are_dropped(gw: Running) -> None:
    logprobs = {"tokens": ["olu", "@"], "token_logprobs": [-1, -1], "text_offset": [0, 3]}
    gw.fake.enqueue_choices(
        [{"index": 0, "text": f"mail {EMAIL}", "logprobs": logprobs, "finish_reason": "stop"}]
    )
    body = {"model": "tiny", "prompt": "x", "logprobs": 2}
    choice = gw.client.post("/v1/completions", json=body).json()["choices"][0]
    assert choice["text"] == "mail <EMAIL_ADDRESS>"
    assert choice["logprobs"] is None


def test_a_prompt_longer_than_the_engine_takes_is_refused_before_any_scan(
    start_gateway: Any,
) -> None:
    detector = RegexDetector()
    gw = start_gateway(detector=detector, max_body_bytes=2_000_000)
    huge = "word " * 180_000  # 900 KB
    response = gw.chat("coffee-shop", huge)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "context_length_exceeded"
    assert detector.calls == 0
    assert gw.fake.completion_requests == []
    assert gw.chat("coffee-shop", "a normal question").status_code == 200
