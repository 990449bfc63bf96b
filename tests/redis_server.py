"""A real Redis server for tests: Debian's `redis-server`, started once per session on a
free loopback port, persisting nothing, stopped at the end.

Without the binary the tests that need it are skipped, except under CI (`CI` or
`TESTS_REQUIRE_REDIS` set), where they fail and say what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.servers import free_port

INSTALL_HINT = "apt-get install -y redis-server (Debian; .ci/run does it)"
_START_TIMEOUT_S = 30


def _redis_required() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("TESTS_REQUIRE_REDIS"))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        if _redis_required():
            pytest.fail(f"no redis-server binary: {INSTALL_HINT}")
        pytest.skip(f"no redis-server binary: {INSTALL_HINT}")
    redis = pytest.importorskip("redis", reason="the redis package (the dev extra installs it)")
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + _START_TIMEOUT_S
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert server.poll() is None, "redis-server exited at start"
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)
    client.close()
    try:
        yield f"redis://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)
