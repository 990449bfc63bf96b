"""A registry several machines share: the index in one real PostgreSQL database, the adapter
files in one blob store, each "machine" with its own home (model store, local cache).

Two publisher processes publish at once and get distinct versions, none lost; two
`lorastack serve` processes answer from that registry, and a promote through one gateway's
admin API is what the other serves on its very next request. The engines are the scripted
fake (tests/fake_upstream.py): what is under test is the registry, not vLLM.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from lorastack import fsutil
from lorastack.errors import BlobCorrupt
from lorastack.models import ModelStore
from lorastack.registry import AdapterRegistry
from tests.fake_upstream import FakeUpstream
from tests.fakes import write_adapter, write_base_checkpoint
from tests.registries import database_registry
from tests.s3_server import S3Server, s3_server  # noqa: F401
from tests.servers import free_port

pytestmark = pytest.mark.integration

ADMIN_KEY = "admin-key-0123456789abcdef"
PUBLISHES_EACH = 5
# Waits for the starting signal, then publishes the same adapter `count` times.
PUBLISHER = """
import sys, time
from pathlib import Path
from lorastack.models import ModelStore
from lorastack.registry import open_registry
from lorastack.settings import get_settings

source, go, count = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
settings = get_settings()
registry = open_registry(settings, ModelStore(settings.models_dir))
registry.domains()  # connected and migrated before the race starts
while not go.exists():
    time.sleep(0.005)
for _ in range(count):
    print(registry.publish(source, "coffee").version, flush=True)
"""


@pytest.fixture
def machines(tmp_path: Path, postgres_url: str) -> list[dict[str, str]]:
    """Two machines' environments: their own homes (the same base model registered in
    each), one database and one blob store between them."""
    checkpoint = write_base_checkpoint(tmp_path / "tiny-checkpoint")
    envs = []
    for name in ("machine-1", "machine-2"):
        home = tmp_path / name
        ModelStore(home / "models").add(checkpoint, "tiny")
        envs.append(
            {
                "LORASTACK_HOME": str(home),
                "LORASTACK_BASE_MODEL": "tiny",
                "LORASTACK_DATABASE_URL": postgres_url,
                "LORASTACK_REGISTRY__INDEX": "database",
                "LORASTACK_REGISTRY__STORE": str(tmp_path / "shared-blobs"),
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "PATH": "",
            }
        )
    return envs


@pytest.fixture
def shared(machines: list[dict[str, str]], postgres_url: str) -> Iterator[AdapterRegistry]:
    """The test's own view of the shared registry, as a third machine."""
    home = Path(machines[0]["LORASTACK_HOME"])
    with database_registry(
        ModelStore(home / "models"),
        home=home.parent / "observer",
        database_url=postgres_url,
        registry={"store": machines[0]["LORASTACK_REGISTRY__STORE"]},
    ) as registry:
        yield registry


@pytest.fixture
def start_gateway() -> Iterator[Callable[[dict[str, str]], str]]:
    processes: list[subprocess.Popen[str]] = []
    upstreams: list[FakeUpstream] = []

    def start(env: dict[str, str]) -> str:
        upstream = FakeUpstream(base_model="tiny").start()
        upstreams.append(upstream)
        port = free_port()
        command = ["serve", "--upstream", upstream.url, "--port", str(port), "--no-guardrails"]
        process = subprocess.Popen(
            [sys.executable, "-m", "lorastack.cli", *command],
            env={**env, "LORASTACK_GATEWAY__ADMIN_KEY": ADMIN_KEY},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(process)
        return f"http://127.0.0.1:{port}"

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=30)
    for upstream in upstreams:
        upstream.stop()


def _wait_up(url: str, deadline: float) -> None:
    while True:
        try:
            httpx.get(f"{url}/health", timeout=2)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"the gateway at {url} did not start"
            time.sleep(0.2)


def _answer_of(url: str, model: str = "coffee") -> str:
    body = {"model": model, "messages": [{"role": "user", "content": "a flat white"}]}
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["message"]["content"])


