"""`lorastack deploy`: the adapter layout and the Ray Serve LLM config, checked by Ray."""

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fsspec
import pytest
import yaml

from lorastack import fsutil
from lorastack.deploy import LayoutError, RayDeployment, export_layout, ray_serve_config
from lorastack.deploy.ray import DeployError, gateway_env
from lorastack.registry import AdapterRegistry
from lorastack.settings import load_settings
from tests.fakes import write_adapter
from tests.unit.conftest import Result

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"


@pytest.fixture
def published(registry: AdapterRegistry, tmp_path: Path) -> AdapterRegistry:
    for domain, seed in (("coffee-shop", 1), ("coffee-shop", 2), ("law-firm", 3)):
        registry.publish(write_adapter(tmp_path / f"src-{seed}", "tiny", seed=seed), domain)
    registry.promote("coffee-shop", 1)
    return registry


def test_every_version_is_copied_under_its_immutable_name(
    published: AdapterRegistry, tmp_path: Path
) -> None:
    report = export_layout(published, str(tmp_path / "layout"))
    names = ["coffee-shop@v1", "coffee-shop@v2", "law-firm@v1"]
    assert report.written == names
    for name in names:
        folder = tmp_path / "layout" / name
        assert sorted(p.name for p in folder.iterdir()) == [CONFIG, WEIGHTS]  # nothing partial
        domain, version = name.split("@v")
        source = published.version_dir(domain, int(version))
        for file in (CONFIG, WEIGHTS):
            assert (folder / file).read_bytes() == (source / file).read_bytes()
    # Again: nothing to do, and aliases never became folders.
    assert export_layout(published, str(tmp_path / "layout")).unchanged == names
    assert not (tmp_path / "layout" / "coffee-shop@prod").exists()


def test_a_layout_copy_that_differs_is_refused_not_replaced(
    published: AdapterRegistry, tmp_path: Path
) -> None:
    export_layout(published, str(tmp_path / "layout"))
    weights = tmp_path / "layout" / "law-firm@v1" / WEIGHTS
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(LayoutError, match="law-firm@v1 exists and differs"):
        export_layout(published, str(tmp_path / "layout"))
    assert weights.read_bytes().endswith(b"\0")


def test_an_interrupted_copy_is_completed(published: AdapterRegistry, tmp_path: Path) -> None:
    export_layout(published, str(tmp_path / "layout"))
    folder = tmp_path / "layout" / "law-firm@v1"
    (folder / CONFIG).unlink()  # the config goes last: a copy cut short lacks it
    (folder / WEIGHTS).write_bytes(b"half")
    report = export_layout(published, str(tmp_path / "layout"))
    assert report.written == ["law-firm@v1"]
    source = published.version_dir("law-firm", 1)
    assert (folder / WEIGHTS).read_bytes() == (source / WEIGHTS).read_bytes()
    assert (folder / CONFIG).is_file()


def test_tampered_registry_weights_are_never_exported(
    published: AdapterRegistry, tmp_path: Path
) -> None:
    weights = published.version_dir("law-firm", 1) / WEIGHTS
    weights.write_bytes(weights.read_bytes() + b"x")
    with pytest.raises(LayoutError, match=r"law-firm@v1.*published hash"):
        export_layout(published, str(tmp_path / "layout"), ["law-firm"])
    assert not (tmp_path / "layout" / "law-firm@v1").exists()


def test_an_fsspec_url_gets_the_same_layout(published: AdapterRegistry) -> None:
    report = export_layout(published, "memory://lorastack-test/adapters", ["coffee-shop"])
    assert report.written == ["coffee-shop@v1", "coffee-shop@v2"]
    fs = fsspec.filesystem("memory")
    manifest = published.manifest("coffee-shop", 2)
    with fs.open("/lorastack-test/adapters/coffee-shop@v2/" + WEIGHTS, "rb") as handle:
        copied = handle.read()
    source = published.version_dir("coffee-shop", 2) / WEIGHTS
    assert copied == source.read_bytes()
    assert fsutil.sha256_file(source) == manifest.adapter_sha256
    fs.rm("/lorastack-test", recursive=True)


