"""The Dockerfile, checked against the code it packages (no Docker engine needed).

Each target must run the CLI's real commands, pin the vLLM release the `gpu` extra pins,
install the way the Makefile does, run as a non-root user, keep its state in a volume and
probe the gateway's real readiness route; the health check is run against a gateway.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from lorastack.cli import app as cli_app
from lorastack.errors import SettingsError
from lorastack.serve.app import build_gateway, create_app, engine_client
from lorastack.serve.engine import OFFLINE_ENV
from lorastack.serve.routes import ops
from lorastack.serve.tenancy import build_tenancy
from lorastack.settings import ENV_PREFIX, GatewaySettings, load_settings
from tests.fake_upstream import FakeUpstream
from tests.servers import serve_in_thread

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
TARGETS = ("gpu", "cpu")
DEVICE_ARG = "DEVICE"  # `docker build --build-arg DEVICE=gpu` builds the gpu image
HOME_VARIABLE = f"{ENV_PREFIX}HOME"


# -- a small Dockerfile reader -------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def _logical_lines(text: str) -> Iterator[str]:
    """Instructions with their continuation lines joined; comment lines dropped."""
    pending: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        yield " ".join(pending)
        pending = []
    if pending:
        yield " ".join(pending)


def parse_dockerfile(text: str) -> tuple[list[Instruction], list[Stage]]:
    """The global ARG lines (before the first FROM), and the stages."""
    global_args: list[Instruction] = []
    stages: list[Stage] = []
    for line in _logical_lines(text):
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.I)
            assert match, f"cannot read FROM {args}"
            stages.append(Stage(match[1], match[2]))
        elif not stages:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            global_args.append(Instruction(keyword, args.strip()))
        else:
            stages[-1].instructions.append(Instruction(keyword, args.strip()))
    return global_args, stages


GLOBAL_ARGS, STAGES = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def stage(name: str) -> Stage:
    found = [s for s in STAGES if s.name == name]
    assert found, f"the Dockerfile has no `{name}` stage"
    return found[0]


def _from(current: Stage, target: str) -> str:
    """A stage's FROM, as `docker build --build-arg DEVICE=target` resolves it."""
    return re.sub(r"\$\{?" + DEVICE_ARG + r"\}?", target, current.base)


def stages_of(target: str) -> list[Stage]:
    """The stages the target's image is built from, first to last: the final stage, with
    DEVICE set to the target, and each stage it is built FROM."""
    names = {s.name: s for s in STAGES if s.name}
    built = [STAGES[-1]]
    while _from(built[0], target) in names:
        built.insert(0, names[_from(built[0], target)])
    return built


def chain(target: str) -> list[Instruction]:
    """A target's instructions, including those of the stages it is built FROM."""
    return [i for s in stages_of(target) for i in s.instructions]


def base_image(target: str) -> str:
    return _from(stages_of(target)[0], target)


def each(target: str, keyword: str) -> list[str]:
    return [i.args for i in chain(target) if i.keyword == keyword]