def test_publishers_and_gateways_on_several_machines_share_one_registry(
    machines: list[dict[str, str]],
    shared: AdapterRegistry,
    start_gateway: Callable[[dict[str, str]], str],
    tmp_path: Path,
) -> None:
    go = tmp_path / "go"
    publishers = [
        subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, str(source), str(go), str(PUBLISHES_EACH)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for env, source in (
            (env, write_adapter(tmp_path / f"adapter-{i}", "tiny", seed=i))
            for i, env in enumerate(machines)
        )
    ]
    time.sleep(3)  # both connected (each waits for `go` once ready)
    go.touch()
    outputs = [p.communicate(timeout=60) for p in publishers]
    for publisher, (_, errors) in zip(publishers, outputs, strict=True):
        assert publisher.returncode == 0, errors
    versions = [[int(line) for line in out.split()] for out, _ in outputs]
    # Distinct versions, none lost, each publisher's in the order it made them.
    assert sorted(versions[0] + versions[1]) == list(range(1, 2 * PUBLISHES_EACH + 1))
    assert all(v == sorted(v) and len(v) == PUBLISHES_EACH for v in versions)
    assert [m.version for m in shared.versions("coffee")] == list(range(1, 11))
    assert shared.index("coffee").last_version == 2 * PUBLISHES_EACH
    first, second = versions[0][0], versions[1][0]
    shared.promote("coffee", first)

    # Two gateways, one per machine, on the same registry.
    gateways = [start_gateway(env) for env in machines]
    deadline = time.monotonic() + 60
    for url in gateways:
        _wait_up(url, deadline)
    assert [_answer_of(url) for url in gateways] == [f"echo from coffee@v{first}: a flat white"] * 2
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    promoted = httpx.post(
        f"{gateways[0]}/admin/adapters/promote",
        json={"domain": "coffee", "version": second},
        headers=admin,
        timeout=30,
    )
    assert promoted.status_code == 200, promoted.text
    # The other gateway's very next request: no poll, no restart.
    assert _answer_of(gateways[1]).startswith(f"echo from coffee@v{second}:")
    rolled = httpx.post(
        f"{gateways[1]}/admin/adapters/rollback", json={"domain": "coffee"}, headers=admin
    )
    assert rolled.status_code == 200, rolled.text
    assert _answer_of(gateways[0]).startswith(f"echo from coffee@v{first}:")
    # Each machine served from its own verified local copy of the shared blobs.
    for env in machines:
        cached = Path(env["LORASTACK_HOME"]) / "cache" / "adapters" / "coffee"
        assert (cached / f"v{first}" / "adapter_model.safetensors").is_file()


def test_a_registry_on_object_storage_serves_verified_copies_on_each_machine(
    s3_server: S3Server,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The blobs on S3 (moto's emulator: no S3-compatible server installs here), the index in
    one database: a version published on one machine is copied, checked, on another; a blob
    altered in the bucket is refused on a machine that has no copy yet."""
    checkpoint = write_base_checkpoint(tmp_path / "tiny-checkpoint")
    options = {
        "database_url": f"sqlite:///{tmp_path / 'shared.db'}",
        "registry": {
            "store": f"s3://{s3_server.bucket}/registry-{tmp_path.name}",
            "store_options": s3_server.options(),
        },
    }

    def machine(name: str) -> contextlib.AbstractContextManager[AdapterRegistry]:
        home = tmp_path / name
        models = ModelStore(home / "models")
        models.add(checkpoint, "tiny")
        return database_registry(models, home=home, base_model="tiny", **options)

    source = write_adapter(tmp_path / "adapter", "tiny", seed=3)
    with machine("publisher") as publisher:
        manifest = publisher.publish(source, "coffee", promote="prod")
    with machine("gateway") as gateway:
        assert gateway.resolve("coffee").ref == manifest.ref
        local = gateway.version_dir("coffee", manifest.version)
        weights = local / "adapter_model.safetensors"
        assert fsutil.sha256_file(weights) == manifest.adapter_sha256
        assert weights.read_bytes() == (source / "adapter_model.safetensors").read_bytes()
        assert local.is_relative_to(tmp_path / "gateway")

    bucket = s3_server.client()
    key = next(
        item["Key"]
        for item in bucket.list_objects_v2(Bucket=s3_server.bucket)["Contents"]
        if item["Key"].endswith(manifest.adapter_sha256)
    )
    bucket.put_object(Bucket=s3_server.bucket, Key=key, Body=b"not the adapter")
    with machine("late") as late, pytest.raises(BlobCorrupt) as refused:
        late.version_dir("coffee", manifest.version)
    assert f"blob {manifest.adapter_sha256} does not match its digest" in str(refused.value)
    assert s3_server.secret not in str(refused.value)
    assert not (tmp_path / "late" / "cache" / "adapters" / "coffee" / "v1").exists()
