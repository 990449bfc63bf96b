"""`lorastack feedback export`, in-process, on the in-memory store and the regex PII fake."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer

from lorastack.cli.feedback_export import parse_since
from tests.fake_feedback import MemoryFeedbackStore
from tests.unit.train.test_feedback_export import T0, Feedback

pytestmark = pytest.mark.usefixtures("fake_pii_detector")


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> Callable[[MemoryFeedbackStore], None]:
    """Make the command open the given in-memory store instead of the database."""
    import lorastack.db

    def use(store: MemoryFeedbackStore) -> None:
        @contextmanager
        def open_store(settings: Any) -> Iterator[MemoryFeedbackStore]:
            yield store

        monkeypatch.setattr(lorastack.db, "open_feedback_store", open_store)

    return use


def filled() -> Feedback:
    f = Feedback()
    f.exchange("a", "Is my order ready?", "Not yet.", 0)
    f.rate("a", -1, 1, correction="Yes, Jane Porter has it at the counter. ☕")
    f.exchange("b", "Any vegan cakes?", "No.", 2)
    f.rate("b", -1, 3, correction="Yes, carrot cake. ☕")
    f.exchange("c", "Do you deliver?", "No, sorry.", 4)
    f.rate("c", -1, 5)
    f.exchange("d", "Do you deliver?", "Yes, within two miles. ☕", 6)  # c's retry
    f.rate("d", 1, 7)
    f.exchange("e", "Oat milk?", "Yes! ☕", 8)
    f.rate("e", 1, 9)
    return f


def test_export_prints_the_folder_last_and_scrubs_by_default(
    cli: Any, opened: Callable[[MemoryFeedbackStore], None], tmp_path: Path
) -> None:
    opened(filled().store)
    out = tmp_path / "dpo"
    result = cli("feedback", "export", "--domain", "coffee", "--format", "dpo", "--out", str(out))
    assert result.code == 0, result.err
    assert result.last_line == str(out)
    assert (out / "export.md").is_file() and (out / "report.md").is_file()
    text = "".join((out / f"{s}.jsonl").read_text() for s in ("train", "validation", "test"))
    assert "Jane Porter" not in text and "<PERSON_1>" in text
    assert json.loads((out / "export.json").read_text())["rows"] == {
        "total": 3,
        "correction": 2,
        "retry_pair": 1,
    }
    assert "5 exchanges, 5 rated: 3 dpo rows (correction 2, retry_pair 1)" in result.err
    assert "kept 3 rows (train 1, validation 1, test 1)" in result.err


def test_since_and_no_scrub(
    cli: Any, opened: Callable[[MemoryFeedbackStore], None], tmp_path: Path
) -> None:
    opened(filled().store)
    out = tmp_path / "sft"
    since = (T0 + timedelta(minutes=2)).isoformat()
    args = ("--domain", "coffee", "--format", "sft", "--out", str(out), "--no-scrub")
    result = cli("feedback", "export", *args, "--since", since)
    assert result.code == 0, result.err
    exported = json.loads((out / "export.json").read_text())
    assert exported["since"] == since and exported["exchanges"]["read"] == 4
    assert json.loads((out / "report.json").read_text())["pii"]["scrubbed"] is False


def test_refusals_are_one_clear_line(
    cli: Any, opened: Callable[[MemoryFeedbackStore], None], tmp_path: Path
) -> None:
    opened(filled().store)
    base = ("feedback", "export", "--domain", "coffee", "--out", str(tmp_path / "x"))
    bad_format = cli(*base, "--format", "orpo")
    assert bad_format.code == 2 and "'orpo' is not one of kto, dpo, sft" in bad_format.err
    bad_since = cli(*base, "--format", "kto", "--since", "last week")
    assert bad_since.code == 2 and "expected a date (2026-12-01)" in bad_since.err
    too_few = cli(*base, "--format", "dpo", "--since", "2099-01-01")
    assert too_few.code == 1 and "gives 0 dpo rows" in too_few.err
    assert "Traceback" not in too_few.err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", datetime(2026, 12, 3, 12, tzinfo=UTC)),
        ("12h", datetime(2026, 12, 10, 0, tzinfo=UTC)),
        ("2w", datetime(2026, 11, 26, 12, tzinfo=UTC)),
        ("2026-12-01", datetime(2026, 12, 1, tzinfo=UTC)),
        ("2026-12-01T09:30:00", datetime(2026, 12, 1, 9, 30, tzinfo=UTC)),
        ("2026-12-01T09:30:00+01:00", datetime(2026, 12, 1, 8, 30, tzinfo=UTC)),
    ],
)
def test_parse_since(text: str, expected: datetime) -> None:
    now = datetime(2026, 12, 10, 12, tzinfo=UTC)
    assert parse_since(text, now) == expected


def test_parse_since_refuses_the_rest() -> None:
    for text in ("yesterday", "7 days", "-3d", "2026-13-01"):
        with pytest.raises(typer.BadParameter):
            parse_since(text)
