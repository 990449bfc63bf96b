"""The preference formats (DPO's `preference`, KTO's `unpaired-preference`) in `data prepare`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lorastack.guardrails.guard import Guard
from lorastack.guardrails.policy import default_policy
from lorastack.train.data import (
    SPLITS,
    DataError,
    PrepareOptions,
    convert_record,
    detect_format,
    load_examples,
    prepare_dataset,
)
from tests.fakes import RegexDetector


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def pair(question: str, chosen: str, rejected: str) -> dict[str, Any]:
    return {"prompt": user(question), "chosen": assistant(chosen), "rejected": assistant(rejected)}


def rated(question: str, answer: str, label: Any) -> dict[str, Any]:
    return {"prompt": user(question), "completion": assistant(answer), "label": label}


SAME = "rejected: the same as chosen (a preference needs two answers)"


def pairs(count: int) -> list[dict[str, Any]]:
    return [
        pair(f"Question {i} about coffee?", f"Good answer {i}.", f"Bad {i}.") for i in range(count)
    ]


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path


def all_records(out: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for split in SPLITS
        for line in (out / f"{split}.jsonl").read_text().splitlines()
    ]


def prepare(tmp_path: Path, records: list[Any], **options: Any) -> Any:
    source = write_jsonl(tmp_path / "in.jsonl", records)
    return prepare_dataset([source], PrepareOptions(out=tmp_path / "out", **options))


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (pair("q", "a", "b"), "preference"),
        ({"chosen": [], "rejected": []}, "preference"),  # TRL's implicit prompt: refused later
        (rated("q", "a", True), "unpaired-preference"),
        (rated("q", "a", 1), "unpaired-preference"),  # refused later: not true or false
        ({"prompt": "q", "completion": "billing", "label": "billing"}, "prompt-completion"),
    ],
)
def test_detect_format(record: dict[str, Any], expected: str) -> None:
    assert detect_format(record) == expected


def test_both_shapes_convert_and_extra_fields_go() -> None:
    conversational = pair("q", "a", "b")
    assert convert_record({**conversational, "score": 3}, "preference") == conversational
    plain = {"prompt": "q", "chosen": "a", "rejected": "b"}
    assert convert_record(plain, "preference") == plain
    assert convert_record(rated("q", "a", False), "unpaired-preference") == rated("q", "a", False)
    parts = rated("q", "a", True)
    parts["completion"] = [{"role": "assistant", "content": [{"type": "text", "text": "a"}]}]
    assert convert_record(parts, "unpaired-preference") == rated("q", "a", True)


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        (pair("q", "Same answer.", "Same answer."), SAME),
        (pair("q", "Same  answer.", " Same answer.\n"), SAME),
        (
            {"prompt": user("q"), "chosen": "a", "rejected": assistant("b")},
            "chosen: expected a list of messages like the prompt, got string",
        ),
        (
            {**pair("q", "a", "b"), "rejected": user("b")},
            "rejected[0].role: expected 'assistant', got 'user'",
        ),
        ({**pair("q", "a", "b"), "chosen": []}, "chosen: needs at least one assistant turn"),
        ({**pair("q", "a", "b"), "prompt": assistant("q")}, "prompt: needs at least one user turn"),
        (
            {"chosen": [*user("q"), *assistant("a")], "rejected": [*user("q"), *assistant("b")]},
            "prompt: missing (the prompt's turns go in `prompt`, not in chosen and rejected)",
        ),
        ({"prompt": user("q"), "chosen": assistant("a")}, "rejected: missing"),
    ],
)
def test_every_preference_problem_names_file_line_and_field(
    tmp_path: Path, record: dict[str, Any], problem: str
) -> None:
    source = write_jsonl(tmp_path / "pairs.jsonl", [pair("fine", "yes", "no"), record])
    _, problems, _ = load_examples([source])
    assert [str(p) for p in problems] == [f"{source}:2: {problem}"]


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        (rated("q", "a", "yes"), "label: expected true or false, got string"),
        (rated("q", "a", 1), "label: expected true or false, got number"),
        (rated("q", "a", None), "label: expected true or false, got null"),
        (
            {"prompt": user("q"), "completion": assistant("a")},
            "label: missing (this record looks like prompt-completion, "
            "the file's records are unpaired-preference)",
        ),
        (
            {"prompt": user("q"), "completion": "a", "label": True},
            "completion: expected a list of messages like the prompt, got string",
        ),
    ],
)
def test_every_unpaired_preference_problem_names_file_line_and_field(
    tmp_path: Path, record: dict[str, Any], problem: str
) -> None:
    source = write_jsonl(tmp_path / "rated.jsonl", [rated("fine", "yes", True), record])
    _, problems, _ = load_examples([source])
    assert [str(p) for p in problems] == [f"{source}:2: {problem}"]


def test_invalid_preferences_stop_the_run_with_their_line(tmp_path: Path) -> None:
    records = [*pairs(4), pair("q", "Same.", "Same.")]
    with pytest.raises(DataError, match=r"in\.jsonl:5: rejected: the same as chosen"):
        prepare(tmp_path, records)


def test_preferences_prepare_into_splits(tmp_path: Path) -> None:
    result = prepare(tmp_path, pairs(10), system_prompt="You are the barista.")
    assert result.report.format == "preference"
    assert result.report.splits == {"train": 8, "validation": 1, "test": 1}
    records = all_records(result.out)
    assert len(records) == 10
    # The brand voice goes into the prompt; TRL's DPOTrainer reads these rows as they are.
    assert all(
        r["prompt"][0] == {"role": "system", "content": "You are the barista."} for r in records
    )
    assert all(list(r) == ["prompt", "chosen", "rejected"] for r in records)


def test_preference_duplicates_need_the_same_chosen_and_rejected(tmp_path: Path) -> None:
    first = pair("Open on Sundays?", "Yes, 9 to 5.", "No.")
    records = [
        first,
        first,  # exact
        pair("open on sundays", "yes 9 to 5", "no"),  # near: case and punctuation
        pair("Open on Sundays?", "No.", "Yes, 9 to 5."),  # swapped: another example
        pair("Open on Sundays?", "Yes, 9 to 5.", "Closed."),  # another rejected
        *pairs(3),
    ]
    result = prepare(tmp_path, records)
    assert result.report.dropped["duplicate_exact"] == 1
    assert result.report.dropped["duplicate_near"] == 1
    assert result.report.kept == 6


def test_unpaired_preference_duplicates_need_the_same_label(tmp_path: Path) -> None:
    answer = "We are open from nine in the morning until five in the afternoon on Sundays."
    records = [
        rated("Open on Sundays?", answer, True),
        rated("Open on Sundays?", answer, False),  # rated the other way: kept
        rated("open on sundays", answer.upper(), True),  # near duplicate of the first
        rated("Open on Sundays?", answer + " Welcome!", False),  # fuzzy duplicate of the 2nd
        rated("Open on Sundays?", answer + " Welcome!", True),  # ...but not of the 1st
        rated("Do you sell beans?", "Yes.", True),
        rated("Do you sell cake?", "No.", False),
    ]
    result = prepare(tmp_path, records, near_dup_threshold=0.8)
    assert result.report.format == "unpaired-preference"
    dropped = result.report.dropped
    assert (dropped["duplicate_exact"], dropped["duplicate_near"]) == (0, 1)
    assert dropped["duplicate_fuzzy"] == 2  # the 4th and the 5th: each like a kept one
    assert result.report.kept == 4


def test_unpaired_preferences_are_split_by_label(tmp_path: Path) -> None:
    records = [rated(f"Question {i}?", f"Answer {i}.", i % 4 == 0) for i in range(20)]
    result = prepare(tmp_path, records)
    assert result.report.stratified
    assert result.report.labels["test"] == {"false": 1, "true": 1}
    assert sum(r["label"] for r in all_records(result.out)) == 5


def test_scrubbing_covers_prompt_chosen_and_rejected(tmp_path: Path) -> None:
    records = [
        pair("I'm Jane Porter.", "Hello Jane Porter! ☕", "Who is Jane Porter?"),
        *pairs(4),
    ]
    source = write_jsonl(tmp_path / "in.jsonl", records)
    guard = Guard(default_policy(), RegexDetector())
    result = prepare_dataset([source], PrepareOptions(out=tmp_path / "out"), guard)
    assert pair("I'm <PERSON_1>.", "Hello <PERSON_1>! ☕", "Who is <PERSON_1>?") in all_records(
        result.out
    )
    assert "Jane" not in json.dumps(all_records(result.out))


def test_augmentation_stays_with_chats(tmp_path: Path) -> None:
    result = prepare(tmp_path, pairs(10), augment=2)
    assert result.report.augmented == 0
    assert "augmentation applies to chat records only; nothing added for preference" in (
        result.report.notes
    )


def test_preferences_do_not_mix_with_other_formats_or_shapes(tmp_path: Path) -> None:
    dpo = write_jsonl(tmp_path / "dpo.jsonl", pairs(3))
    kto = write_jsonl(tmp_path / "kto.jsonl", [rated("q", "a", True)])
    with pytest.raises(DataError, match="cannot mix record formats"):
        load_examples([dpo, kto])
    plain = write_jsonl(tmp_path / "plain.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}])
    with pytest.raises(DataError, match=r"cannot mix plain preference strings \("):
        load_examples([dpo, plain])


def test_a_forced_format_applies_to_every_record(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "q", "completion": "a", "label": "x"}])
    _, problems, _ = load_examples([source], format="unpaired-preference")
    assert [str(p) for p in problems] == [f"{source}:1: label: expected true or false, got string"]
