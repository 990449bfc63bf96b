"""Progress: bars on a terminal; in a log, plain lines at a steady pace with the time left."""

from __future__ import annotations

import io

from rich.console import Console

from lorastack.progress import LogProgress, RichProgress, progress_display


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_log_gets_a_line_every_few_percent_with_the_time_left() -> None:
    lines: list[str] = []
    clock = Clock()
    with LogProgress(lines.append, every_percent=25, every_s=1000, clock=clock) as progress:
        progress.step("training shop", total=100)
        for _ in range(100):
            clock.now += 1.0
            progress.advance(1)
            progress.detail("loss 1.500")
    assert lines[0] == "training shop ..."
    assert lines[1] == "training shop: 25/100 (25%), about 1 min 15 s left, loss 1.500"
    assert [line.split(":")[1].split(",")[0] for line in lines[1:5]] == [
        " 25/100 (25%)",
        " 50/100 (50%)",
        " 75/100 (75%)",
        " 100/100 (100%)",
    ]
    assert lines[-1] == "training shop: done in 1 min 40 s, loss 1.500"
    assert len(lines) == 6


def test_a_quick_step_gets_its_first_and_last_line_only() -> None:
    lines: list[str] = []
    clock = Clock()
    with LogProgress(lines.append, clock=clock) as progress:
        progress.step("reading chat.jsonl", total=200)
        for _ in range(200):
            clock.now += 0.001
            progress.advance(1)
    assert lines == ["reading chat.jsonl ...", "reading chat.jsonl: done in 0 s"]


def test_a_slow_step_gets_a_line_every_few_seconds_even_without_a_size() -> None:
    lines: list[str] = []
    clock = Clock()
    progress = LogProgress(lines.append, every_percent=5, every_s=10, clock=clock)
    progress.step("waiting for the gateway")
    for _ in range(30):  # a heartbeat every second for 30 s
        clock.now += 1.0
        progress.advance(0)
    assert lines == [
        "waiting for the gateway ...",
        "waiting for the gateway: 10 s so far",
        "waiting for the gateway: 20 s so far",
        "waiting for the gateway: 30 s so far",
    ]
    progress.step("next")
    assert lines[-2:] == ["waiting for the gateway: done in 30 s", "next ..."]


def test_a_failed_step_is_not_reported_done() -> None:
    lines: list[str] = []
    try:
        with LogProgress(lines.append) as progress:
            progress.step("training shop", total=10)
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert lines == ["training shop ..."]


def test_the_display_is_bars_on_a_terminal_and_lines_in_a_file() -> None:
    assert isinstance(
        progress_display(Console(file=io.StringIO(), force_terminal=True)), RichProgress
    )
    log = io.StringIO()
    with progress_display(Console(file=log, force_terminal=False, width=40)) as progress:
        progress.step("a step whose description is longer than forty columns", total=2)
        progress.advance(2)
    # One line per event, never wrapped at the console's width, no markup codes.
    assert log.getvalue().splitlines() == [
        "a step whose description is longer than forty columns ...",
        "a step whose description is longer than forty columns: done in 0 s",
    ]
