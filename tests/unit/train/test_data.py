"""`lorastack.train.data`: reading, validation, cleaning, scrubbing, splitting, writing."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from lorastack.fsutil import sha256_tree
from lorastack.guardrails.guard import Guard
from lorastack.guardrails.policy import GuardPolicy, default_policy
from lorastack.train import data
from lorastack.train.augment import (
    add_typos,
    augment_messages,
    drop_final_punctuation,
    lowercase,
    system_prompt_variants,
)
from lorastack.train.data import (
    DEFAULT_PARAPHRASES,
    DataError,
    PrepareOptions,
    convert_record,
    dedupe,
    detect_format,
    load_examples,
    normalize_text,
    parse_split,
    prepare_dataset,
    split_indices,
    split_sizes,
    write,
)
from tests.fakes import RegexDetector

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "data"


def chat(user: str, assistant: str, system: str | None = None) -> dict[str, Any]:
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    return {"messages": messages}


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def chats(count: int) -> list[dict[str, Any]]:
    return [chat(f"Question number {i} about coffee?", f"Answer number {i}.") for i in range(count)]


def prepare(
    tmp_path: Path, records: list[Any], out: str = "out", **options: Any
) -> data.PrepareResult:
    source = write_jsonl(tmp_path / "in.jsonl", records)
    options.setdefault("paraphrases", 0)  # the stages under test, not the default paraphrases
    return prepare_dataset([source], PrepareOptions(out=tmp_path / out, **options))


def split_records(out: Path) -> dict[str, list[dict[str, Any]]]:
    return {split: read_jsonl(out / f"{split}.jsonl") for split in data.SPLITS}


def all_records(out: Path) -> list[dict[str, Any]]:
    return [record for records in split_records(out).values() for record in records]


# -- formats and importers ------------------------------------------------------------


def test_each_format_converts_to_its_canonical_form() -> None:
    assert convert_record(chat("hi", "hello", "Be nice."), "messages") == chat(
        "hi", "hello", "Be nice."
    )
    assert convert_record({"prompt": "p", "completion": "c", "id": 3}, "prompt-completion") == {
        "prompt": "p",
        "completion": "c",
    }
    conversational = {
        "prompt": [{"role": "user", "content": "p"}],
        "completion": [{"role": "assistant", "content": "c"}],
    }
    assert convert_record(conversational, "prompt-completion") == conversational
    assert convert_record({"text": "t"}, "text") == {"text": "t"}
    assert convert_record(
        {"instruction": "Do it.", "input": "this", "output": "done"}, "alpaca"
    ) == {
        "prompt": "Do it.\n\nthis",
        "completion": "done",
    }
    for empty_input in ({"input": ""}, {"input": None}, {}):
        record = {"instruction": "Do it.", "output": "done", **empty_input}
        assert convert_record(record, "alpaca") == {"prompt": "Do it.", "completion": "done"}
    sharegpt = {
        "conversations": [
            {"from": "system", "value": "Be nice."},
            {"from": "human", "value": "hi"},
            {"from": "gpt", "value": "hello"},
        ]
    }
    assert convert_record(sharegpt, "sharegpt") == chat("hi", "hello", "Be nice.")
    parts = {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
            {"role": "assistant", "content": "c"},
        ]
    }
    assert convert_record(parts, "messages")["messages"][0]["content"] == "a\nb"  # type: ignore[typeddict-item]


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (chat("a", "b"), "messages"),
        ({"conversations": []}, "sharegpt"),
        ({"prompt": "a", "completion": "b"}, "prompt-completion"),
        ({"instruction": "a", "input": "", "output": "b"}, "alpaca"),
        ({"text": "a", "source": "x"}, "text"),
        ({"question": "a"}, None),
    ],
)
def test_detect_format(record: dict[str, Any], expected: str | None) -> None:
    assert detect_format(record) == expected


def test_jsonl_json_array_csv_tsv_parquet_and_saved_datasets_are_read(tmp_path: Path) -> None:
    import datasets
    import pandas as pd

    pairs = [{"prompt": f"ticket {i}", "completion": "billing"} for i in range(3)]
    jsonl = write_jsonl(tmp_path / "a.jsonl", pairs)
    array = tmp_path / "b.json"
    array.write_text(json.dumps(pairs))
    csv_file = tmp_path / "c.csv"
    csv_file.write_text(
        'prompt , completion\n"ticket, with comma",billing\n"two\nlines",technical\n'
    )
    tsv_file = tmp_path / "d.tsv"
    tsv_file.write_text("prompt\tcompletion\nhello\tsales\n")
    parquet = tmp_path / "e.parquet"
    pd.DataFrame(pairs).to_parquet(parquet)
    saved = tmp_path / "saved"
    datasets.Dataset.from_list(pairs).save_to_disk(str(saved))
    saved_dict = tmp_path / "saved-dict"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(pairs[:2]),
            "test": datasets.Dataset.from_list(pairs[2:]),
        }
    ).save_to_disk(str(saved_dict))

    sources = [jsonl, array, csv_file, tsv_file, parquet, saved, saved_dict]
    examples, problems, summaries = load_examples(sources)
    assert problems == []
    assert [s.records for s in summaries] == [3, 3, 2, 1, 3, 3, 3]
    assert {s.format for s in summaries} == {"prompt-completion"}
    records = [e.record for e in examples]
    assert records[6] == {"prompt": "ticket, with comma", "completion": "billing"}
    assert records[7] == {"prompt": "two\nlines", "completion": "technical"}
    assert records[8] == {"prompt": "hello", "completion": "sales"}
    assert records[9:12] == pairs
    assert records[12:15] == pairs
    assert records[15:] == pairs
    assert [str(e.location) for e in examples[6:8]] == [f"{csv_file}:row 1", f"{csv_file}:row 2"]
    assert str(examples[9].location) == f"{parquet}:index 0"
    assert str(examples[17].location) == f"{saved_dict}[test]:index 0"


def test_csv_holds_chats_as_json_and_alpaca_columns(tmp_path: Path) -> None:
    chats_csv = tmp_path / "chats.csv"
    cell = json.dumps(chat("hi", "hello")["messages"]).replace('"', '""')
    chats_csv.write_text(f'messages,label\n"{cell}",x\n')
    alpaca_csv = tmp_path / "alpaca.csv"
    alpaca_csv.write_text("instruction,input,output\nSay hi,,hi\nTranslate,bonjour,hello\n")
    examples, _, _ = load_examples([chats_csv])
    assert examples[0].record == chat("hi", "hello")
    examples, _, _ = load_examples([alpaca_csv])
    assert [e.record for e in examples] == [
        {"prompt": "Say hi", "completion": "hi"},
        {"prompt": "Translate\n\nbonjour", "completion": "hello"},
    ]


def test_alpaca_and_sharegpt_files_become_canonical_splits(tmp_path: Path) -> None:
    result = prepare_dataset(
        [EXAMPLES / "tiny-alpaca.jsonl"], PrepareOptions(out=tmp_path / "alpaca")
    )
    assert result.report.format == "prompt-completion"
    assert all(set(r) == {"prompt", "completion"} for r in all_records(result.out))
    result = prepare_dataset(
        [EXAMPLES / "tiny-sharegpt.jsonl", EXAMPLES / "tiny-chat.jsonl"],
        PrepareOptions(out=tmp_path / "chat"),
    )
    assert result.report.format == "messages"
    assert [s.format for s in result.report.sources] == ["sharegpt", "messages"]
    roles = {m["role"] for r in all_records(result.out) for m in r["messages"]}
    assert roles == {"system", "user", "assistant"}


def test_forced_format(tmp_path: Path) -> None:
    # Both keys present: detection says prompt-completion, --format text wins.
    source = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "a", "completion": "b", "text": "t"}])
    examples, _, summaries = load_examples([source], format="text")
    assert examples[0].record == {"text": "t"} and summaries[0].format == "text"
    with pytest.raises(DataError, match="format 'csv'"):
        PrepareOptions(out=tmp_path, format="csv")  # type: ignore[arg-type]


def test_mixed_formats_are_refused_with_a_clear_message(tmp_path: Path) -> None:
    chats_file = write_jsonl(tmp_path / "chats.jsonl", [chat("a", "b")])
    alpaca = write_jsonl(tmp_path / "alpaca.jsonl", [{"instruction": "a", "output": "b"}])
    with pytest.raises(DataError) as error:
        load_examples([chats_file, alpaca])
    message = str(error.value)
    assert message.startswith("cannot mix record formats in one dataset")
    assert f"{chats_file} is messages" in message
    assert f"{alpaca} is alpaca (prompt-completion)" in message
    plain = write_jsonl(tmp_path / "plain.jsonl", [{"prompt": "a", "completion": "b"}])
    conversational = {
        "prompt": [{"role": "user", "content": "a"}],
        "completion": [{"role": "assistant", "content": "b"}],
    }
    listed = write_jsonl(tmp_path / "listed.jsonl", [conversational])
    with pytest.raises(DataError, match=r"cannot mix plain prompt/completion strings \("):
        load_examples([plain, listed])


def test_undetectable_and_unreadable_files(tmp_path: Path) -> None:
    odd = write_jsonl(tmp_path / "odd.jsonl", [{"question": "a", "answer": "b"}])
    with pytest.raises(DataError, match="fields answer, question; expected messages"):
        load_examples([odd])
    with pytest.raises(DataError, match=r"cannot read .*nope\.jsonl: no such file"):
        load_examples([tmp_path / "nope.jsonl"])
    (tmp_path / "x.xlsx").write_bytes(b"PK")
    with pytest.raises(DataError, match=r"unknown file type '\.xlsx'"):
        load_examples([tmp_path / "x.xlsx"])
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match="not a dataset saved with `save_to_disk`"):
        load_examples([tmp_path / "folder"])
    (tmp_path / "latin.jsonl").write_bytes('{"text": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_examples([tmp_path / "latin.jsonl"])


# -- validation -------------------------------------------------------------------


def _bad_chat(**changes: Any) -> dict[str, Any]:
    record = chat("hi", "hello", "Be nice.")
    record["messages"][changes.pop("index", 2)].update(changes)
    return record


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        (
            _bad_chat(role="bot"),
            "messages[2].role: expected one of system, user, assistant, got 'bot'",
        ),
        (_bad_chat(content=None), "messages[2].content: expected a string, got null"),
        (
            _bad_chat(content=[{"type": "image_url"}]),
            'messages[2].content[0]: only text parts are supported, got {"type": "image_url"}',
        ),
        ({"messages": [{"content": "x"}]}, "messages[0].role: missing"),
        ({"messages": [{"role": "user"}]}, "messages[0].content: missing"),
        ({"messages": "hello"}, "messages: expected a list of messages, got string"),
        ({"messages": ["hello"]}, "messages[0]: expected an object, got string"),
        ({"messages": []}, "messages: a chat needs at least one user turn"),
        (
            {"messages": [{"role": "user", "content": "hi"}]},
            "messages: a chat needs at least one assistant turn",
        ),
        (
            {"messages": [*chat("a", "b")["messages"], {"role": "user", "content": "c"}]},
            "messages[2].role: a chat must end with an assistant turn, got 'user'",
        ),
        (
            {"messages": [*chat("a", "b")["messages"], {"role": "system", "content": "s"}]},
            "messages[2].role: a system message may only come first",
        ),
        (
            {"prompt": "a", "completion": "b"},
            "messages: missing (this record looks like prompt-completion, "
            "the file's records are messages)",
        ),
    ],
)
def test_every_chat_problem_names_file_line_and_field(
    tmp_path: Path, record: dict[str, Any], problem: str
) -> None:
    source = write_jsonl(tmp_path / "chats.jsonl", [chat("fine", "yes"), record])
    _, problems, _ = load_examples([source])
    assert [str(p) for p in problems] == [f"{source}:2: {problem}"]


@pytest.mark.parametrize(
    ("fmt", "record", "problem"),
    [
        (
            "prompt-completion",
            {"prompt": 1, "completion": "b"},
            "prompt: expected a string or a list of messages, got number",
        ),
        (
            "prompt-completion",
            {"prompt": "a", "completion": ["b"]},
            "completion: expected a string like the prompt, got array",
        ),
        (
            "prompt-completion",
            {"prompt": [{"role": "user", "content": "a"}], "completion": "b"},
            "completion: expected a list of messages like the prompt, got string",
        ),
        (
            "prompt-completion",
            {
                "prompt": [{"role": "user", "content": "a"}],
                "completion": [{"role": "user", "content": "b"}],
            },
            "completion[0].role: expected 'assistant', got 'user'",
        ),
        (
            "prompt-completion",
            {"text": "a"},
            "prompt: missing "
            "(this record looks like text, the file's records are prompt-completion)",
        ),
        ("text", {"text": ["a"]}, "text: expected a string, got array"),
        (
            "alpaca",
            {"instruction": "a", "input": 3, "output": "b"},
            "input: expected a string, got number",
        ),
        ("alpaca", {"instruction": "a"}, "output: missing"),
        (
            "sharegpt",
            {"conversations": [{"from": "bot", "value": "x"}]},
            "conversations[0].from: expected one of system, human, gpt, got 'bot'",
        ),
        (
            "sharegpt",
            {
                "conversations": [
                    {"from": "human", "value": "x"},
                    {"from": "gpt", "value": "y"},
                    {"from": "human", "value": "z"},
                ]
            },
            "conversations[2].from: a chat must end with an assistant ('gpt') turn, got 'human'",
        ),
        (
            "sharegpt",
            {"conversations": [{"from": "human", "value": "x"}]},
            "conversations: a chat needs at least one assistant ('gpt') turn",
        ),
    ],
)
def test_every_format_problem_names_its_field(
    tmp_path: Path, fmt: data.InputFormat, record: dict[str, Any], problem: str
) -> None:
    source = write_jsonl(tmp_path / "data.jsonl", [record])
    _, problems, _ = load_examples([source], format=fmt)
    assert [str(p) for p in problems] == [f"{source}:1: {problem}"]


def test_bad_json_and_non_objects_are_problems_with_their_line(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "ok"}\n\n{"text": \n[1, 2]\n')
    _, problems, _ = load_examples([source])
    assert [str(p) for p in problems] == [
        f"{source}:3: not valid JSON: Expecting value (column 10)",
        f"{source}:4: expected a JSON object, got array",
    ]


def test_csv_and_parquet_problems_name_the_row(tmp_path: Path) -> None:
    import pandas as pd

    csv_file = tmp_path / "t.csv"
    csv_file.write_text("prompt,completion\na,billing\nb\n")
    _, problems, _ = load_examples([csv_file])
    assert [str(p) for p in problems] == [f"{csv_file}:row 2: expected 2 columns, got 1"]
    parquet = tmp_path / "t.parquet"
    pd.DataFrame({"text": ["fine", None]}).to_parquet(parquet)
    _, problems, _ = load_examples([parquet])
    assert [str(p) for p in problems] == [f"{parquet}:index 1: text: expected a string, got null"]


def test_invalid_records_fail_listing_twenty_and_a_count(tmp_path: Path) -> None:
    records: list[Any] = [chat("ok", "fine")] + [{"messages": "bad"}] * 25
    with pytest.raises(DataError) as error:
        prepare(tmp_path, records)
    lines = str(error.value).splitlines()
    assert lines[0] == "25 records are invalid (drop them with --skip-invalid):"
    assert (
        lines[1]
        == f"  {tmp_path / 'in.jsonl'}:2: messages: expected a list of messages, got string"
    )
    assert len(lines) == 22 and lines[-1] == "  ... and 5 more"
    assert not (tmp_path / "out").exists()


def test_skip_invalid_drops_and_counts_them(tmp_path: Path) -> None:
    records: list[Any] = [*chats(5), {"messages": "bad"}, "not an object"]
    result = prepare(tmp_path, records, skip_invalid=True)
    assert result.report.dropped["invalid"] == 2
    assert result.report.read == 7 and result.report.kept == 5
    assert len(all_records(result.out)) == 5
    report = json.loads((result.out / "report.json").read_text())
    assert report["dropped"]["invalid"] == 2
    assert report["invalid_examples"][0].endswith(
        ":6: messages: expected a list of messages, got string"
    )


# -- cleaning and duplicates ------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("  hello   world \t again  ", "hello world again"),
        ("line one  \r\nline two\rline three", "line one\nline two\nline three"),
        ("a\n\n\n\n\nb", "a\n\nb"),
        ("a \n \n \n b", "a\n\nb"),
        ("cafe\u0301", "café"),  # NFD -> NFC
        ("a\u00a0\u00a0b\u2028c", "a b\nc"),
        ("\n\n  \n", ""),
    ],
)
def test_normalize_text(raw: str, clean: str) -> None:
    assert normalize_text(raw) == clean


def test_cleaning_normalises_and_drops_empty_and_over_long_records(tmp_path: Path) -> None:
    records = [
        chat("  What   time do\tyou open?  ", "From 7am.\n\n\n\nSee you!"),
        chat("   ", "empty question"),
        chat("empty answer", ""),
        {"messages": [{"role": "system", "content": "  "}, *chat("hi", "hello")["messages"]]},
        chat("long " * 30, "x"),
    ]
    result = prepare(tmp_path, records, max_chars=100)
    kept = sorted(all_records(result.out), key=json.dumps)
    assert kept == sorted(
        [chat("What time do you open?", "From 7am.\n\nSee you!"), chat("hi", "hello")],
        key=json.dumps,
    )
    assert result.report.dropped["empty"] == 2
    assert result.report.dropped["too_long"] == 1


def test_exact_and_near_duplicates_are_removed_and_counted(tmp_path: Path) -> None:
    base = chat("Do you have oat milk?", "We do: oat, almond and soy!")
    records = [
        base,
        base,  # exact
        chat("Do  you have oat milk?", "We do: oat, almond and soy!"),  # exact once normalised
        chat("do you have OAT milk", "We do, oat, almond and soy."),  # near: case/punctuation
        chat("Do you have rice milk?", "We do: oat, almond and soy!"),  # different
        *chats(5),
    ]
    result = prepare(tmp_path, records)
    dropped = result.report.dropped
    assert (dropped["duplicate_exact"], dropped["duplicate_near"]) == (2, 1)
    assert result.report.duplicates_removed == 3
    assert result.report.kept == 7


def test_fuzzy_duplicates_need_the_threshold(tmp_path: Path) -> None:
    story = (
        "Our espresso blend combines a chocolatey Brazilian base with a bright Ethiopian "
        "coffee, roasted medium dark every Tuesday morning in small batches so the shop "
        "always has fresh beans for the grinder and the customers who take bags home."
    )
    edited = story.replace("every Tuesday", "each Tuesday")
    records = [{"text": story}, {"text": edited}, {"text": "Cold brew steeps for a day."}]
    assert data.fuzzy_duplicates([{"text": story}, {"text": edited}], 0.8) == [False, True]
    plain = prepare(tmp_path, records, out="plain")
    assert plain.report.dropped["duplicate_fuzzy"] == 0 and plain.report.kept == 3
    fuzzy = prepare(tmp_path, records, out="fuzzy", near_dup_threshold=0.8)
    assert fuzzy.report.dropped["duplicate_fuzzy"] == 1 and fuzzy.report.kept == 2


@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.9, 1.0])
def test_fuzzy_duplicates_are_those_an_exhaustive_comparison_finds(threshold: float) -> None:
    """MinHash LSH only proposes candidates: the decisions are those of comparing every
    pair's shingle sets, keeping the first of each group."""
    rng = random.Random(7)
    vocabulary = [f"word{i}" for i in range(400)]
    records: list[dict[str, Any]] = []
    for _ in range(40):
        words = rng.sample(vocabulary, 40)
        records.append({"text": " ".join(words)})
        for _ in range(2):  # variants: 0 to 5 words replaced, around every threshold
            variant = list(words)
            for _ in range(rng.randrange(6)):
                variant[rng.randrange(len(variant))] = rng.choice(vocabulary)
            records.append({"text": " ".join(variant)})
    rng.shuffle(records)
    sets = [dedupe.shingles(record) for record in records]  # type: ignore[arg-type]
    expected: list[bool] = []
    for i, items in enumerate(sets):
        kept = [sets[j] for j in range(i) if not expected[j]]
        expected.append(any(len(items & k) / len(items | k) >= threshold for k in kept))
    assert 0 < sum(expected) < len(records)
    assert data.fuzzy_duplicates(records, threshold) == expected  # type: ignore[arg-type]


