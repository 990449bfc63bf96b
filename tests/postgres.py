"""A real PostgreSQL server for tests: a throwaway cluster, started once per session.

Debian's `postgresql` package provides the binaries (`/usr/lib/postgresql/<N>/bin`). The
server refuses to run as root, so as root the cluster belongs to the `postgres` user the
package creates; as anyone else, to that user. It listens on 127.0.0.1 on a free port,
trusts every local connection, and is stopped and deleted at the end of the session.
Each test gets a database of its own (`postgres_url`).

Without the binaries the tests that need them are skipped, except under CI (`CI` or
`TESTS_REQUIRE_POSTGRES` set), where they fail and say what to install.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.servers import free_port

POSTGRES_ROOT = Path("/usr/lib/postgresql")
INSTALL_HINT = "apt-get install -y postgresql (Debian; .ci/run does it)"
SUPERUSER = "lorastack"
_START_TIMEOUT_S = 60
_databases = itertools.count(1)


def _postgres_required() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("TESTS_REQUIRE_POSTGRES"))


def find_postgres_bin() -> Path | None:
    """The newest installed server's bin folder, or None."""
    found = [p for p in POSTGRES_ROOT.glob("*/bin/initdb") if p.parts[-3].isdigit()]
    if not found:
        return None
    return max(found, key=lambda p: int(p.parts[-3])).parent


def _as_server_user(argv: list[str]) -> list[str]:
    # initdb and postgres refuse root; the package's `postgres` user owns the cluster.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _run(argv: list[str], what: str, log: Path | None = None) -> None:
    done = subprocess.run(
        _as_server_user(argv), capture_output=True, text=True, timeout=_START_TIMEOUT_S
    )
    if done.returncode != 0:
        server_log = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
        pytest.fail(
            f"PostgreSQL: {what} failed ({done.returncode}): "
            f"{done.stderr.strip() or done.stdout.strip()}\n{server_log}"
        )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL of a running throwaway server's `postgres` database (superuser `lorastack`)."""
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        reason = f"no PostgreSQL server: /usr/lib/postgresql/*/bin/initdb missing; {INSTALL_HINT}"
        if _postgres_required():
            pytest.fail(reason)
        pytest.skip(reason)
    # Not under pytest's basetemp: its folders are private to this user, and the server
    # runs as another one. The folder holds the data, the log and the Unix socket.
    root = Path(tempfile.mkdtemp(prefix="lorastack-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
    data, log, port = root / "data", root / "server.log", free_port()
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log)]
    try:
        _run(
            [
                *(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", SUPERUSER),
                *("--no-sync", "--encoding=UTF8", "--locale=C"),
            ],
            "initdb",
        )
        # fsync off: a test server's data needs to survive nothing.
        options = f"-p {port} -k {root} -h 127.0.0.1 -c fsync=off"
        _run([*pg_ctl, "-o", options, "-w", "-t", str(_START_TIMEOUT_S), "start"], "start", log)
        try:
            yield f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(
                _as_server_user([*pg_ctl, "-m", "fast", "stop"]),
                capture_output=True,
                timeout=_START_TIMEOUT_S,
                check=False,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """URL of an empty database of this test's own on the session's server."""
    name = f"test_{os.getpid()}_{next(_databases)}"
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield postgres_server.rsplit("/", 1)[0] + f"/{name}"
        with admin.connect() as connection:
            # FORCE: a test that failed may have left a connection open.
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
