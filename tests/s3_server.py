"""An S3-compatible server for tests: moto's standalone server (PyPI `moto[server]`), an
emulator of AWS S3, since no real S3-compatible server (MinIO, SeaweedFS, Garage) installs
on these machines. Started once per session on a free loopback port, with one bucket and
one IAM user whose key is the only one it accepts; stopped at the end.

Without moto the tests that need it are skipped, except under CI (`CI` or
`TESTS_REQUIRE_S3` set), where they fail and say what to install.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.servers import free_port

INSTALL_HINT = "pip install 'moto[server]' s3fs (the dev extra installs them)"
_START_TIMEOUT_S = 60
_REGION = "us-east-1"
# Anything works before authentication is switched on; these never leave the test.
_BOOTSTRAP_KEY = "bootstrap-key"
_BOOTSTRAP_SECRET = "bootstrap-secret"
_ALLOW_ALL = (
    '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}'
)


def _s3_required() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("TESTS_REQUIRE_S3"))


@dataclass(frozen=True)
class S3Server:
    """A running emulator: its endpoint, a bucket, and the only credentials it accepts."""

    endpoint: str
    bucket: str
    key: str
    secret: str

    def options(self, **overrides: Any) -> dict[str, Any]:
        """fsspec/s3fs options for this server (`key`, `secret`, the endpoint); `overrides`
        replace any of them."""
        options: dict[str, Any] = {
            "key": self.key,
            "secret": self.secret,
            "client_kwargs": {"endpoint_url": self.endpoint, "region_name": _REGION},
            # A new instance each time: fsspec would otherwise hand back a cached one.
            "skip_instance_cache": True,
        }
        options.update(overrides)
        return options

    def client(self) -> Any:
        """A boto3 S3 client with the accepted credentials, to act behind a store's back."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=_REGION,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
        )


def _wait_started(server: subprocess.Popen[bytes], endpoint: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while True:
        try:
            httpx.get(f"{endpoint}/moto-api/", timeout=2)
            return
        except httpx.TransportError:
            assert server.poll() is None, "moto's server exited at start"
            assert time.monotonic() < deadline, "moto's server did not start"
            time.sleep(0.2)


def _bootstrap(endpoint: str, bucket: str) -> tuple[str, str]:
    """Create the bucket and an IAM user allowed everything, then make the server refuse
    every other key; the user's key and secret."""
    import boto3

    session = boto3.session.Session(
        aws_access_key_id=_BOOTSTRAP_KEY,
        aws_secret_access_key=_BOOTSTRAP_SECRET,
        region_name=_REGION,
    )
    session.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    iam = session.client("iam", endpoint_url=endpoint)
    iam.create_user(UserName="lorastack-tests")
    iam.put_user_policy(UserName="lorastack-tests", PolicyName="all", PolicyDocument=_ALLOW_ALL)
    created = iam.create_access_key(UserName="lorastack-tests")["AccessKey"]
    # From now on moto checks every request's signature and key, as S3 does.
    httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"0", timeout=10).raise_for_status()
    return str(created["AccessKeyId"]), str(created["SecretAccessKey"])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
        import s3fs  # noqa: F401
    except ImportError as exc:
        if _s3_required():
            pytest.fail(f"no S3 emulator ({exc.name} missing): {INSTALL_HINT}")
        pytest.skip(f"no S3 emulator ({exc.name} missing): {INSTALL_HINT}")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Never the developer's AWS settings; moto starts with every check off.
        env={k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))},
    )
    try:
        _wait_started(server, endpoint)
        key, secret = _bootstrap(endpoint, "lorastack-tests")
        yield S3Server(endpoint, "lorastack-tests", key, secret)
    finally:
        server.terminate()
        server.wait(timeout=30)