def test_the_example_chats_have_two_exact_duplicates_and_one_near(tmp_path: Path) -> None:
    result = prepare_dataset([EXAMPLES / "tiny-chat.jsonl"], PrepareOptions(out=tmp_path / "o"))
    assert result.report.dropped["duplicate_exact"] == 2
    assert result.report.dropped["duplicate_near"] == 1


# -- scrubbing ------------------------------------------------------------------------


def test_scrubbing_masks_values_and_counts_them(tmp_path: Path) -> None:
    records = [
        chat("I'm Jane Porter, mail me at jane@example.com", "Hi Jane Porter, will do!"),
        *chats(4),
    ]
    source = write_jsonl(tmp_path / "in.jsonl", records)
    guard = Guard(default_policy(), RegexDetector())  # the regex fake, not Presidio
    result = prepare_dataset([source], PrepareOptions(out=tmp_path / "out"), guard)
    text = "\n".join((result.out / f"{s}.jsonl").read_text() for s in data.SPLITS)
    assert "Jane Porter" not in text and "jane@example.com" not in text
    assert chat("I'm <PERSON_1>, mail me at <EMAIL_ADDRESS_1>", "Hi <PERSON_1>, will do!") in (
        all_records(result.out)
    )
    pii = json.loads((result.out / "report.json").read_text())["pii"]
    assert pii["scrubbed"] is True and pii["policy"] == "default"
    assert pii["entities"] == {"EMAIL_ADDRESS": 1, "PERSON": 2}
    assert pii["records_changed"] == 1


