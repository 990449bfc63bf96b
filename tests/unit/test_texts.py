"""The texts of records and messages: all of them, or the business's own."""

from __future__ import annotations

from lorastack.texts import business_texts, record_texts


def test_a_chat_s_business_texts_are_its_system_and_assistant_turns_in_either_chat_style() -> None:
    openai = {
        "messages": [
            {"role": "system", "content": "You are Bean There."},
            {"role": "user", "content": "I'm Jane."},
            {"role": "assistant", "content": [{"type": "text", "text": "Hi from Leeds."}]},
        ]
    }
    sharegpt = {
        "conversations": [
            {"from": "human", "value": "I'm Jane."},
            {"from": "gpt", "value": "Hi from Leeds."},
        ]
    }
    assert business_texts(openai) == ["You are Bean There.", "Hi from Leeds."]
    assert business_texts(sharegpt) == ["Hi from Leeds."]
    assert "I'm Jane." in record_texts(openai) and "I'm Jane." in record_texts(sharegpt)


def test_prompts_and_inputs_are_the_customer_s_and_answers_and_documents_the_business_s() -> None:
    assert business_texts({"prompt": "I'm Jane.", "completion": "Hi."}) == ["Hi."]
    assert business_texts({"instruction": "Greet", "input": "Jane", "output": "Hi."}) == ["Hi."]
    assert business_texts({"text": "Leeds opens at 9."}) == ["Leeds opens at 9."]
    preference = {
        "prompt": [{"role": "user", "content": "I'm Jane."}],
        "chosen": [{"role": "assistant", "content": "Hi."}],
        "rejected": [{"role": "assistant", "content": "Go away."}],
    }
    assert business_texts(preference) == ["Hi.", "Go away."]
