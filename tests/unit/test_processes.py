"""`ChildProcess` on its own: readiness means a 200, and a child given up on is stopped."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from lorastack.processes import ChildProcess, ChildProcessFailed
from tests.servers import free_port

UNHEALTHY = """
import http.server, sys
class Busy(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def do_GET(self):
        self.send_response(503)
        self.end_headers()
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Busy).serve_forever()
"""


def test_a_child_that_answers_but_never_200_is_stopped_after_the_deadline(
    tmp_path: Path,
) -> None:
    script = tmp_path / "busy.py"
    script.write_text(textwrap.dedent(UNHEALTHY))
    port = free_port()
    child = ChildProcess("worker", [sys.executable, str(script), str(port)], tmp_path / "log")
    with child:
        with pytest.raises(ChildProcessFailed, match="worker did not become healthy within 2 s"):
            child.wait_ready(f"http://127.0.0.1:{port}/ready", timeout_s=2, interval_s=0.1)
        assert not child.alive()


def test_a_child_never_started_is_not_alive(tmp_path: Path) -> None:
    child = ChildProcess("worker", [sys.executable, "-c", "pass"], tmp_path / "log")
    assert not child.alive() and child.pid is None
    with pytest.raises(ChildProcessFailed, match="never started"):
        child.check_alive()