def test_the_business_s_own_recurring_names_are_kept_and_reported(tmp_path: Path) -> None:
    # A ferry whose port (a name the NER stand-in calls a place) is in every answer.
    records = [chat(f"When is boat {n}?", f"Boat {n} leaves Leeds at {n}am.") for n in range(9)]
    records.append(chat("I'm Jane Porter, when is the last boat?", "At 9pm, Jane Porter."))
    source = write_jsonl(tmp_path / "in.jsonl", records)
    guard = Guard(default_policy(), RegexDetector())
    result = prepare_dataset([source], PrepareOptions(out=tmp_path / "out"), guard)
    kept = all_records(result.out)
    assert chat("When is boat 3?", "Boat 3 leaves Leeds at 3am.") in kept
    assert chat("I'm <PERSON_1>, when is the last boat?", "At 9pm, <PERSON_1>.") in kept
    report = json.loads((result.out / "report.json").read_text())
    assert report["pii"]["vocabulary"] == ["Leeds"] and report["options"]["vocabulary"] is True
    assert "`Leeds`" in (result.out / "report.md").read_text()

    options = PrepareOptions(out=tmp_path / "masked", vocabulary=False)
    masked = prepare_dataset([source], options, guard)
    assert chat("When is boat 3?", "Boat 3 leaves <LOCATION_1> at 3am.") in all_records(masked.out)
    assert json.loads((masked.out / "report.json").read_text())["pii"]["vocabulary"] == []