def env(target: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for args in each(target, "ENV"):
        words = shlex.split(args)
        if words and "=" not in words[0]:  # legacy `ENV KEY value`
            values[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            key, _, value = word.partition("=")
            values[key] = value
    return values


def exec_form(args: str) -> list[str]:
    assert args.startswith("["), f"use the exec (JSON) form: {args}"
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return cast(list[str], value)


def healthcheck(target: str) -> tuple[str, list[str]]:
    """The options and the command of the target's HEALTHCHECK."""
    checks = each(target, "HEALTHCHECK")
    assert checks, f"{target}: no HEALTHCHECK"
    options, _, command = checks[-1].partition("CMD ")
    return options, exec_form(command.strip())


def run_commands(target: str) -> list[list[str]]:
    """Every simple command in the target's RUN lines, as argv lists."""
    commands = []
    for args in each(target, "RUN"):
        for part in re.split(r"&&|\|\||;|\|", args):
            words = shlex.split(part)
            while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
                words = words[1:]  # VAR=value prefixes
            if words:
                commands.append(words)
    return commands


def cli(*args: str) -> Any:
    return CliRunner().invoke(cli_app, list(args))


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


# -- the targets -----------------------------------------------------------------------


def test_there_is_a_gpu_and_a_cpu_target() -> None:
    assert {s.name for s in STAGES} >= set(TARGETS)


def test_both_targets_share_one_tail_stage() -> None:
    """The user, the model, the volume, the health check and the entry point are written
    once, in the last stage, which DEVICE builds on one target's stage or the other."""
    default = [a.args for a in GLOBAL_ARGS if a.args.startswith(f"{DEVICE_ARG}=")]
    assert len(default) == 1 and default[0].partition("=")[2] in TARGETS
    tail = STAGES[-1]
    for target in TARGETS:
        assert [s.name for s in stages_of(target)] == [target, tail.name]
    shared = ("USER", "VOLUME", "EXPOSE", "HEALTHCHECK", "ENTRYPOINT", "CMD")
    for keyword in shared:
        where = [s.name for s in STAGES for i in s.instructions if i.keyword == keyword]
        assert where == [tail.name], f"{keyword} in {where}"


def test_the_gpu_image_is_the_vllm_release_the_gpu_extra_pins() -> None:
    pins = [p for p in pyproject()["project"]["optional-dependencies"]["gpu"] if "vllm" in p]
    assert len(pins) == 1
    version = re.fullmatch(r"vllm==(\d+\.\d+\.\d+)", pins[0].replace(" ", ""))
    assert version, f"the gpu extra must pin vllm exactly, got {pins[0]}"
    image, _, tag = base_image("gpu").partition(":")
    assert image == "vllm/vllm-openai"
    assert tag == f"v{version[1]}"


def test_the_cpu_image_is_a_pinned_python_the_project_supports() -> None:
    image, _, tag = base_image("cpu").partition(":")
    assert image == "python"
    minor = re.match(r"(\d+)\.(\d+)", tag)
    assert minor, f"pin a Python version, not {tag or 'latest'}"
    needed = re.fullmatch(r">=(\d+)\.(\d+)", pyproject()["project"]["requires-python"])
    assert needed
    assert (int(minor[1]), int(minor[2])) >= (int(needed[1]), int(needed[2]))


@pytest.mark.parametrize("target", TARGETS)
def test_it_runs_as_a_user_it_creates_not_root(target: str) -> None:
    users = each(target, "USER")
    assert users, f"{target}: no USER, so it would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    created = [c for c in run_commands(target) if c[0] == "useradd"]
    assert created and created[-1][-1] == user


@pytest.mark.parametrize("target", TARGETS)
def test_lorastack_home_is_a_volume(target: str) -> None:
    home = env(target).get(HOME_VARIABLE)
    assert home and home.startswith("/"), f"{target}: set ENV {HOME_VARIABLE} to a path"
    volumes = [v for args in each(target, "VOLUME") for v in _volume_paths(args)]
    assert home in volumes
    assert load_settings(home=home).home == Path(home)


def _volume_paths(args: str) -> list[str]:
    return exec_form(args) if args.startswith("[") else args.split()


@pytest.mark.parametrize("target", TARGETS)
def test_every_process_is_offline(target: str) -> None:
    variables = env(target)
    assert {k: variables.get(k) for k in OFFLINE_ENV} == OFFLINE_ENV


@pytest.mark.parametrize("target", TARGETS)
def test_it_copies_every_package_folder(target: str) -> None:
    copied = {
        word.rstrip("/")
        for args in each(target, "COPY")
        for word in shlex.split(args)[:-1]
        if not word.startswith("--")
    }
    folders = set(pyproject()["tool"]["setuptools"]["package-dir"].values())
    assert folders | {"pyproject.toml", "README.md", "requirements"} <= copied


def _pip(target: str, action: str) -> list[list[str]]:
    found = []
    for command in run_commands(target):
        if "pip" in command and action in command:
            found.append(command[command.index(action) + 1 :])
    return found


@pytest.mark.parametrize("target", TARGETS)
def test_it_installs_its_extra_and_the_bundled_assets_by_hash(target: str) -> None:
    installs = _pip(target, "install")
    assert target in pyproject()["project"]["optional-dependencies"]
    # `.[cpu,s3]`: the target's extra, and S3 for a registry whose files are there.
    assert any(f".[{target},s3]" in args for args in installs)
    assert "s3" in pyproject()["project"]["optional-dependencies"]
    assets = [a for a in installs if "requirements/bundled-assets.txt" in a]
    assert assets and {"--no-deps", "--require-hashes", "-r"} <= set(assets[0])


def test_the_cpu_image_removes_the_wheels_the_makefile_removes() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    clashing = re.search(r"^CLASHING\s*:?=\s*(.+)$", makefile, re.M)
    assert clashing
    removed = {word for args in _pip("cpu", "uninstall") for word in args if word[0] != "-"}
    assert removed == set(clashing[1].split())


# -- the commands it runs --------------------------------------------------------------


def _lorastack_args(command: list[str]) -> list[str] | None:
    return command[1:] if Path(command[0]).name == "lorastack" else None


@pytest.mark.parametrize("target", TARGETS)
def test_the_entry_point_is_the_gateway_bound_beyond_loopback(target: str) -> None:
    entrypoint = exec_form(each(target, "ENTRYPOINT")[-1])
    command = exec_form(each(target, "CMD")[-1])
    assert entrypoint == ["lorastack"]
    assert "lorastack" in pyproject()["project"]["scripts"]
    assert command[0] == "serve"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    # Click parses every option before --help acts: an unknown one exits 2.
    result = cli(*command, "--help")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("target", TARGETS)
def test_every_lorastack_command_it_runs_exists(target: str) -> None:
    commands = [args for c in run_commands(target) if (args := _lorastack_args(c)) is not None]
    assert ["model", "pull"] in commands  # the bundled model ships in the image
    for args in commands:
        result = cli(*args, "--help")
        assert result.exit_code == 0, f"lorastack {' '.join(args)}: {result.output}"


@pytest.mark.parametrize("target", TARGETS)
def test_the_model_is_pulled_by_the_user_before_the_volume_is_declared(target: str) -> None:
    # Build steps that write into a declared volume are discarded; files written as root
    # would not be writable by the user at run time.
    order = [
        i.keyword if i.keyword != "RUN" or "model pull" not in i.args else "PULL"
        for i in chain(target)
    ]
    assert order.index("USER") < order.index("PULL") < order.index("VOLUME")


def test_binding_beyond_loopback_needs_keys() -> None:
    # Why `docker run` must pass LORASTACK_GATEWAY__API_KEYS or __KEYS_FILE (or the database
    # must hold a key made by `lorastack keys create`).
    with pytest.raises(SettingsError, match="without api_keys"):
        build_tenancy(load_settings(gateway={"host": "0.0.0.0"}).gateway, None)
    public = load_settings(gateway={"host": "0.0.0.0", "api_keys": ["k" * 20]}).gateway
    assert build_tenancy(public, None).keys.has_keys


# -- the health check --------------------------------------------------------------------


def _ready_path() -> str:
    paths = [
        getattr(route, "path", "")
        for route in ops.router.routes
        if getattr(route, "endpoint", None) is ops.ready
    ]
    assert len(paths) == 1
    return paths[0]


@pytest.mark.parametrize("target", TARGETS)
def test_the_health_check_asks_the_gateways_ready_route(target: str) -> None:
    options, command = healthcheck(target)
    assert f"/{_ready_path().strip('/')}'" in command[-1]
    assert "--start-period" in options  # vLLM takes a while to start
    port = str(GatewaySettings().port)
    assert f"{ENV_PREFIX}GATEWAY__PORT', '{port}'" in command[-1]
    assert each(target, "EXPOSE")[-1].split() == [port]


@pytest.mark.parametrize("target", TARGETS)
def test_the_health_check_passes_only_while_the_gateway_is_ready(target: str) -> None:
    _, command = healthcheck(target)
    assert Path(command[0]).name in ("python", "python3")
    argv = [sys.executable, *command[1:]]  # this interpreter, whatever PATH holds
    with FakeUpstream(base_model="tiny") as fake:
        settings = load_settings(base_model="tiny", gateway={"guardrails": False})
        client = engine_client(5.0)
        gateway = build_gateway(settings, [fake.url], client, detector=None)
        with serve_in_thread(create_app(gateway, settings.gateway.max_body_bytes, client)) as url:
            environ = {**os.environ, f"{ENV_PREFIX}GATEWAY__PORT": str(urlsplit(url).port)}
            ready = subprocess.run(argv, env=environ, capture_output=True, timeout=30)
            assert ready.returncode == 0, ready.stderr
            fake.healthy = False
            starting = subprocess.run(argv, env=environ, capture_output=True, timeout=30)
            assert starting.returncode != 0
            assert b"503" in starting.stderr


# -- the build context -------------------------------------------------------------------


def test_local_state_stays_out_of_the_build_context() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "test-output", ".mypy_cache", ".ruff_cache", ".pytest_cache"} <= (
        ignored
    )
    assert "**/__pycache__" in ignored


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore leaves `path` out of the build context (Docker's rules: a
    pattern matches a path or a folder above it, from the context root; `!` re-includes)."""

    def regex(pattern: str) -> str:
        parts = re.split(r"(\*\*/?|\*|\?)", pattern.strip("/"))
        table = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
        return "".join(table.get(part, re.escape(part)) for part in parts)

    prefixes = ["/".join(path.split("/")[: i + 1]) for i in range(path.count("/") + 1)]
    ignored = False
    for pattern in patterns:
        keep = pattern.startswith("!")
        if any(re.fullmatch(regex(pattern.lstrip("!")), p) for p in prefixes):
            ignored = not keep
    return ignored


def test_the_package_data_is_in_the_build_context() -> None:
    """Every data file the package ships (the policies, the demo `lorastack quickstart`
    trains) reaches the image: not left out of the context, inside a copied folder."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    tool = pyproject()["tool"]["setuptools"]
    shipped = []
    for package, globs in tool["package-data"].items():
        # A subpackage lives under its nearest mapped parent (`lorastack.db.migrations`).
        parent = max((p for p in tool["package-dir"] if f"{package}.".startswith(f"{p}.")), key=len)
        inner = package.removeprefix(parent).strip(".").replace(".", "/")
        folder = ROOT / tool["package-dir"][parent] / inner
        shipped += [p.relative_to(ROOT).as_posix() for g in globs for p in folder.glob(g)]
    assert any(path.startswith("train/demo/") for path in shipped)
    assert [path for path in shipped if _ignored(path, patterns)] == []
    assert not _ignored("train/data/prepare.py", patterns)  # `data` is the root folder only
    assert _ignored("examples/data/tiny-chat.jsonl", patterns)
    for target in TARGETS:
        copied = {
            word.rstrip("/")
            for args in each(target, "COPY")
            for word in shlex.split(args)[:-1]
            if not word.startswith("--")
        }
        assert all(path.split("/")[0] in copied for path in shipped)
