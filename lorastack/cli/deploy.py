"""`lorastack deploy ...`: serve the registry's domains from fleets lorastack does not run."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
import yaml

from lorastack.cli.context import err, model_store, out, registry, settings
from lorastack.deploy.layout import export_layout
from lorastack.deploy.ray import REMOTE_SCHEMES, DeployError, RayDeployment, gateway_env
from lorastack.deploy.ray import ray_serve_config as build_ray_config
from lorastack.errors import LorastackError

app = typer.Typer(
    help="Deploy the registry's domains behind the gateway on Ray Serve or Kubernetes.",
    no_args_is_help=True,
)

RAY_CONFIG_FILE = "ray-serve.yaml"
GATEWAY_ENV_FILE = "gateway.env"

_Domains = Annotated[
    list[str] | None,
    typer.Option("--domain", help="Export only this domain (repeatable); default: all."),
]


def _export(location: str, domains: list[str] | None) -> None:
    report = export_layout(registry(), location, domains)
    for name in report.written:
        err.print(f"exported {name}")
    err.print(
        f"layout {location}: {len(report.written)} written, {len(report.unchanged)} already there"
    )


@app.command()
def layout(
    location: Annotated[
        str, typer.Argument(help="A local folder or an fsspec URL (s3://bucket/prefix, ...).")
    ],
    domain: _Domains = None,
) -> None:
    """Copy the published versions into an adapter layout for Ray Serve LLM.

    Each version goes to LOCATION/<domain>@v<N>/ (weights and config, hash-checked). Run it
    after publishing: versions already there are left as they are.
    """
    _export(location, domain)


def _model_source(given: str | None, base_model: str) -> str:
    if given:
        return given
    try:
        return str(model_store().get(base_model).path)
    except LorastackError as error:
        raise DeployError(f"{error}; or give --model-source") from None


def _write(folder: Path, name: str, text: str) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_text(text)
    except OSError as error:
        raise DeployError(f"cannot write {folder / name}: {error.strerror or error}") from None
    return path


@app.command()
def ray(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the generated files.")],
    layout_dir: Annotated[
        str | None,
        typer.Option(
            "--layout",
            help="Export the registry's versions here first: a local folder or fsspec URL.",
        ),
    ] = None,
    layout_url: Annotated[
        str | None,
        typer.Option(
            help="The object-storage prefix Ray loads adapters from (s3://, gs://, abfss://, "
            "azure://); default: --layout when it is such a URL.",
        ),
    ] = None,
    ray_url: Annotated[
        str, typer.Option(help="Ray Serve's HTTP address as the gateways reach it.")
    ] = "http://ray-serve:8000",
    model_source: Annotated[
        str | None,
        typer.Option(
            help="The base model's checkpoint as Ray's nodes see it; default: its path in "
            "the model store."
        ),
    ] = None,
    min_replicas: Annotated[int, typer.Option(help="Fewest engine replicas.")] = 1,
    max_replicas: Annotated[int, typer.Option(help="Most engine replicas.")] = 2,
    adapters_per_replica: Annotated[
        int | None,
        typer.Option(
            help="Adapters each replica keeps registered (Ray's LRU); default: the engine's "
            "max_cpu_loras."
        ),
    ] = None,
    accelerator_type: Annotated[
        str | None, typer.Option(help="Ray accelerator type (A10G, L4, H100, ...).")
    ] = None,
    port: Annotated[int, typer.Option(help="Ray Serve's HTTP port.")] = 8000,
    domain: _Domains = None,
) -> None:
    """A Ray Serve LLM application for the base model with multi-LoRA over the registry.

    Writes OUT/ray-serve.yaml (run it with `serve run` or `serve deploy`) and
    OUT/gateway.env (the gateway's settings to front it). Ray serves each version as
    `<base model>:<domain>@v<N>`; the gateway keeps keys, guardrails, aliases and canaries.
    """
    config = settings()
    if layout_url is None:
        if layout_dir is None or not layout_dir.startswith(REMOTE_SCHEMES):
            raise DeployError(
                "--layout-url is needed: the object-storage prefix Ray loads adapters from "
                "(copy a local --layout folder there, e.g. with `aws s3 sync`)"
            )
        layout_url = layout_dir
    spec = RayDeployment(
        base_model=config.base_model,
        model_source=_model_source(model_source, config.base_model),
        layout_url=layout_url,
        max_lora_rank=config.max_lora_rank,
        max_loras=config.engine.max_loras,
        max_cpu_loras=config.engine.max_cpu_loras,
        max_adapters_per_replica=adapters_per_replica or config.engine.max_cpu_loras,
        max_model_len=config.engine.max_model_len,
        tensor_parallel_size=config.engine.tensor_parallel_size,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        accelerator_type=accelerator_type,
        port=port,
    )
    env = gateway_env(spec, ray_url)
    if layout_dir is not None:
        _export(layout_dir, domain)
    header = (
        f"# Ray Serve LLM for {spec.base_model} with lorastack's adapters from {spec.layout_url}.\n"
        f"#   serve run {RAY_CONFIG_FILE}      (or: serve deploy {RAY_CONFIG_FILE})\n"
        '# Written by `lorastack deploy ray`; docs/scaling.md, "Fleets: Ray Serve LLM".\n'
    )
    body = yaml.safe_dump(build_ray_config(spec), sort_keys=False)
    ray_file = _write(out_dir, RAY_CONFIG_FILE, header + body)
    env_lines = [f"{name}={shlex.quote(value)}" for name, value in env.items()]
    env_text = (
        "# The gateway's settings in front of Ray Serve, for a shell:\n"
        f"#   set -a; . {GATEWAY_ENV_FILE}; set +a; lorastack serve --host 0.0.0.0\n"
        "# Add client keys (LORASTACK_GATEWAY__KEYS_FILE or __API_KEYS).\n"
        + "\n".join(env_lines)
        + "\n"
    )
    env_file = _write(out_dir, GATEWAY_ENV_FILE, env_text)
    out.print(ray_file)
    out.print(env_file)