def test_blocked_records_are_dropped_and_counted(tmp_path: Path) -> None:
    policy = GuardPolicy.model_validate({"entities": {"CREDIT_CARD": {"input": "block"}}})
    records = [chat("My card is 4111 1111 1111 1111", "Thanks"), *chats(4)]
    source = write_jsonl(tmp_path / "in.jsonl", records)
    guard = Guard(policy, RegexDetector())
    result = prepare_dataset([source], PrepareOptions(out=tmp_path / "out"), guard)
    assert result.report.dropped["pii_blocked"] == 1
    assert "4111" not in json.dumps(all_records(result.out))


def test_no_guard_means_no_scrubbing(tmp_path: Path) -> None:
    records = [chat("I'm Jane Porter", "Hi Jane Porter!"), *chats(4)]
    result = prepare(tmp_path, records)
    assert chat("I'm Jane Porter", "Hi Jane Porter!") in all_records(result.out)
    assert json.loads((result.out / "report.json").read_text())["pii"] == {
        "scrubbed": False,
        "policy": None,
    }


# -- splitting -----------------------------------------------------------------------


def test_same_input_and_seed_give_byte_identical_output(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", chats(40))
    options = {"augment": 2, "system_prompt": "Be warm. Be brief."}
    first = prepare_dataset([source], PrepareOptions(out=tmp_path / "a", **options))
    second = prepare_dataset([source], PrepareOptions(out=tmp_path / "b", **options))
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl", "report.json", "report.md"):
        assert (first.out / name).read_bytes() == (second.out / name).read_bytes(), name
    other = prepare_dataset([source], PrepareOptions(out=tmp_path / "c", seed=7))
    assert (other.out / "test.jsonl").read_bytes() != (first.out / "test.jsonl").read_bytes()


def test_the_dataset_hash_covers_the_three_splits(tmp_path: Path) -> None:
    result = prepare(tmp_path, chats(10))
    report = json.loads((result.out / "report.json").read_text())
    assert report["dataset"]["sha256"] == result.sha256
    assert result.sha256 == sha256_tree(result.out, exclude=frozenset({"report.json", "report.md"}))
    assert result.sha256 in (result.out / "report.md").read_text()


def test_stratified_split_keeps_label_proportions(tmp_path: Path) -> None:
    weights = {"billing": 40, "technical": 30, "account": 20, "sales": 10}
    records = [
        {"prompt": f"ticket {label} {i}", "completion": label}
        for label, count in weights.items()
        for i in range(count)
    ]
    random.Random(0).shuffle(records)
    result = prepare(tmp_path, records)
    assert result.report.stratified
    splits = split_records(result.out)
    for name, expected in (("train", 80), ("validation", 10), ("test", 10)):
        counts = Counter(r["completion"] for r in splits[name])
        assert sum(counts.values()) == expected
        for label, weight in weights.items():
            assert abs(counts[label] - weight * expected / 100) <= 1, (name, label, counts)
    report = json.loads((result.out / "report.json").read_text())
    assert report["labels"]["validation"] == {
        "account": 2,
        "billing": 4,
        "sales": 1,
        "technical": 3,
    }


def test_free_text_completions_are_not_stratified(tmp_path: Path) -> None:
    records = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(10)]
    assert not prepare(tmp_path, records).report.stratified
    # A label seen once rules stratification out too.
    labelled = [{"prompt": f"q{i}", "completion": "x" if i else "y"} for i in range(10)]
    assert data.stratify_labels([convert_record(r, "prompt-completion") for r in labelled]) is None


