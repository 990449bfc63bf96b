"""`lorastack.train.feedback_export`: rated exchanges into KTO, DPO and SFT datasets."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lorastack.feedback import Exchange, Rating, Vote, key_hash
from lorastack.guardrails.guard import Guard
from lorastack.guardrails.policy import default_policy
from lorastack.train.data import SPLITS, DataError, PrepareOptions, prepare_splits, write_dataset
from lorastack.train.feedback_export import collect_rows, export_feedback
from tests.fake_feedback import MemoryFeedbackStore
from tests.fakes import RegexDetector

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
VOICE = {"role": "system", "content": "You are the barista at Bean There."}


def conversation(question: str) -> list[dict[str, Any]]:
    return [VOICE, {"role": "user", "content": question}]


def assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


class Feedback:
    """A store filled one exchange and one rating at a time, minutes after T0."""

    def __init__(self) -> None:
        self.store = MemoryFeedbackStore()

    def exchange(
        self,
        response_id: str,
        question: str,
        answer: str,
        minute: int,
        key: str | None = "key-a",
        domain: str = "coffee",
    ) -> None:
        self.store.add_exchanges(
            [
                Exchange(
                    response_id=response_id,
                    domain=domain,
                    version=1,
                    key_hash=key_hash(key),
                    messages=conversation(question),
                    answer=answer,
                    latency_s=0.2,
                    created_at=T0 + timedelta(minutes=minute),
                )
            ]
        )

    def rate(
        self, response_id: str, vote: Vote, minute: int, correction: str | None = None
    ) -> None:
        self.store.add_rating(
            Rating(
                response_id,
                vote,
                key_hash("key-a"),
                correction=correction,
                created_at=T0 + timedelta(minutes=minute),
            )
        )


@pytest.fixture
def feedback() -> Feedback:
    """Eight exchanges of `coffee` (one never rated) and one of another domain."""
    f = Feedback()
    f.exchange("e1", "Do you have oat milk?", "Yes, we do! ☕", 1)
    f.rate("e1", 1, 2)
    f.exchange("e2", "Are you open on Sundays?", "No.", 3)
    f.rate("e2", -1, 4, correction="Yes, from 9 to 5 on Sundays. ☕")
    f.exchange("e3", "How much is a latte?", "A latte is 3 pounds.", 5)
    f.rate("e3", 1, 6)
    f.rate("e3", -1, 7)  # changed their mind: the latest rating wins
    f.exchange("e4", "Do you sell beans?", "I don't know.", 8)
    f.rate("e4", -1, 9)
    f.exchange("e5", "Do you sell beans?", "Yes, whole and ground. ☕", 10)  # the retry
    f.rate("e5", 1, 11)
    f.exchange("e6", "Where are you?", "On the high street. ☕", 12)  # never rated
    f.exchange("e7", "Can I bring my dog?", "Yes, dogs are welcome. ☕", 13)
    f.rate("e7", 1, 14, correction="Yes,  dogs are welcome. ☕\n")  # only spacing differs
    f.exchange("e8", "Do you have decaf?", "We only serve coffee.", 15)
    f.rate("e8", -1, 16, correction="Yes, decaf espresso all day. ☕")
    f.exchange("x1", "Do you have oat milk?", "Elsewhere.", 17, domain="tea")
    f.rate("x1", 1, 18)
    return f


def kto(question: str, answer: str, label: bool) -> dict[str, Any]:
    return {"prompt": conversation(question), "completion": assistant(answer), "label": label}


def rows_of(f: Feedback, fmt: Any) -> list[dict[str, Any]]:
    return [row.record for row in collect_rows(f.store, "coffee", fmt)[0]]


def read_all(out: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for split in SPLITS
        for line in (out / f"{split}.jsonl").read_text().splitlines()
    ]


# -- rows of each format -------------------------------------------------------------


def test_kto_rows_label_every_rated_answer_and_every_correction(feedback: Feedback) -> None:
    rows, report = collect_rows(feedback.store, "coffee", "kto")
    assert [row.record for row in rows] == [
        kto("Do you have oat milk?", "Yes, we do! ☕", True),
        kto("Are you open on Sundays?", "No.", False),
        kto("Are you open on Sundays?", "Yes, from 9 to 5 on Sundays. ☕", True),
        kto("How much is a latte?", "A latte is 3 pounds.", False),
        kto("Do you sell beans?", "I don't know.", False),
        kto("Do you sell beans?", "Yes, whole and ground. ☕", True),
        kto("Can I bring my dog?", "Yes, dogs are welcome. ☕", True),
        kto("Do you have decaf?", "We only serve coffee.", False),
        kto("Do you have decaf?", "Yes, decaf espresso all day. ☕", True),
    ]
    data = report.to_dict()
    assert data["exchanges"] == {"read": 8, "rated": 7}
    assert data["ratings"] == {"total": 8, "latest": {"up": 3, "down": 4}, "corrections": 3}
    assert data["rows"] == {"total": 9, "upvoted_answer": 3, "downvoted_answer": 4, "correction": 2}
    assert data["labels"] == {"true": 5, "false": 4}
    assert data["dropped"] == {
        "no_rating": 1,
        "superseded_rating": 1,
        "correction_same_as_answer": 1,
    }


def test_dpo_rows_are_corrections_and_retry_pairs(feedback: Feedback) -> None:
    rows, report = collect_rows(feedback.store, "coffee", "dpo")
    assert [(row.record, row.source) for row in rows] == [
        (
            {
                "prompt": conversation("Are you open on Sundays?"),
                "chosen": assistant("Yes, from 9 to 5 on Sundays. ☕"),
                "rejected": assistant("No."),
            },
            "correction",
        ),
        (
            {
                "prompt": conversation("Do you sell beans?"),
                "chosen": assistant("Yes, whole and ground. ☕"),
                "rejected": assistant("I don't know."),
            },
            "retry_pair",
        ),
        (
            {
                "prompt": conversation("Do you have decaf?"),
                "chosen": assistant("Yes, decaf espresso all day. ☕"),
                "rejected": assistant("We only serve coffee."),
            },
            "correction",
        ),
    ]
    assert report.to_dict()["rows"] == {"total": 3, "correction": 2, "retry_pair": 1}
    # e1 (up, no retry) and e3 (down, never retried) give nothing; e7's correction is its
    # answer; e5 is the chosen side of a pair.
    assert report.dropped == {
        "no_rating": 1,
        "superseded_rating": 1,
        "correction_same_as_answer": 1,
        "no_correction_or_retry": 2,
        "retry_not_rated": 0,
        "retry_same_answer": 0,
    }


def test_sft_rows_are_up_voted_answers_and_corrections(feedback: Feedback) -> None:
    rows, report = collect_rows(feedback.store, "coffee", "sft")
    chats = [row.record["messages"] for row in rows]
    assert chats == [
        [*conversation("Do you have oat milk?"), *assistant("Yes, we do! ☕")],
        [*conversation("Are you open on Sundays?"), *assistant("Yes, from 9 to 5 on Sundays. ☕")],
        [*conversation("Do you sell beans?"), *assistant("Yes, whole and ground. ☕")],
        [*conversation("Can I bring my dog?"), *assistant("Yes, dogs are welcome. ☕")],
        [*conversation("Do you have decaf?"), *assistant("Yes, decaf espresso all day. ☕")],
    ]
    assert all(chat[0] == VOICE for chat in chats)  # the brand voice stays
    assert report.to_dict()["rows"] == {"total": 5, "upvoted_answer": 3, "correction": 2}
    assert report.dropped["down_vote_without_correction"] == 2  # e3 and e4


def test_the_latest_rating_wins(feedback: Feedback) -> None:
    feedback.rate("e1", -1, 30)  # e1 was up; now down
    feedback.rate("e2", 1, 31)  # e2 was down with a correction; now up without one
    rows = rows_of(feedback, "kto")
    e1 = [r for r in rows if r["completion"] == assistant("Yes, we do! ☕")]
    assert [r["label"] for r in e1] == [False]
    sundays = [r for r in rows if r["prompt"] == conversation("Are you open on Sundays?")]
    assert sundays == [{**sundays[0], "completion": assistant("No."), "label": True}]
    _, report = collect_rows(feedback.store, "coffee", "kto")
    assert report.dropped["superseded_rating"] == 3
    assert report.to_dict()["ratings"]["corrections"] == 2  # e7 and e8; no longer e2


def test_since_limits_the_exchanges(feedback: Feedback) -> None:
    rows, report = collect_rows(feedback.store, "coffee", "kto", T0 + timedelta(minutes=13))
    assert report.exchanges == 2 and report.rated == 2
    assert [r.source for r in rows] == ["upvoted_answer", "downvoted_answer", "correction"]


def test_an_unknown_format_is_refused(feedback: Feedback) -> None:
    with pytest.raises(DataError, match="format 'orpo': expected one of kto, dpo, sft"):
        collect_rows(feedback.store, "coffee", "orpo")  # type: ignore[arg-type]


# -- retry pairs -----------------------------------------------------------------------


def retry(f: Feedback, first: tuple[str, Vote | None], then: tuple[str, Vote | None]) -> None:
    """One question asked twice: each side (key, vote or None) answered differently."""
    for number, (key, vote) in enumerate((first, then)):
        response_id = f"r{number}"
        f.exchange(response_id, "Any vegan cakes?", f"Answer {number}.", number * 10, key=key)
        if vote is not None:
            f.rate(response_id, vote, number * 10 + 1)


def test_a_down_voted_answer_and_its_up_voted_retry_are_a_pair() -> None:
    f = Feedback()
    retry(f, ("key-a", -1), ("key-a", 1))
    rows, report = collect_rows(f.store, "coffee", "dpo")
    assert [(r.record, r.source) for r in rows] == [
        (
            {
                "prompt": conversation("Any vegan cakes?"),
                "chosen": assistant("Answer 1."),
                "rejected": assistant("Answer 0."),
            },
            "retry_pair",
        )
    ]
    assert report.dropped["no_correction_or_retry"] == 0


def test_a_keyless_gateway_pairs_retries_too() -> None:
    f = Feedback()
    retry(f, (None, -1), (None, 1))
    assert len(rows_of(f, "dpo")) == 1


@pytest.mark.parametrize(
    ("first", "then", "reason"),
    [
        (("key-a", -1), ("key-b", 1), "no_correction_or_retry"),  # another client
        (("key-a", 1), ("key-a", -1), "no_correction_or_retry"),  # up first, then down
        (("key-a", -1), ("key-a", -1), "no_correction_or_retry"),  # both down
        (("key-a", -1), ("key-a", None), "retry_not_rated"),  # the retry has no rating
    ],
)
def test_what_is_not_a_retry_pair(
    first: tuple[str, Vote | None], then: tuple[str, Vote | None], reason: str
) -> None:
    f = Feedback()
    retry(f, first, then)
    rows, report = collect_rows(f.store, "coffee", "dpo")
    assert rows == []
    assert report.dropped[reason] >= 1
    rated = sum(vote is not None for _, vote in (first, then))
    assert report.dropped["no_correction_or_retry"] + report.dropped["retry_not_rated"] == rated


def test_a_retry_with_the_same_answer_gives_no_pair() -> None:
    f = Feedback()
    f.exchange("a", "Any vegan cakes?", "Maybe.", 0)
    f.rate("a", -1, 1)
    f.exchange("b", "Any vegan cakes?", "Maybe. ", 2)
    f.rate("b", 1, 3)
    rows, report = collect_rows(f.store, "coffee", "dpo")
    assert rows == []
    assert report.dropped["retry_same_answer"] == 1
    assert report.dropped["no_correction_or_retry"] == 1  # the up-voted one


# -- the prepared dataset ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "record_format", "rows"),
    [("kto", "unpaired-preference", 9), ("dpo", "preference", 3), ("sft", "messages", 5)],
)
def test_export_writes_a_prepared_dataset_and_its_report(
    feedback: Feedback, tmp_path: Path, fmt: Any, record_format: str, rows: int
) -> None:
    out = tmp_path / fmt
    result = export_feedback(feedback.store, "coffee", fmt, out)
    assert result.out == out
    assert sorted(p.name for p in out.iterdir()) == [
        "export.json",
        "export.md",
        "report.json",
        "report.md",
        "test.jsonl",
        "train.jsonl",
        "validation.jsonl",
    ]
    assert len(read_all(out)) == rows
    report = json.loads((out / "report.json").read_text())
    assert report["format"] == record_format
    assert report["sources"][0]["path"] == "feedback of coffee"
    assert all(report["splits"][split] >= 1 for split in SPLITS)
    exported = json.loads((out / "export.json").read_text())
    assert exported["format"] == fmt and exported["rows"]["total"] == rows
    assert exported["prepared"]["kept"] == rows
    markdown = (out / "export.md").read_text()
    assert (
        "# Feedback export" in markdown and "| no_rating | 1 | exchanges nobody rated |" in markdown
    )
    assert "see export.md" in (out / "report.md").read_text()


def test_kto_splits_are_stratified_by_label(feedback: Feedback, tmp_path: Path) -> None:
    result = export_feedback(feedback.store, "coffee", "kto", tmp_path / "kto")
    assert result.data.stratified
    assert result.data.labels["test"] == {"false": 1} or result.data.labels["test"] == {"true": 1}
    labels = result.data.labels.values()
    assert {name: sum(split.get(name, 0) for split in labels) for name in ("true", "false")} == {
        "true": 5,
        "false": 4,
    }


def test_duplicate_rows_are_dropped_by_the_data_checks(feedback: Feedback, tmp_path: Path) -> None:
    # Another client asks the same and gets the same answer, up-voted: the same SFT row.
    feedback.exchange("e9", "Do you have oat milk?", "Yes, we do! ☕", 20, key="key-b")
    feedback.rate("e9", 1, 21)
    result = export_feedback(feedback.store, "coffee", "sft", tmp_path / "sft")
    assert result.report.to_dict()["rows"]["total"] == 6
    assert result.data.kept == 5 and result.data.dropped["duplicate_exact"] == 1


def test_corrections_are_scrubbed_again(tmp_path: Path) -> None:
    f = Feedback()
    # The exchange was masked by the gateway; the correction a person typed was not.
    f.exchange("a", "Is my order ready, I'm <PERSON_1>?", "Not yet, <PERSON_1>.", 0)
    f.rate("a", -1, 1, correction="Yes! Jane Porter picked it up for you, <PERSON_1>. ☕")
    f.exchange("b", "Any vegan cakes?", "No.", 2)
    f.rate("b", -1, 3, correction="Yes, carrot cake. ☕")
    f.exchange("c", "Do you deliver?", "No, sorry.", 4)
    f.rate("c", -1, 5, correction="Yes, within two miles. ☕")
    guard = Guard(default_policy(), RegexDetector())
    result = export_feedback(f.store, "coffee", "dpo", tmp_path / "dpo", scrub=guard)
    text = "\n".join((result.out / f"{s}.jsonl").read_text() for s in SPLITS)
    assert "Jane Porter" not in text
    # A new value never gets a placeholder the conversation already uses.
    expected = {
        "prompt": conversation("Is my order ready, I'm <PERSON_1>?"),
        "chosen": assistant("Yes! <PERSON_2> picked it up for you, <PERSON_1>. ☕"),
        "rejected": assistant("Not yet, <PERSON_1>."),
    }
    assert expected in read_all(result.out)
    assert result.data.scrub is not None and result.data.scrub.entities["PERSON"] == 1


def test_too_few_rows_is_a_clear_error(feedback: Feedback, tmp_path: Path) -> None:
    since = T0 + timedelta(minutes=13)  # e7 (its correction is its answer) and e8
    with pytest.raises(DataError) as raised:
        export_feedback(feedback.store, "coffee", "dpo", tmp_path / "dpo", since=since)
    message = str(raised.value)
    assert "gives 1 dpo row;" in message
    assert "at least 3 are needed for train, validation and test splits" in message
    assert "2 exchanges read, 2 rated; left out: correction_same_as_answer 1" in message
    assert not (tmp_path / "dpo").exists()
    with pytest.raises(DataError, match="gives 0 kto rows"):
        export_feedback(feedback.store, "tea-house", "kto", tmp_path / "none")


def test_too_few_rows_after_the_data_checks(tmp_path: Path) -> None:
    f = Feedback()
    for number, key in enumerate(("key-a", "key-b", "key-c")):  # one answer, three clients
        f.exchange(f"e{number}", "Any vegan cakes?", "Yes, carrot cake. ☕", number * 2, key=key)
        f.rate(f"e{number}", 1, number * 2 + 1)
    with pytest.raises(DataError, match=r"1 of the 3 sft rows from the feedback of coffee pass"):
        export_feedback(f.store, "coffee", "sft", tmp_path / "sft")


def test_invalid_rows_are_dropped_and_named_by_response(feedback: Feedback, tmp_path: Path) -> None:
    feedback.store.add_exchanges(
        [
            Exchange(
                response_id="odd",
                domain="coffee",
                version=1,
                key_hash=None,
                messages=[{"role": "tool", "content": "{}"}, {"role": "user", "content": "Hi"}],
                answer="Hello! ☕",
                latency_s=0.1,
                created_at=T0 + timedelta(minutes=40),
            )
        ]
    )
    feedback.rate("odd", 1, 41)
    result = export_feedback(feedback.store, "coffee", "sft", tmp_path / "sft")
    assert result.data.dropped["invalid"] == 1
    assert result.data.invalid_examples == [
        "feedback of coffee: response odd (upvoted_answer): messages[0].role: "
        "expected one of system, user, assistant, got 'tool'"
    ]


@pytest.mark.parametrize("name", ["train.jsonl", "report.md", "../export.json", ".hidden"])
def test_extra_files_never_replace_the_dataset_s_own(tmp_path: Path, name: str) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(json.dumps(kto(f"Q{i}?", f"A{i}.", True)) + "\n" for i in range(3)),
    )
    prepared = prepare_splits([source], PrepareOptions(out=tmp_path / "out"))
    with pytest.raises(DataError, match="cannot write an extra file named"):
        write_dataset(tmp_path / "out", prepared, extra={name: "x"})
    assert not (tmp_path / "out").exists()
