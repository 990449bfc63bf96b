"""deploy/kubernetes/: every core object against Kubernetes' own schemas (offline, strict),
the CRD objects for their required fields, and the references between them and lorastack.

kubernetes-validate bundles the core types' JSON schemas; it has none for CRDs (the
Inference Extension's InferencePool, the Gateway API's Gateway and HTTPRoute), so those
are checked here for the fields their CRDs require.
"""

import ast
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from lorastack.settings import load_settings

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate (the dev extra)"
)

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.37"  # the newest that kubernetes-validate 1.37.0 bundles
CRD_KINDS = {
    ("inference.networking.k8s.io/v1", "InferencePool"),
    ("gateway.networking.k8s.io/v1", "Gateway"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
}


def _documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(FOLDER.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


DOCS = _documents()
CORE = [(f, d) for f, d in DOCS if (d["apiVersion"], d["kind"]) not in CRD_KINDS]


def _one(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for _, d in DOCS if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def _names(kind: str) -> set[str]:
    return {d["metadata"]["name"] for _, d in DOCS if d["kind"] == kind}


def _container(workload: str, kind: str = "Deployment") -> dict[str, Any]:
    containers = _one(kind, workload)["spec"]["template"]["spec"]["containers"]
    return dict(containers[0])


def test_every_file_is_in_the_kustomization_and_starts_with_its_command() -> None:
    kustomization = yaml.safe_load((FOLDER / "kustomization.yaml").read_text())
    files = sorted(p.name for p in FOLDER.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(kustomization["resources"]) == files
    for name in ["kustomization.yaml", *files]:
        first = (FOLDER / name).read_text().splitlines()[0]
        assert first.startswith("# "), name
        assert "kubectl apply -k deploy/kubernetes" in (FOLDER / name).read_text(), name


@pytest.mark.parametrize(
    "doc", [d for _, d in CORE], ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in CORE]
)
def test_core_objects_match_the_kubernetes_schema(doc: dict[str, Any]) -> None:
    assert kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True) == KUBERNETES_VERSION


def test_the_crd_objects_have_their_required_fields_and_no_core_schema() -> None:
    crds = [d for _, d in DOCS if (d["apiVersion"], d["kind"]) in CRD_KINDS]
    assert {(d["apiVersion"], d["kind"]) for d in crds} == CRD_KINDS
    for doc in crds:
        with pytest.raises(kubernetes_validate.SchemaNotFoundError):
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    pool = _one("InferencePool", "vllm")["spec"]
    # InferencePool v1 requires selector.matchLabels and targetPorts[].number; the picker
    # reference needs a name, and a port when it is a Service (the default kind).
    assert pool["selector"]["matchLabels"]
    assert all(1 <= p["number"] <= 65535 for p in pool["targetPorts"])
    picker = pool["endpointPickerRef"]
    assert picker["name"] and picker["port"]["number"]
    assert picker.get("failureMode", "FailClose") in ("FailOpen", "FailClose")
    gateway = _one("Gateway", "inference-gateway")["spec"]
    assert gateway["gatewayClassName"]
    assert all({"name", "protocol", "port"} <= set(lis) for lis in gateway["listeners"])
    route = _one("HTTPRoute", "vllm")["spec"]
    assert [p["name"] for p in route["parentRefs"]] == ["inference-gateway"]
    for rule in route["rules"]:
        for backend in rule["backendRefs"]:
            if backend.get("kind") == "InferencePool":
                assert backend["group"] == "inference.networking.k8s.io"
                assert backend["name"] in _names("InferencePool")
            else:
                assert backend["name"] in _names("Service") and backend["port"]


def test_the_pool_routes_to_the_vllm_pods_through_the_picker() -> None:
    pool = _one("InferencePool", "vllm")["spec"]
    vllm = _one("Deployment", "vllm")["spec"]["template"]
    assert pool["selector"]["matchLabels"].items() <= vllm["metadata"]["labels"].items()
    ports = {p["containerPort"] for p in _container("vllm")["ports"]}
    assert {p["number"] for p in pool["targetPorts"]} <= ports
    picker = _one("Service", pool["endpointPickerRef"]["name"])
    assert pool["endpointPickerRef"]["port"]["number"] in {
        p["port"] for p in picker["spec"]["ports"]
    }
    args = _container("lorastack-epp")["args"]
    assert "--pool-name=vllm" in args and "--pool-namespace=lorastack" in args


def test_the_picker_prefers_pods_holding_the_adapter() -> None:
    text = _one("ConfigMap", "lorastack-epp-config")["data"]["config.yaml"]
    config = yaml.safe_load(text)
    assert config["kind"] == "EndpointPickerConfig"
    declared = {p.get("name", p["type"]) for p in config["plugins"]}
    assert "lora-affinity-scorer" in declared
    for profile in config["schedulingProfiles"]:
        refs = [p["pluginRef"] for p in profile["plugins"]]
        assert set(refs) <= declared and "lora-affinity-scorer" in refs


def test_every_reference_names_an_object_defined_here() -> None:
    refs: dict[str, set[str]] = {
        "ConfigMap": set(),
        "Secret": set(),
        "PersistentVolumeClaim": set(),
    }
    for _, doc in DOCS:
        for node in _walk(doc):
            if "configMapRef" in node:
                refs["ConfigMap"].add(node["configMapRef"]["name"])
            if "configMap" in node and isinstance(node["configMap"], dict):
                refs["ConfigMap"].add(node["configMap"]["name"])
            if "secretKeyRef" in node:
                refs["Secret"].add(node["secretKeyRef"]["name"])
            if "secretName" in node:
                refs["Secret"].add(node["secretName"])
            if "claimName" in node:
                refs["PersistentVolumeClaim"].add(node["claimName"])
    for kind, names in refs.items():
        assert names <= _names(kind), kind
    for _, doc in DOCS:
        if doc["kind"] == "Service":
            selector = doc["spec"]["selector"]
            pods = [
                d["spec"]["template"]["metadata"]["labels"]
                for _, d in DOCS
                if d["kind"] in ("Deployment", "StatefulSet")
            ]
            assert any(selector.items() <= labels.items() for labels in pods), doc["metadata"]


def _walk(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        return [node, *(n for value in node.values() for n in _walk(value))]
    if isinstance(node, list):
        return [n for value in node for n in _walk(value)]
    return []


def test_the_gateways_are_stateless_replicas_probed_on_ready_and_health() -> None:
    deployment = _one("Deployment", "gateway")
    assert deployment["spec"]["replicas"] >= 2
    container = _container("gateway")
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert _one("HorizontalPodAutoscaler", "gateway")["spec"]["minReplicas"] >= 2


def test_the_gateway_settings_are_valid_lorastack_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = dict(_one("ConfigMap", "lorastack-settings")["data"])
    keys = _one("Secret", "lorastack-keys")["stringData"]
    (tmp_path / "keys.yaml").write_text(keys["keys.yaml"])
    settings["LORASTACK_HOME"] = str(tmp_path / "home")
    settings["LORASTACK_GATEWAY__KEYS_FILE"] = str(tmp_path / "keys.yaml")
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LORASTACK_GATEWAY__ADMIN_KEY", keys["admin"])
    config = load_settings()
    assert config.gateway.upstream_kind == "vllm-resolver"
    assert json.loads(settings["LORASTACK_GATEWAY__UPSTREAMS"]) == config.gateway.upstreams
    # vLLM serves the base model under the gateway's name for it, with the same rank.
    args = _container("vllm")["args"]
    assert f"--served-model-name={config.base_model}" in args
    assert f"--max-lora-rank={config.max_lora_rank}" in args
    assert f"--model=/var/lib/lorastack/models/{config.base_model}" in args


def test_vllm_runs_lorastacks_resolver_with_the_names_it_reads() -> None:
    tree = ast.parse((ROOT / "serve" / "lora_resolver.py").read_text())
    constants = {
        node.targets[0].id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Constant)
    }
    env = {e["name"]: e["value"] for e in _container("vllm")["env"]}
    assert env[constants["HOME_ENV"]] == "/var/lib/lorastack"
    assert env[constants["CACHE_ENV"]].startswith("/cache")
    assert env[constants["RUNTIME_LORA_ENV"]].lower() == "true"
    assert "--enable-lora" in _container("vllm")["args"]
