"""deploy/kubernetes/: every core object against Kubernetes' own schemas (offline, strict),
the CRD objects for their required fields, and the references between them and lorastack.

kubernetes-validate bundles the core types' JSON schemas; it has none for CRDs (the
Inference Extension's InferencePool, the Gateway API's Gateway and HTTPRoute), so those
are checked here for the fields their CRDs require.
"""

import ast
import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from lorastack.settings import ENV_PREFIX, Settings, load_settings

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


# The pods that use the adapter registry: the gateways, the vLLM pods (their resolver) and
# the provisioning Job (`lorastack registry migrate`).
REGISTRY_USERS = [("Deployment", "gateway"), ("Deployment", "vllm"), ("Job", "lorastack-provision")]
Value = str | tuple[str, str]  # a literal, or (Secret, key)


def _env(kind: str, workload: str) -> dict[str, Value]:
    """The container's environment as Kubernetes builds it: `envFrom` (ConfigMaps' values,
    Secrets' keys) first, then `env`, which wins."""
    container = _container(workload, kind)
    env: dict[str, Value] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(_one("ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            secret = source["secretRef"]["name"]
            env.update({k: (secret, k) for k in _one("Secret", secret)["stringData"]})
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = (ref["name"], ref["key"])
    return env


def _mount_of(kind: str, workload: str, path: str) -> dict[str, Any]:
    """The volume mounted where `path` lies (the deepest mount that holds it)."""
    spec = _one(kind, workload)["spec"]["template"]["spec"]
    mounts = [
        m
        for m in spec["containers"][0]["volumeMounts"]
        if PurePosixPath(path).is_relative_to(m["mountPath"])
    ]
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    return dict(volume)


def _resolver_constants() -> dict[str, str]:
    """serve/lora_resolver.py's module constants, read without importing vLLM."""
    tree = ast.parse((ROOT / "serve" / "lora_resolver.py").read_text())
    return {
        node.targets[0].id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Constant)
    }


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
    settings = {
        **_one("ConfigMap", "lorastack-settings")["data"],
        **_one("ConfigMap", "lorastack-registry")["data"],
    }
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
    assert config.registry.index == "database"
    assert config.registry.store == settings["LORASTACK_REGISTRY__STORE"]
    assert config.registry.store.startswith("s3://")
    # vLLM serves the base model under the gateway's name for it, with the same rank.
    args = _container("vllm")["args"]
    assert f"--served-model-name={config.base_model}" in args
    assert f"--max-lora-rank={config.max_lora_rank}" in args
    assert f"--model=/var/lib/lorastack/models/{config.base_model}" in args


def test_vllm_runs_lorastacks_resolver_with_the_names_it_reads() -> None:
    constants = _resolver_constants()
    env = _env("Deployment", "vllm")
    assert env[constants["HOME_ENV"]] == "/var/lib/lorastack"
    cache, runtime_lora = env[constants["CACHE_ENV"]], env[constants["RUNTIME_LORA_ENV"]]
    assert isinstance(cache, str) and cache.startswith("/cache")
    assert isinstance(runtime_lora, str) and runtime_lora.lower() == "true"
    assert "--enable-lora" in _container("vllm")["args"]


def test_the_gateways_the_vllm_pods_and_the_job_share_one_registry() -> None:
    """One index (the database, its URL from the Secret) and one blob store (its credentials
    from the Secret) for every pod that reads or writes the registry: a version published
    or promoted anywhere is the one every gateway and every vLLM pod sees."""
    envs = {workload: _env(kind, workload) for kind, workload in REGISTRY_USERS}
    registry = ("LORASTACK_REGISTRY__INDEX", "LORASTACK_REGISTRY__STORE", "AWS_ENDPOINT_URL")
    gateway = envs["gateway"]
    assert gateway["LORASTACK_REGISTRY__INDEX"] == "database"
    for workload, env in envs.items():
        assert {name: env[name] for name in registry} == {n: gateway[n] for n in registry}, workload
        assert env["LORASTACK_DATABASE_URL"] == ("lorastack-database", "url"), workload
        assert env["AWS_ACCESS_KEY_ID"] == ("lorastack-object-store", "AWS_ACCESS_KEY_ID")
        assert env["AWS_SECRET_ACCESS_KEY"] == ("lorastack-object-store", "AWS_SECRET_ACCESS_KEY")
    # PostgreSQL: the index is shared between machines (SQLite serves one machine only).
    assert _one("Secret", "lorastack-database")["stringData"]["url"].startswith("postgresql://")


def test_each_pod_caches_its_verified_copies_on_its_own_emptydir() -> None:
    """The shared volume holds no adapter: the copies a pod fetches from the object store
    are on local, per-pod storage (docs/registry.md: keep the cache on local disk)."""
    resolver_cache = _resolver_constants()["CACHE_ENV"]
    for kind, workload in REGISTRY_USERS:
        env = _env(kind, workload)
        names = ["LORASTACK_REGISTRY__CACHE_DIR"]
        if workload == "vllm":
            names.append(resolver_cache)
        for name in names:
            path = env[name]
            assert isinstance(path, str) and path.startswith("/"), (workload, name)
            assert "emptyDir" in _mount_of(kind, workload, path), (workload, name)
    # The vLLM pods only read the shared volume (the base model); the resolver's home is it.
    vllm = _env("Deployment", "vllm")
    home = _mount_of("Deployment", "vllm", str(vllm[_resolver_constants()["HOME_ENV"]]))
    assert home["persistentVolumeClaim"] == {"claimName": "lorastack-home", "readOnly": True}


def test_the_vllm_pods_read_the_registry_as_the_resolver_loads_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The resolver builds its registry with `load_settings(home=...)`: the pod's
    environment must give it the database index, the store and the local cache."""
    env = _env("Deployment", "vllm")
    for name, value in env.items():
        if name.startswith(ENV_PREFIX) and isinstance(value, str):
            monkeypatch.setenv(name, value)
    url = _one("Secret", "lorastack-database")["stringData"]["url"]
    monkeypatch.setenv("LORASTACK_DATABASE_URL", url)
    config = load_settings(home=tmp_path)
    assert config.registry.index == "database"
    assert config.registry.store == env["LORASTACK_REGISTRY__STORE"]
    assert config.adapter_cache_dir == Path(str(env["LORASTACK_REGISTRY__CACHE_DIR"]))
    assert config.database_url == url


def _is_setting(name: str) -> bool:
    """`LORASTACK_A__B` names `Settings().a.b`; a name ending in `__` names a group."""
    model: type[BaseModel] = Settings
    parts = name.removeprefix(ENV_PREFIX).lower().split("__")
    group = parts[-1] == ""
    for i, part in enumerate(parts[:-1] if group else parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        last = i == len(parts) - 1
        if not last:
            annotation = field.annotation
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return False
            model = annotation
    return True


def test_every_lorastack_variable_named_here_is_a_setting() -> None:
    """Every `LORASTACK_*` name in the manifests, set or only mentioned in a comment, is one
    of lorastack's settings (pydantic-settings ignores a misspelt one silently), or one of
    the resolver's own variables."""
    resolver = {v for k, v in _resolver_constants().items() if k.endswith("_ENV")}
    names = set()
    for path in FOLDER.glob("*.yaml"):
        names |= set(re.findall(rf"\b{ENV_PREFIX}[A-Z0-9_]+", path.read_text()))
    assert {"LORASTACK_REGISTRY__INDEX", "LORASTACK_REGISTRY__STORE"} <= names
    assert {"LORASTACK_REGISTRY__CACHE_DIR", "LORASTACK_DATABASE_URL"} <= names
    unknown = sorted(n for n in names - resolver if not _is_setting(n))
    assert unknown == []
