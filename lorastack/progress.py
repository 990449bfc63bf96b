"""Progress reporting for long work, decoupled from how it is displayed.

Library functions take a `Progress` and call `step`/`advance`/`detail`; the CLI
passes `progress_display(console)`: bars on a terminal, and plain lines at a
steady pace where the output goes to a file (a log, `docker logs`, CI), where
live bars would print nothing. Tests pass nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import (
    Progress as _RichBars,
)


class Progress(Protocol):
    def step(self, description: str, total: int | None = None) -> None:
        """Start a new step; `total` units of work (bytes, training steps) when known."""

    def advance(self, amount: int) -> None:
        """Report `amount` more units of the current step done."""

    def detail(self, text: str) -> None:
        """Show `text` beside the current step (the latest loss, say), replacing the last."""


class NullProgress:
    """Reports nothing."""

    def step(self, description: str, total: int | None = None) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass

    def detail(self, text: str) -> None:
        pass


class ProgressDisplay(Progress, Protocol):
    """A `Progress` that the CLI opens and closes around its work."""

    def __enter__(self) -> ProgressDisplay: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class _Display:
    """Opened and closed around a command's work: the step under way when it closes is
    reported done, unless the work ended with an error (or Ctrl-C)."""

    def __enter__(self) -> Self:
        self._open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self._finish_current()
        self._close()

    def _open(self) -> None:
        pass

    def _close(self) -> None:
        pass

    def _finish_current(self) -> None:
        pass


def progress_display(console: Console) -> ProgressDisplay:
    """Bars when `console` is a terminal, plain lines otherwise."""
    if console.is_terminal:
        return RichProgress(console)

    def write(line: str) -> None:
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    return LogProgress(write)


class RichProgress(_Display):
    """One line per step on a terminal: a spinner, or a bar and the time left when the size
    is known."""

    def __init__(self, console: Console | None = None) -> None:
        self._bars = _RichBars(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[detail]}"),
            console=console or Console(stderr=True),
            transient=False,
        )
        self._task: TaskID | None = None

    def _open(self) -> None:
        self._bars.start()

    def _close(self) -> None:
        self._bars.stop()

    def _finish_current(self) -> None:
        if self._task is not None:
            task = self._bars.tasks[self._task]
            self._bars.update(self._task, total=task.total or 1, completed=task.total or 1)

    def step(self, description: str, total: int | None = None) -> None:
        self._finish_current()
        self._task = self._bars.add_task(description, total=total, detail="")

    def advance(self, amount: int) -> None:
        if self._task is not None:
            self._bars.advance(self._task, amount)

    def detail(self, text: str) -> None:
        if self._task is not None:
            self._bars.update(self._task, detail=text)


class LogProgress(_Display):
    """Plain lines for a log: each step as it starts and ends, and in between a line every
    `every_percent` of its size or every `every_s` seconds, whichever comes first, but
    never more often than every `min_s` seconds (a quick step gets its two lines only)."""

    def __init__(
        self,
        write: Callable[[str], object],
        every_percent: float = 5.0,
        every_s: float = 10.0,
        min_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self._every_percent = every_percent
        self._every_s = every_s
        self._min_s = min_s
        self._clock = clock
        self._description: str | None = None
        self._total: int | None = None
        self._done = 0
        self._detail = ""
        self._started = 0.0
        self._last_line = 0.0
        self._last_percent = 0.0

    def _close(self) -> None:
        self._description = None

    def step(self, description: str, total: int | None = None) -> None:
        self._finish_current()
        now = self._clock()
        self._description, self._total, self._done, self._detail = description, total, 0, ""
        self._started = self._last_line = now
        self._last_percent = 0.0
        self._write(f"{description} ...")

    def advance(self, amount: int) -> None:
        if self._description is None:
            return
        self._done += amount
        now = self._clock()
        percent = self._percent()
        since = now - self._last_line
        due = since >= self._every_s
        if percent is not None and percent - self._last_percent >= self._every_percent:
            due = due or since >= self._min_s
        if due:
            self._line(now)

    def detail(self, text: str) -> None:
        self._detail = text
        if self._description is not None and self._clock() - self._last_line >= self._every_s:
            self._line(self._clock())

    def _percent(self) -> float | None:
        if not self._total:
            return None
        return min(100.0, 100.0 * self._done / self._total)

    def _line(self, now: float) -> None:
        self._last_line = now
        percent = self._percent()
        parts = [f"{self._description}:"]
        if percent is not None and self._total is not None:
            self._last_percent = percent
            parts.append(f"{self._done}/{self._total} ({percent:.0f}%)")
            elapsed = now - self._started
            if 0 < self._done < self._total and elapsed > 0:
                left = elapsed * (self._total - self._done) / self._done
                parts.append(f"about {_duration(left)} left")
        else:
            parts.append(f"{_duration(now - self._started)} so far")
        if self._detail:
            parts.append(self._detail)
        self._write(", ".join([" ".join(parts[:2]), *parts[2:]]))

    def _finish_current(self) -> None:
        if self._description is None:
            return
        took = _duration(self._clock() - self._started)
        detail = f", {self._detail}" if self._detail else ""
        self._write(f"{self._description}: done in {took}{detail}")
        self._description = None


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
