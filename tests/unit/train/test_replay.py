"""`lorastack.train.replay`: answers of the data prod learnt from, mixed into a KTO export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lorastack.guardrails.guard import Guard
from lorastack.guardrails.policy import default_policy
from lorastack.manifest import AdapterManifest
from lorastack.rules import parse_rules
from lorastack.train.data import SPLITS, DataError
from lorastack.train.feedback_export import export_feedback
from lorastack.train.feedback_report import ReplaySource
from lorastack.train.replay import Replay, ReplayOptions, load_replay, replay_rows
from lorastack.train.run import dataset_sha256
from tests.fakes import RegexDetector
from tests.unit.train.test_feedback_export import VOICE, Feedback, assistant

RULES = parse_rules([{"name": "ahoy", "starts_with": "Ahoy!"}], "rules")


def chat(question: str, answer: str) -> dict[str, Any]:
    return {"messages": [VOICE, {"role": "user", "content": question}, *assistant(answer)]}


def rated(count: int = 20) -> Feedback:
    """`count` answers of `coffee`, every other one up-voted."""
    f = Feedback()
    for n in range(count):
        f.exchange(f"e{n}", f"Feedback question {n}?", f"Feedback answer {n}.", n)
        f.rate(f"e{n}", 1 if n % 2 else -1, 100 + n)
    return f


def replay(count: int = 40, **options: Any) -> Replay:
    """`count` old chats that follow the rule, as replay rows."""
    records = [chat(f"Old question {n}?", f"Ahoy! Old answer {n}.") for n in range(count)]
    rows, _, _ = replay_rows(records, RULES)
    options.setdefault("share", 1.0)
    source = ReplaySource(version="coffee@v1", dataset_sha256="ab" * 32)
    return Replay(ReplayOptions(**options), rows, source)


def splits(out: Path) -> dict[str, list[dict[str, Any]]]:
    return {
        split: [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]
        for split in SPLITS
    }


def is_replayed(row: dict[str, Any]) -> bool:
    return "Old question" in json.dumps(row["prompt"])


def test_a_chat_s_last_answer_is_a_desirable_row_unless_it_breaks_a_rule() -> None:
    records = [
        chat("Open today?", "Ahoy! Yes, until 9."),
        chat("Fares?", "Twelve dollars."),  # breaks the rule: left out
        {"messages": [VOICE, {"role": "user", "content": "No answer yet"}]},
        {"prompt": "plain", "completion": "text"},
    ]
    rows, not_answers, breaking = replay_rows(records, RULES)
    assert rows == [
        {
            "prompt": [VOICE, {"role": "user", "content": "Open today?"}],
            "completion": assistant("Ahoy! Yes, until 9."),
            "label": True,
        }
    ]
    assert (not_answers, breaking) == (2, 1)


def test_replay_rows_join_the_train_split_only_as_desirable_rows(tmp_path: Path) -> None:
    result = export_feedback(rated().store, "coffee", "kto", tmp_path / "out", replay=replay())
    found = splits(result.out)
    replayed = [row for row in found["train"] if is_replayed(row)]
    feedback_train = len(found["train"]) - len(replayed)
    assert feedback_train == 16  # 80% of 20
    assert len(replayed) == feedback_train  # share 1: one per feedback row of the train split
    assert all(row["label"] is True for row in replayed)
    assert not any(is_replayed(row) for split in ("validation", "test") for row in found[split])
    # What went in is recorded for the user: export.json, export.md, the data report.
    exported = json.loads((result.out / "export.json").read_text())["replay"]
    assert exported["added"] == exported["wanted"] == 16 and exported["version"] == "coffee@v1"
    assert (exported["share"], exported["seed"]) == (1.0, 42)
    assert "## Replay" in (result.out / "export.md").read_text()
    data = json.loads((result.out / "report.json").read_text())
    assert data["splits"]["train"] == 32
    assert any(note.startswith("replay: 16 desirable rows") for note in data["notes"])


def test_the_share_sets_the_count_up_to_what_there_is(tmp_path: Path) -> None:
    half = export_feedback(
        rated().store, "coffee", "kto", tmp_path / "half", replay=replay(share=0.5)
    )
    assert sum(map(is_replayed, splits(half.out)["train"])) == 8
    few = export_feedback(rated().store, "coffee", "kto", tmp_path / "few", replay=replay(5))
    assert sum(map(is_replayed, splits(few.out)["train"])) == 5
    assert few.report.replay is not None and few.report.replay.wanted == 5


def test_replay_is_deterministic_under_its_seed(tmp_path: Path) -> None:
    def train(name: str, seed: int) -> str:
        out = export_feedback(
            rated().store, "coffee", "kto", tmp_path / name, replay=replay(seed=seed)
        ).out
        return (out / "train.jsonl").read_text()

    assert train("a", 7) == train("b", 7)
    assert train("a", 7) != train("c", 8)


@pytest.mark.parametrize("off", ["none", "share 0"])
def test_no_replay_rows_when_it_is_off(tmp_path: Path, off: str) -> None:
    given = None if off == "none" else replay(share=0)
    result = export_feedback(rated().store, "coffee", "kto", tmp_path / "out", replay=given)
    assert not any(is_replayed(row) for rows in splits(result.out).values() for row in rows)
    exported = json.loads((result.out / "export.json").read_text())
    assert ("replay" in exported) == (given is not None)
    if given is not None:
        assert exported["replay"]["added"] == 0


def test_a_feedback_row_s_prompt_and_answer_are_never_replayed(tmp_path: Path) -> None:
    f = Feedback()
    for n in range(5):
        f.exchange(f"e{n}", f"Old question {n}?", f"Ahoy! Old answer {n}.", n)
        f.rate(f"e{n}", -1, 100 + n)  # users' ratings win over the reference answer
    result = export_feedback(f.store, "coffee", "kto", tmp_path / "out", replay=replay(5))
    assert result.report.replay is not None
    assert result.report.replay.feedback_duplicates == 5 and result.report.replay.added == 0
    assert all(row["label"] is False for rows in splits(result.out).values() for row in rows)


def test_replay_rows_are_scrubbed_again(tmp_path: Path) -> None:
    rows, _, _ = replay_rows([chat("Who booked?", "Ahoy! Jane Porter booked it.")], RULES)
    given = Replay(ReplayOptions(share=1.0), rows, ReplaySource(version="coffee@v1"))
    guard = Guard(default_policy(), RegexDetector())
    result = export_feedback(
        rated().store, "coffee", "kto", tmp_path / "out", scrub=guard, replay=given
    )
    text = (result.out / "train.jsonl").read_text()
    assert "Who booked?" in text and "Jane Porter" not in text


def test_dpo_takes_no_replay(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="kto only"):
        export_feedback(rated().store, "coffee", "dpo", tmp_path / "out", replay=replay())


def _prepared(folder: Path) -> Path:
    folder.mkdir()
    for split in SPLITS:
        rows = [chat(f"{split} question {n}?", f"Ahoy! {split} answer {n}.") for n in range(4)]
        rows.append(chat(f"{split} rude?", "No."))  # breaks the rule
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _prod(data: Path, **fields: Any) -> AdapterManifest:
    return AdapterManifest.model_construct(
        domain="coffee",
        version=3,
        system_prompt="You are the barista at Bean There.",
        dataset_sha256=dataset_sha256(data),
        training={"mode": "instruct", "data": str(data)},
        rules=RULES,
        **fields,
    )


def test_replay_is_drawn_from_prod_s_train_split_never_its_test_split(tmp_path: Path) -> None:
    data = _prepared(tmp_path / "data")
    found = load_replay(_prod(data), None, tmp_path / "runs", ReplayOptions(share=1.0))  # type: ignore[arg-type]
    assert (found.source.version, found.source.path, found.source.read) == (
        "coffee@v3",
        str(data),
        5,
    )
    assert found.source.breaking_rules == 1 and len(found.rows) == 4
    assert all("train question" in json.dumps(row["prompt"]) for row in found.rows)
    assert found.system_prompt == "You are the barista at Bean There."


def test_data_that_cannot_be_found_replays_nothing_and_says_why(tmp_path: Path) -> None:
    data = _prepared(tmp_path / "data")
    prod = _prod(data)
    moved = AdapterManifest.model_construct(
        **{**dict(prod), "training": {"mode": "instruct", "data": str(tmp_path / "gone")}}
    )
    found = load_replay(moved, None, tmp_path / "runs")  # type: ignore[arg-type]
    assert found.rows == [] and "no prepared dataset with the hash" in found.unavailable
    result = export_feedback(rated().store, "coffee", "kto", tmp_path / "out", replay=found)
    assert result.report.replay is not None and result.report.replay.added == 0
    assert "Nothing replayed: no prepared dataset" in (result.out / "export.md").read_text()


def test_replay_is_off_by_default(tmp_path: Path) -> None:
    rows, _, _ = replay_rows([chat("Old question?", "Ahoy! Old answer.")], RULES)
    result = export_feedback(
        rated().store, "coffee", "kto", tmp_path / "out", replay=Replay(ReplayOptions(), rows)
    )
    assert ReplayOptions().share == 0 and result.report.replay is not None
    assert result.report.replay.added == 0


def test_replay_share_must_not_be_negative() -> None:
    with pytest.raises(DataError, match="replay share must be 0 or more"):
        ReplayOptions(share=-1)
