"""A Ray Serve LLM application for the base model with multi-LoRA over the registry.

`ray_serve_config` is a Serve config file (`serve run FILE` / `serve deploy FILE`) with one
application built by `ray.serve.llm:build_openai_app`: the base model under lorastack's
name for it, and `lora_config.dynamic_lora_loading_path` pointing at the layout that
`export_layout` writes. Ray names an adapter `<base model>:<folder>`, so lorastack's
version `coffee-shop@v3` is `smollm2-135m-instruct:coffee-shop@v3` there and is
downloaded and loaded on its first request.

The gateway stays the front door (keys, guardrails, canaries, aliases): its upstream is
Ray's OpenAI endpoint with `upstream_kind: ray-serve` (`gateway_env`).

Checked against Ray's own schemas (`ray.serve.schema.ServeDeploySchema`, and
`ray.serve.llm.LLMServingArgs` for the application's arguments) in
tests/unit/test_deploy.py, in a child process; this module does not import Ray.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lorastack.errors import LorastackError

APP_NAME = "lorastack-llm"
BUILDER = "ray.serve.llm:build_openai_app"
# What Ray's LoraConfig accepts for dynamic_lora_loading_path (ray.llm's is_remote_path).
REMOTE_SCHEMES = ("s3://", "gs://", "abfss://", "azure://")
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


class DeployError(LorastackError):
    """A deployment cannot be generated from these values."""


@dataclass(frozen=True)
class RayDeployment:
    """What the generated Ray Serve application serves, and where."""

    base_model: str
    """The base model's name: Ray's `model_id` for it and lorastack's `base_model`."""
    model_source: str
    """Where Ray's nodes read the base model's checkpoint: a path they all see, or a
    Hugging Face id (lorastack's processes stay offline; Ray's replicas then need the hub)."""
    layout_url: str
    """The adapter layout (`export_layout`): an s3://, gs://, abfss:// or azure:// prefix."""
    max_lora_rank: int = 16
    max_loras: int = 8
    """Adapters in one batch (vLLM `max_loras`)."""
    max_cpu_loras: int = 8
    max_adapters_per_replica: int = 8
    """Adapters each replica keeps downloaded and registered (Ray's LRU)."""
    max_model_len: int = 2048
    tensor_parallel_size: int = 1
    min_replicas: int = 1
    max_replicas: int = 2
    accelerator_type: str | None = None
    """Ray's accelerator type (`A10G`, `H100`, ...); None: any GPU."""
    port: int = 8000

    def __post_init__(self) -> None:
        if not self.layout_url.startswith(REMOTE_SCHEMES):
            raise DeployError(
                f"--layout-url {self.layout_url!r}: Ray Serve LLM loads adapters from object "
                f"storage only; give a URL starting with {', '.join(REMOTE_SCHEMES)}"
            )
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise DeployError(
                f"replicas: need 1 <= min ({self.min_replicas}) <= max ({self.max_replicas})"
            )
        if self.max_cpu_loras < self.max_loras:
            raise DeployError(
                f"max_cpu_loras ({self.max_cpu_loras}) must be at least max_loras "
                f"({self.max_loras})"
            )
        if not 1 <= self.port <= 65535:
            raise DeployError(f"port {self.port} is not a TCP port")


def _llm_config(spec: RayDeployment) -> dict[str, Any]:
    config: dict[str, Any] = {
        "model_loading_config": {"model_id": spec.base_model, "model_source": spec.model_source},
        "lora_config": {
            "dynamic_lora_loading_path": spec.layout_url.rstrip("/"),
            "max_num_adapters_per_replica": spec.max_adapters_per_replica,
        },
        # vLLM's engine arguments, as `lorastack serve` passes them (serve/engine.py).
        "engine_kwargs": {
            "enable_lora": True,
            "max_lora_rank": spec.max_lora_rank,
            "max_loras": spec.max_loras,
            "max_cpu_loras": spec.max_cpu_loras,
            "max_model_len": spec.max_model_len,
            "tensor_parallel_size": spec.tensor_parallel_size,
        },
        "deployment_config": {
            "autoscaling_config": {
                "min_replicas": spec.min_replicas,
                "max_replicas": spec.max_replicas,
            }
        },
        "runtime_env": {"env_vars": dict(OFFLINE_ENV)},
    }
    if spec.accelerator_type is not None:
        config["accelerator_type"] = spec.accelerator_type
    return config


def ray_serve_config(spec: RayDeployment) -> dict[str, Any]:
    """The Serve config file's content (a dict for YAML)."""
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": spec.port},  # noqa: S104 - Ray's proxy
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": "/",
                "import_path": BUILDER,
                "args": {"llm_configs": [_llm_config(spec)]},
            }
        ],
    }


def gateway_env(spec: RayDeployment, ray_url: str) -> dict[str, str]:
    """The gateway's settings for fronting this application at `ray_url`."""
    if not ray_url.startswith(("http://", "https://")):
        raise DeployError(f"--ray-url {ray_url!r}: an http:// or https:// URL")
    return {
        "LORASTACK_BASE_MODEL": spec.base_model,
        "LORASTACK_MAX_LORA_RANK": str(spec.max_lora_rank),
        "LORASTACK_GATEWAY__UPSTREAMS": json.dumps([ray_url.rstrip("/")]),
        "LORASTACK_GATEWAY__UPSTREAM_KIND": "ray-serve",
    }