def test_the_example_tickets_are_stratified(tmp_path: Path) -> None:
    result = prepare_dataset([EXAMPLES / "tiny-tickets.csv"], PrepareOptions(out=tmp_path / "o"))
    assert result.report.stratified and result.report.read == 30
    assert set(result.report.labels["train"]) == {"billing", "technical", "account", "sales"}


@pytest.mark.parametrize(
    ("count", "sizes"),
    [
        (1, (1, 0, 0)),
        (2, (2, 0, 0)),
        (3, (1, 1, 1)),
        (4, (2, 1, 1)),
        (10, (8, 1, 1)),
        (25, (19, 3, 3)),
    ],
)
def test_split_sizes_for_tiny_datasets(count: int, sizes: tuple[int, int, int]) -> None:
    assert split_sizes(count, (0.8, 0.1, 0.1)) == sizes


def test_split_sizes_never_leave_train_empty() -> None:
    for count in range(1, 60):
        for fractions in ((0.8, 0.1, 0.1), (0.34, 0.33, 0.33), (0.9, 0.1, 0.0), (0.5, 0.0, 0.5)):
            train, validation, test = split_sizes(count, fractions)
            assert train >= 1 and train + validation + test == count
            if count >= 3:
                assert (validation >= 1) == (fractions[1] > 0)
                assert (test >= 1) == (fractions[2] > 0)