def test_bad_requests_are_refused(published: AdapterRegistry, tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="no adapter is published for domain bakery"):
        export_layout(published, str(tmp_path / "layout"), ["bakery"])
    with pytest.raises(LayoutError, match="nosuchproto"):
        export_layout(published, "nosuchproto://x/y")


def test_an_empty_registry_has_nothing_to_export(registry: AdapterRegistry, tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="no published adapter"):
        export_layout(registry, str(tmp_path / "layout"))


def _spec(**overrides: Any) -> RayDeployment:
    values: dict[str, Any] = {
        "base_model": "tiny",
        "model_source": "/models/tiny",
        "layout_url": "s3://bucket/lorastack/adapters/",
    }
    return RayDeployment(**{**values, **overrides})


def test_ray_config_names_the_base_model_and_the_layout() -> None:
    config = ray_serve_config(_spec(accelerator_type="L4"))
    (application,) = config["applications"]
    assert application["import_path"] == "ray.serve.llm:build_openai_app"
    (llm,) = application["args"]["llm_configs"]
    assert llm["model_loading_config"] == {"model_id": "tiny", "model_source": "/models/tiny"}
    assert llm["lora_config"]["dynamic_lora_loading_path"] == "s3://bucket/lorastack/adapters"
    assert llm["engine_kwargs"]["enable_lora"] is True
    assert llm["accelerator_type"] == "L4"
    env = gateway_env(_spec(), "http://ray:8000/")
    assert env["LORASTACK_GATEWAY__UPSTREAMS"] == '["http://ray:8000"]'
    assert env["LORASTACK_GATEWAY__UPSTREAM_KIND"] == "ray-serve"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"layout_url": "/srv/layout"}, "object storage only"),
        ({"min_replicas": 3, "max_replicas": 2}, "replicas"),
        ({"max_loras": 8, "max_cpu_loras": 4}, "max_cpu_loras"),
        ({"port": 0}, "not a TCP port"),
    ],
)
def test_ray_values_ray_would_refuse_are_refused_first(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(DeployError, match=message):
        _spec(**overrides)


# Ray's own schemas, in a child process: importing Ray's LLM configs imports vLLM and Ray,
# whose loggers would keep writing to this test's captured (then closed) streams.
_RAY_CHECK = """
import json, sys
from ray.serve.llm import LLMServingArgs
from ray.serve.schema import ServeApplicationSchema, ServeDeploySchema
for config in json.load(sys.stdin):
    try:
        ServeDeploySchema.model_validate(config)
        # Ray's Serve schemas ignore unknown keys (its LLM configs forbid them): a
        # misspelt key would pass unseen, so every key must be one of their fields.
        unknown = set(config) - set(ServeDeploySchema.model_fields)
        for application in config["applications"]:
            unknown |= set(application) - set(ServeApplicationSchema.model_fields)
            LLMServingArgs.model_validate(application["args"])
        if unknown:
            raise ValueError(f"not a Serve config field: {sorted(unknown)}")
    except ValueError as error:
        print(json.dumps("refused: " + str(error)))
    else:
        print(json.dumps("ok"))
"""


def ray_verdicts(*configs: dict[str, Any]) -> list[str]:
    """Ray's verdict on each Serve config file: the file by `ServeDeploySchema`, each
    application's arguments by `LLMServingArgs` (every `LLMConfig`, `LoraConfig` included)."""
    pytest.importorskip("ray.serve", reason="ray[serve] (the dev extra)")
    done = subprocess.run(
        [sys.executable, "-c", _RAY_CHECK],
        input=json.dumps(list(configs)),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith('"')]


@pytest.fixture
def cli_tiny(cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    monkeypatch.setenv("LORASTACK_BASE_MODEL", "tiny")
    return cli


def test_deploy_ray_writes_a_config_ray_accepts(
    cli_tiny: Callable[..., Result], published: AdapterRegistry, tmp_path: Path, fake_base: Any
) -> None:
    layout = tmp_path / "layout"
    result = cli_tiny(
        "deploy", "ray", "--out", str(tmp_path / "out"), "--layout", str(layout),
        "--layout-url", "s3://bucket/adapters", "--ray-url", "http://ray-head:8000",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "coffee-shop@v2" in result.err and "3 written" in result.err
    assert sorted(p.name for p in layout.iterdir()) == [
        "coffee-shop@v1",
        "coffee-shop@v2",
        "law-firm@v1",
    ]
    text = (tmp_path / "out" / "ray-serve.yaml").read_text()
    assert text.startswith("# Ray Serve LLM for tiny")
    config = yaml.safe_load(text)
    (llm,) = config["applications"][0]["args"]["llm_configs"]
    assert llm["model_loading_config"]["model_source"] == str(fake_base.path)
    assert llm["lora_config"]["max_num_adapters_per_replica"] == 8  # max_cpu_loras
    env = (tmp_path / "out" / "gateway.env").read_text()
    assert "LORASTACK_GATEWAY__UPSTREAMS='[\"http://ray-head:8000\"]'" in env
    # As a shell reads it (docs: `set -a; . gateway.env`), the settings load.
    shell = subprocess.run(
        ["bash", "-c", f"set -a; . {tmp_path / 'out' / 'gateway.env'}; env"],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    read = dict(line.split("=", 1) for line in shell.stdout.splitlines() if "=" in line)
    settings = load_settings(
        base_model=read["LORASTACK_BASE_MODEL"],
        gateway={
            "upstreams": json.loads(read["LORASTACK_GATEWAY__UPSTREAMS"]),
            "upstream_kind": read["LORASTACK_GATEWAY__UPSTREAM_KIND"],
        },
    )
    assert settings.gateway.upstreams == ["http://ray-head:8000"]
    # Ray's verdicts, with controls: Ray refuses a local adapter path (which is why
    # `deploy ray` refuses one first), and misspelt fields are caught.
    local = copy.deepcopy(config)
    local["applications"][0]["args"]["llm_configs"][0]["lora_config"][
        "dynamic_lora_loading_path"
    ] = "/srv/layout"
    misspelt = {**config, "http_option": {"port": 8000}}
    engine = copy.deepcopy(config)
    engine["applications"][0]["args"]["llm_configs"][0]["engine_kwarg"] = {}
    verdicts = ray_verdicts(config, local, misspelt, engine)
    assert verdicts[0] == "ok"
    fields = ["lora_config", "http_option", "engine_kwarg"]
    for verdict, field in zip(verdicts[1:], fields, strict=True):
        assert verdict.startswith("refused") and field in verdict


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layout", "LAYOUT"], "--layout-url is needed"),
        (["--layout-url", "/srv/layout"], "object storage only"),
        (["--layout-url", "s3://b/p", "--ray-url", "ray:8000"], "http:// or https://"),
        (["--layout-url", "s3://b/p", "--min-replicas", "0"], "replicas"),
    ],
)
def test_deploy_ray_mistakes_are_one_line(
    cli_tiny: Callable[..., Result],
    published: AdapterRegistry,
    fake_base: Any,
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    args = [a.replace("LAYOUT", str(tmp_path / "layout")) for a in args]
    result = cli_tiny("deploy", "ray", "--out", str(tmp_path / "out"), *args)
    assert result.code == 1
    assert message in result.err and "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_deploy_ray_needs_the_base_model_or_a_source(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    result = cli("deploy", "ray", "--out", str(tmp_path / "out"), "--layout-url", "s3://b/p")
    assert result.code == 1
    assert "no base model named" in result.err and "--model-source" in result.err


def test_deploy_layout_reports_and_refuses_unknown_domains(
    cli: Callable[..., Result], published: AdapterRegistry, tmp_path: Path
) -> None:
    ok = cli("deploy", "layout", str(tmp_path / "layout"), "--domain", "law-firm")
    assert ok.code == 0, ok.err
    assert "1 written" in ok.err
    again = cli("deploy", "layout", str(tmp_path / "layout"))
    assert "2 written, 1 already there" in again.err
    bad = cli("deploy", "layout", str(tmp_path / "layout"), "--domain", "bakery")
    assert bad.code == 1 and bad.err.startswith("error: no adapter is published")
