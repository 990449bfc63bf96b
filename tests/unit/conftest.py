"""Fixtures for unit tests."""

import io
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from lorastack.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def last_line(self) -> str:
        return self.out.strip().splitlines()[-1]


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., "Result"]:
    """Run `lorastack ARGS...` in-process through its real entry point."""
    monkeypatch.setenv("COLUMNS", "200")
    # The consoles were made at import, whatever the terminal was then (none, under xdist).
    from lorastack.cli import context

    for console in (context.out, context.err):
        monkeypatch.setattr(console, "width", 200)

    def run(*args: str, stdin: str = "") -> Result:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        monkeypatch.setattr("sys.argv", ["lorastack", *args])
        code = 0
        try:
            main()
        except SystemExit as done:
            code = int(done.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run
