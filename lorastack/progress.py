"""Progress reporting for long work, decoupled from how it is displayed.

Library functions take a `Progress` and call `step`/`advance`; the CLI passes a
`RichProgress` that draws bars on the terminal, tests pass nothing.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import (
    Progress as _RichBars,
)


class Progress(Protocol):
    def step(self, description: str, total: int | None = None) -> None:
        """Start a new step; `total` (in bytes) when its size is known."""

    def advance(self, amount: int) -> None:
        """Report `amount` more bytes done in the current step."""


class NullProgress:
    """Reports nothing."""

    def step(self, description: str, total: int | None = None) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass


class RichProgress:
    """One line per step on stderr: a spinner, or a bar when the size is known."""

    def __init__(self, console: Console | None = None) -> None:
        self._bars = _RichBars(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> RichProgress:
        self._bars.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._finish_current()
        self._bars.stop()

    def _finish_current(self) -> None:
        if self._task is not None:
            task = self._bars.tasks[self._task]
            self._bars.update(self._task, total=task.total or 1, completed=task.total or 1)

    def step(self, description: str, total: int | None = None) -> None:
        self._finish_current()
        self._task = self._bars.add_task(description, total=total)

    def advance(self, amount: int) -> None:
        if self._task is not None:
            self._bars.advance(self._task, amount)
