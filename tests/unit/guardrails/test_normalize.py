import pytest

from lorastack.guardrails.normalize import normalize


def _span_of(text: str, value: str) -> tuple[int, int]:
    start = text.index(value)
    return start, start + len(value)


@pytest.mark.parametrize(
    ("text", "written", "normal"),
    [
        (
            "mail jane dot doe at example dot com now",
            "jane dot doe at example dot com",
            "jane.doe@example.com",
        ),
        (
            "it is j.doe [at] example [dot] com.",
            "j.doe [at] example [dot] com",
            "j.doe@example.com",
        ),
        (
            "j.doe (at) example (dot) org please",
            "j.doe (at) example (dot) org",
            "j.doe@example.org",
        ),
        ("write to JDOE AT EXAMPLE DOT NET", "JDOE AT EXAMPLE DOT NET", "jdoe@example.net"),
        ("jane＠example.com", "jane＠example.com", "jane@example.com"),
        ("ja\u200bne@exa\u200dmple.com!", "ja\u200bne@exa\u200dmple.com", "jane@example.com"),
        (
            "card 4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 ok",
            "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
            "4111111111111111",
        ),
        ("ssn 1-2-3-4-5-6-7-8-9.", "1-2-3-4-5-6-7-8-9", "123456789"),
        ("call ０２０ ７９４６ ０９５８", "０２０ ７９４６ ０９５８", "020 7946 0958"),
    ],
)
def test_disguised_values_are_undone_and_map_back(text: str, written: str, normal: str) -> None:
    normalized = normalize(text)
    start, end = _span_of(normalized.text, normal)
    assert normalized.to_original(start, end) == _span_of(text, written)


@pytest.mark.parametrize(
    "text",
    [
        "I bought it at store.com yesterday",
        "meet me at home dot",
        "Order 12 34 was fine",
        "version 2.14.3 at 10:30",
        "see you at noon",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert normalize(text).text == text


def test_plain_text_maps_one_to_one() -> None:
    text = "Hello, Zoë Müller from Köln!"
    normalized = normalize(text)
    assert normalized.text == text
    assert normalized.to_original(7, 17) == (7, 17)