def test_split_indices_partition_every_record() -> None:
    train, validation, test = split_indices(50, (0.6, 0.2, 0.2), seed=1)
    assert sorted(train + validation + test) == list(range(50))
    assert (len(train), len(validation), len(test)) == (30, 10, 10)


def test_a_tiny_dataset_still_prepares(tmp_path: Path) -> None:
    result = prepare(tmp_path, chats(10))
    assert result.report.splits == {"train": 8, "validation": 1, "test": 1}
    one = prepare(tmp_path, chats(1), out="one")
    assert one.report.splits == {"train": 1, "validation": 0, "test": 0}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.8,0.1,0.1", (0.8, 0.1, 0.1)), ("80,10,10", (0.8, 0.1, 0.1)), ("1,0,0", (1.0, 0.0, 0.0))],
)
def test_parse_split(text: str, expected: tuple[float, float, float]) -> None:
    assert parse_split(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ("0.8,0.2", "three numbers"),
        ("a,b,c", "three numbers"),
        ("0.5,0.1,0.1", "add up to 1"),
        ("0,0.5,0.5", "train fraction"),
        ("1.2,-0.1,-0.1", "non-negative"),
    ],
)
def test_bad_splits_are_refused(tmp_path: Path, split: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        PrepareOptions(out=tmp_path, split=parse_split(split))


# -- system prompt and augmentation ------------------------------------------------------


def test_system_prompt_is_added_to_chats_without_one(tmp_path: Path) -> None:
    records = [chat("a?", "b"), chat("c?", "d", system="Own prompt."), *chats(3)]
    result = prepare(tmp_path, records, system_prompt="  Be warm.\n")
    by_user = {r["messages"][1]["content"]: r["messages"][0] for r in all_records(result.out)}
    assert by_user["a?"] == {"role": "system", "content": "Be warm."}
    assert by_user["c?"] == {"role": "system", "content": "Own prompt."}


def test_system_prompt_is_ignored_for_text_with_a_note(tmp_path: Path) -> None:
    result = prepare(tmp_path, [{"text": f"t{i}"} for i in range(4)], system_prompt="Be warm.")
    assert all(set(r) == {"text"} for r in all_records(result.out))
    assert any("system prompt" in note for note in result.report.notes)


def test_augmentation_is_only_in_train_and_counted(tmp_path: Path) -> None:
    records = [chat(f"Do you sell the blend number {i}?", f"Yes, blend {i}.") for i in range(20)]
    voice = "Be warm. Be brief."
    plain = prepare(tmp_path, records, out="plain", system_prompt=voice)
    augmented = prepare(tmp_path, records, out="augmented", augment=2, system_prompt=voice)
    assert augmented.report.augmented == 2 * 16  # every train chat has several variants
    assert augmented.report.splits["train"] == 16 + 32
    assert sum(augmented.report.augmented_kinds.values()) >= 32
    for split in ("validation", "test"):
        path = f"{split}.jsonl"
        assert (augmented.out / path).read_bytes() == (plain.out / path).read_bytes()
    report = json.loads((augmented.out / "report.json").read_text())
    assert report["augmented"]["total"] == 32


def test_paraphrases_are_on_by_default_in_train_only(tmp_path: Path) -> None:
    records = [chat(f"Do you sell the blend number {i}?", f"Yes, blend {i}.") for i in range(20)]
    plain = prepare(tmp_path, records, out="plain")
    source = write_jsonl(tmp_path / "in.jsonl", records)
    result = prepare_dataset([source], PrepareOptions(out=tmp_path / "default"))
    assert result.report.augmented == DEFAULT_PARAPHRASES * 16
    assert result.report.augmented_kinds == {"paraphrase": DEFAULT_PARAPHRASES * 16}
    train = read_jsonl(result.out / "train.jsonl")
    answers = Counter(r["messages"][-1]["content"] for r in train)
    assert set(answers.values()) == {1 + DEFAULT_PARAPHRASES}  # each answer, asked anew
    for split in ("validation", "test"):
        path = f"{split}.jsonl"
        assert (result.out / path).read_bytes() == (plain.out / path).read_bytes()
    assert (
        json.loads((result.out / "report.json").read_text())["options"]["paraphrases"]
        == DEFAULT_PARAPHRASES
    )


def test_augmentation_needs_chats(tmp_path: Path) -> None:
    result = prepare(tmp_path, [{"text": f"t{i}"} for i in range(5)], augment=3)
    assert result.report.augmented == 0
    assert any("augmentation applies to chat" in note for note in result.report.notes)


def test_user_noise_never_touches_placeholders() -> None:
    text = "Hello, I'm <PERSON_1> and my EMAIL is <EMAIL_ADDRESS_1>. Thanks!"
    assert lowercase(text) == "hello, i'm <PERSON_1> and my email is <EMAIL_ADDRESS_1>. thanks!"
    assert drop_final_punctuation(text) == text[:-1]
    assert drop_final_punctuation("Call <PERSON_1>") == "Call <PERSON_1>"
    rng = random.Random(3)
    for _ in range(50):
        noisy = add_typos(text, rng, count=2)
        assert "<PERSON_1>" in noisy and "<EMAIL_ADDRESS_1>" in noisy
        assert noisy != text and len(noisy) >= len(text) - 2


def test_system_prompt_variants_and_augment_messages_are_deterministic() -> None:
    assert system_prompt_variants("Be warm. Be brief.") == [
        None,
        "Be brief. Be warm.",
        "Be warm. Be brief",
    ]
    assert system_prompt_variants("Be warm") == [None]
    messages: list[data.Message] = [
        {"role": "system", "content": "Be warm."},
        {"role": "user", "content": "Do you have decaf coffee?"},
        {"role": "assistant", "content": "Yes!"},
    ]
    first = augment_messages(messages, 4, random.Random(1), "Be warm.")
    again = augment_messages(messages, 4, random.Random(1), "Be warm.")
    assert [v.messages for v in first] == [v.messages for v in again]
    assert len(first) == 4
    keys = {json.dumps(v.messages) for v in first}
    assert len(keys) == 4 and json.dumps(messages) not in keys
    for variant in first:
        assert variant.messages[-1] == messages[-1]  # the answer is never changed


# -- atomic output ------------------------------------------------------------------------


def test_a_crash_mid_write_leaves_no_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", chats(10))
    real_write = write._write_jsonl
    written: list[Path] = []

    def crash_on_second(path: Path, records: Any) -> None:
        written.append(path)
        if len(written) == 2:
            path.write_text('{"messages": [')  # half a line, then the "crash"
            raise OSError("disk full")
        real_write(path, records)

    monkeypatch.setattr(write, "_write_jsonl", crash_on_second)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        prepare_dataset([source], PrepareOptions(out=out))
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]  # no staging left


