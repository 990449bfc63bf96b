"""Deployments lorastack does not run itself: Ray Serve LLM configs and adapter layouts.

The Kubernetes manifests live in `deploy/kubernetes/` at the repository root (kustomize).
"""

from lorastack.deploy.layout import LayoutError, LayoutReport, export_layout
from lorastack.deploy.ray import DeployError, RayDeployment, gateway_env, ray_serve_config

__all__ = [
    "DeployError",
    "LayoutError",
    "LayoutReport",
    "RayDeployment",
    "export_layout",
    "gateway_env",
    "ray_serve_config",
]
