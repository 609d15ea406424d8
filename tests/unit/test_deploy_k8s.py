"""deploy/k8s: every manifest against the Kubernetes OpenAPI schemas (strict: an unknown
field fails), the references between objects (selectors, ports, ConfigMap, Secret, HPA
target), probes, resources, security context, and each pod's settings loaded as it would.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from api.cli import _parser
from api.settings import load_settings
from tests.deploy_support import DEPLOY, K8S, ROLES, k8s_documents, load_yaml

K8S_VERSION = "1.33"  # the oldest Kubernetes these manifests promise to work on

DOCS = list(k8s_documents())


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in DOCS if doc["kind"] == kind]


def by_name(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in of_kind(kind)}


def workloads() -> list[dict[str, Any]]:
    return of_kind("Deployment") + of_kind("Job")


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize(
    "path,doc", DOCS, ids=[f"{p.name}:{d['kind']}/{d['metadata']['name']}" for p, d in DOCS]
)
def test_manifest_matches_the_kubernetes_schema(path: Path, doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]
    if doc["kind"] != "Namespace":
        assert doc["metadata"]["namespace"] == "crisiswatch", path
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_schema_check_can_fail() -> None:
    deployment = by_name("Deployment")["crisiswatch-api"]
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_names_are_unique_and_kustomization_lists_every_file() -> None:
    names = Counter((doc["kind"], doc["metadata"]["name"]) for _, doc in DOCS)
    assert all(n == 1 for n in names.values()), names
    kustomization = load_yaml(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


def test_one_deployment_and_service_per_role() -> None:
    deployments, services = by_name("Deployment"), by_name("Service")
    assert set(deployments) == {f"crisiswatch-{r}" for r in ROLES}
    for name, dep in deployments.items():
        spec = dep["spec"]
        assert selects(spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"])
        svc = services[name]
        assert selects(svc["spec"]["selector"], spec["template"]["metadata"]["labels"])
        port_names = {p["name"] for p in container(dep)["ports"]}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in port_names, f"{name}: {port['targetPort']}"
    # no Service or PDB selects the pods of two roles
    for kind in ("Service", "PodDisruptionBudget"):
        for obj in of_kind(kind):
            sel = obj["spec"]["selector"]
            sel = sel.get("matchLabels", sel)
            hit = [
                d
                for d in deployments.values()
                if selects(sel, d["spec"]["template"]["metadata"]["labels"])
            ]
            assert len(hit) == 1, f"{kind} {obj['metadata']['name']} selects {len(hit)} roles"


def least_replicas(deployment: dict[str, Any]) -> int:
    """The fewest pods a Deployment runs: its autoscaler's ``minReplicas`` where one
    targets it (the Deployment then sets no count of its own), else its ``replicas``."""
    name = deployment["metadata"]["name"]
    scalers = [
        h for h in of_kind("HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"]["name"] == name
    ]
    if scalers:
        assert "replicas" not in deployment["spec"], f"{name}: autoscaled, yet sets replicas"
        return int(scalers[0]["spec"]["minReplicas"])
    return int(deployment["spec"].get("replicas", 1))


def test_pod_disruption_budgets_cover_every_role_and_never_block_a_drain() -> None:
    deployments = by_name("Deployment")
    pdbs = of_kind("PodDisruptionBudget")
    covered = set()
    for pdb in pdbs:
        sel = pdb["spec"]["selector"]["matchLabels"]
        (dep,) = [
            d
            for d in deployments.values()
            if selects(sel, d["spec"]["template"]["metadata"]["labels"])
        ]
        covered.add(dep["metadata"]["name"])
        if "minAvailable" in pdb["spec"]:
            replicas = least_replicas(dep)
            assert pdb["spec"]["minAvailable"] < replicas, pdb["metadata"]["name"]
    assert covered == set(deployments)


def test_scorer_autoscales_within_its_partitions() -> None:
    (hpa,) = of_kind("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert target["kind"] == "Deployment"
    assert target["name"] == "crisiswatch-scorer"
    assert target["name"] in by_name("Deployment")
    config = load_yaml_config()
    assert hpa["spec"]["maxReplicas"] <= config["bus"]["partitions"]  # more would sit idle
    assert hpa["spec"]["minReplicas"] >= 2


def test_probes_resources_and_security() -> None:
    for workload in workloads():
        name = workload["metadata"]["name"]
        c = container(workload)
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["automountServiceAccountToken"] is False
        # no service-link variables (CRISISWATCH_API_PORT, ...: the Services are named
        # crisiswatch-*) among the CRISISWATCH_* settings
        assert pod["enableServiceLinks"] is False
        sec = c["securityContext"]
        assert sec["readOnlyRootFilesystem"] is True
        assert sec["allowPrivilegeEscalation"] is False
        assert sec["capabilities"]["drop"] == ["ALL"]
        assert {"cpu", "memory"} <= set(c["resources"]["requests"])
        assert {"cpu", "memory"} <= set(c["resources"]["limits"])
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert "/tmp" in mounts, f"{name}: read-only root needs a writable /tmp"
        if workload["kind"] == "Deployment":
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", name
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", name
            assert c["startupProbe"]["httpGet"]["path"] == "/healthz", name
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                assert c[probe]["httpGet"]["port"] == "http", f"{name} {probe}"
    scorer = container(by_name("Deployment")["crisiswatch-scorer"])
    assert _mebibytes(scorer["resources"]["limits"]["memory"]) <= 600 * 1_000_000 / 2**20


def _mebibytes(quantity: str) -> float:
    units = {"Mi": 1.0, "Gi": 1024.0, "M": 1_000_000 / 2**20, "G": 1e9 / 2**20}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity) / 2**20


def load_yaml_config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(
        by_name("ConfigMap")["crisiswatch-config"]["data"]["crisiswatch.yaml"]
    )
    return data


@pytest.mark.parametrize(
    "name", sorted(w["metadata"]["name"] for w in of_kind("Deployment") + of_kind("Job"))
)
def test_each_pod_command_and_settings_load(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    workload = {w["metadata"]["name"]: w for w in workloads()}[name]
    c = container(workload)
    pod = workload["spec"]["template"]["spec"]
    args = _parser().parse_args(c["args"])  # a real CLI command (SystemExit if not)
    # --config names a key of the mounted ConfigMap
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_path = Path(args.config)
    (volume,) = [n for n, path in mounts.items() if Path(path) == config_path.parent]
    cm = by_name("ConfigMap")[volumes[volume]["configMap"]["name"]]
    text = cm["data"][config_path.name]
    (tmp_path / config_path.name).write_text(text, encoding="utf-8")

    secrets = by_name("Secret")
    for key in [k for k in os.environ if k.startswith("CRISISWATCH_")]:
        monkeypatch.delenv(key)
    for env in c.get("env", []):
        if "valueFrom" in env:
            ref = env["valueFrom"]["secretKeyRef"]
            value = secrets[ref["name"]]["stringData"][ref["key"]]
        else:
            value = env["value"]
        monkeypatch.setenv(env["name"], value)
    settings = load_settings(tmp_path / config_path.name)  # unknown or invalid keys raise

    if args.command == "db":
        assert settings.database.url.get_secret_value().startswith("postgresql+asyncpg://")
        return
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["http"] == (getattr(args, "port", None) or settings.api.port)
    assert settings.api.host == "0.0.0.0"
    assert settings.bus.kind == "kafka"
    # /metrics behind the Secret's token, which Prometheus sends (prometheus-k8s.yml)
    token = settings.api.metrics_token
    assert token is not None, f"{name}: /metrics open (api.metrics_token unset)"
    metrics_env = {e["name"]: e for e in c["env"]}["CRISISWATCH_API__METRICS_TOKEN"]
    assert metrics_env["valueFrom"]["secretKeyRef"]["name"] in secrets
    if args.command in ("alerter", "api", "listener", "detector"):
        assert settings.database.url.get_secret_value().startswith("postgresql+asyncpg://")
    if args.command == "api":
        assert settings.api.keys


def test_secret_values_are_marked_placeholders() -> None:
    for secret in of_kind("Secret"):
        for key, value in secret["stringData"].items():
            assert "REPLACE" in value, f"{key} does not look like a placeholder"


def test_configmap_differs_from_the_compose_config_only_in_addresses() -> None:
    compose_config = load_yaml(DEPLOY / "config" / "crisiswatch.yaml")
    k8s_config = load_yaml_config()
    for config in (compose_config, k8s_config):
        del config["bus"]["bootstrap_servers"], config["bus"]["replication_factor"]
        del config["api"]["public_url"]
    assert k8s_config == compose_config