def test_a_crash_keeps_the_previous_dataset_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", chats(10))
    out = tmp_path / "out"
    previous = prepare_dataset([source], PrepareOptions(out=out))
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def crash(path: Path) -> None:
        raise OSError("killed")

    monkeypatch.setattr(write, "fsync_tree", crash)
    with pytest.raises(OSError, match="killed"):
        prepare_dataset([source], PrepareOptions(out=out, seed=9))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert previous.sha256 == data.dataset_sha256(out)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_rerun_replaces_a_dataset_but_never_another_folder(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", chats(10))
    out = tmp_path / "out"
    prepare_dataset([source], PrepareOptions(out=out))
    again = prepare_dataset([source], PrepareOptions(out=out, seed=5))
    assert json.loads((out / "report.json").read_text())["options"]["seed"] == 5
    assert again.out == out
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a prepared dataset"):
        prepare_dataset([source], PrepareOptions(out=precious))
    assert (precious / "notes.txt").read_text() == "keep me"


def test_output_is_utf8_without_escapes(tmp_path: Path) -> None:
    result = prepare(tmp_path, [chat("Un café, s'il vous plaît ☕", "Avec plaisir !"), *chats(3)])
    text = "".join((result.out / f"{s}.jsonl").read_text(encoding="utf-8") for s in data.SPLITS)
    assert "café" in text and "☕" in text and "\\u" not in text


@pytest.mark.parametrize(
    "name",
    [
        "tiny-chat.jsonl",
        "tiny-tickets.csv",
        "tiny-domain.jsonl",
        "tiny-alpaca.jsonl",
        "tiny-sharegpt.jsonl",
    ],
)
def test_every_example_dataset_prepares(tmp_path: Path, name: str) -> None:
    result = prepare_dataset([EXAMPLES / name], PrepareOptions(out=tmp_path / "o"))
    assert result.report.dropped["invalid"] == 0
    assert result.report.splits["train"] >= 5


def test_a_file_of_non_objects_is_reported_not_skipped(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('[1]\n"text"\n')
    _, problems, summaries = load_examples([source])
    assert [str(p) for p in problems] == [
        f"{source}:1: expected a JSON object, got array",
        f"{source}:2: expected a JSON object, got string",
    ]
    assert summaries[0].invalid == 2


def test_system_prompt_goes_into_conversational_prompts(tmp_path: Path) -> None:
    records = [
        {
            "prompt": [{"role": "user", "content": f"q{i}"}],
            "completion": [{"role": "assistant", "content": f"a{i}"}],
        }
        for i in range(4)
    ]
    result = prepare(tmp_path, records, system_prompt="Be warm.")
    for record in all_records(result.out):
        assert record["prompt"][0] == {"role": "system", "content": "Be warm."}
