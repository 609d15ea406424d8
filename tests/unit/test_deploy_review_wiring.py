"""deploy/: references between files that the other deploy tests do not follow.

The image tag everywhere is the package's version; Grafana's home dashboard is a file it
mounts; the image's own HEALTHCHECK asks the port and path the processes serve; a
``histogram_quantile(...) > T`` rule can reach T with the metric's buckets; the HPA's
resource metric has a request to be a share of; every Secret key and every ``.env``
variable is read by something (an unread one is a misspelt name that leaves the real one
unset).
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

import yaml
from prometheus_client.metrics import Histogram

from core.metrics import Metrics
from tests.deploy_support import (
    COMPOSE_FILE,
    DEPLOY,
    ENV_EXAMPLE,
    PROMETHEUS,
    ROOT,
    compose,
    env_file,
    k8s_documents,
    load_yaml,
)

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["version"]
DOCKERFILE = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_documents() if doc["kind"] == kind]


def configmap_settings() -> dict[str, Any]:
    (cm,) = of_kind("ConfigMap")
    data: dict[str, Any] = yaml.safe_load(cm["data"]["crisiswatch.yaml"])
    return data


def tag_problems(text: str, version: str) -> list[str]:
    """``crisiswatch:<tag>`` image references whose tag is not ``version``."""
    return [
        f"crisiswatch:{tag}"
        for tag in re.findall(r"(?<![\w./-])crisiswatch:([\w][\w.-]*)", text)
        if tag != version
    ]


def test_the_tag_check_can_fail() -> None:
    assert tag_problems("image: crisiswatch:0.1.0", "0.1.0") == []
    assert tag_problems("docker build -t crisiswatch:0.2.0 .", "0.1.0") == ["crisiswatch:0.2.0"]
    # a path or a registry name is not the image
    assert tag_problems("registry.example.com/crisiswatch:x deploy/crisiswatch:y", "0") == []


def test_every_image_tag_is_the_package_version() -> None:
    texts = {
        "compose.yaml": COMPOSE_FILE.read_text("utf-8"),
        "Dockerfile": DOCKERFILE,
        "deploy/README.md": (DEPLOY / "README.md").read_text("utf-8"),
    }
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        texts[path.name] = path.read_text("utf-8")
    for where, text in texts.items():
        assert tag_problems(text, VERSION) == [], f"{where}: not {VERSION}"
    kustomization = load_yaml(DEPLOY / "k8s" / "kustomization.yaml")
    (image,) = kustomization["images"]
    assert image["name"] == "crisiswatch"
    assert str(image["newTag"]) == VERSION


def test_grafana_home_dashboard_is_a_mounted_file() -> None:
    grafana = compose()["services"]["grafana"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    mounts = {}
    for volume in grafana["volumes"]:
        host, container = volume.split(":")[:2]
        mounts[container] = host
    matches = [c for c in mounts if home.startswith(c.rstrip("/") + "/")]
    assert matches, f"{home} is in no mount"
    container = max(matches, key=len)
    host = COMPOSE_FILE.parent / mounts[container] / home[len(container) :].lstrip("/")
    assert host.is_file(), f"{home} -> {host}"


def test_the_image_healthcheck_asks_the_port_the_processes_serve() -> None:
    (exposed,) = re.findall(r"^EXPOSE (\d+)", DOCKERFILE, flags=re.MULTILINE)
    (health,) = re.findall(r"^HEALTHCHECK (?:[^\n]*\\\n)*[^\n]*", DOCKERFILE, flags=re.MULTILINE)
    (url,) = re.findall(r"http://127\.0\.0\.1:(\d+)(/\w+)", health)
    assert url == (exposed, "/healthz")
    compose_config = load_yaml(DEPLOY / "config" / "crisiswatch.yaml")
    for config in (compose_config, configmap_settings()):
        assert config["api"]["port"] == int(exposed)
    assert re.search(r'^ENTRYPOINT \["crisiswatch"\]', DOCKERFILE, flags=re.MULTILINE)


def _histograms() -> dict[str, tuple[float, ...]]:
    """Each histogram's ``_bucket`` series name -> its finite upper bounds."""
    found = {}
    for value in vars(Metrics()).values():
        if isinstance(value, Histogram):
            bounds = tuple(b for b in value._upper_bounds if b != float("inf"))
            found[value._name + "_bucket"] = bounds
    return found


_QUANTILE_RULE = re.compile(
    r"histogram_quantile\(\s*[\d.]+\s*,.*?\b(\w+_bucket)\b.*\)\s*>\s*([\d.e+]+)\s*$", re.S
)


def quantile_threshold_problems(expr: str, histograms: dict[str, tuple[float, ...]]) -> list[str]:
    """``histogram_quantile(...) > T`` with T at or above the top finite bucket never fires:
    a quantile in the +Inf bucket is reported as that bucket's lower bound."""
    match = _QUANTILE_RULE.search(expr.strip())
    if not match:
        return []
    series, threshold = match.group(1), float(match.group(2))
    top = max(histograms[series])
    if threshold >= top:
        return [f"{series}: > {threshold:g} cannot fire (top finite bucket {top:g})"]
    return []


def test_the_quantile_check_can_fail() -> None:
    histograms: dict[str, tuple[float, ...]] = {"x_seconds_bucket": (1.0, 10.0, 60.0)}
    expr = "histogram_quantile(0.99, sum by (le) (rate(x_seconds_bucket[5m]))) > %s"
    assert quantile_threshold_problems(expr % "30", histograms) == []
    assert quantile_threshold_problems(expr % "60", histograms) != []
    assert quantile_threshold_problems(expr % "300", histograms) != []


def test_quantile_alerts_can_reach_their_threshold() -> None:
    rules = load_yaml(PROMETHEUS / "rules.yml")
    histograms = _histograms()
    checked = 0
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "histogram_quantile" in rule["expr"]:
                assert _QUANTILE_RULE.search(rule["expr"].strip()), rule["alert"]
                checked += 1
                assert quantile_threshold_problems(rule["expr"], histograms) == [], rule["alert"]
    assert checked >= 1


def test_the_hpa_resource_metrics_have_requests() -> None:
    deployments = {d["metadata"]["name"]: d for d in of_kind("Deployment")}
    for hpa in of_kind("HorizontalPodAutoscaler"):
        target = deployments[hpa["spec"]["scaleTargetRef"]["name"]]
        containers = target["spec"]["template"]["spec"]["containers"]
        for metric in hpa["spec"]["metrics"]:
            assert metric["type"] == "Resource", "only resource metrics need no adapter"
            resource = metric["resource"]["name"]
            for c in containers:  # Utilization is a share of the request, of every container
                assert resource in c["resources"]["requests"], f"{c['name']}: no {resource}"


def test_every_secret_key_is_read_by_a_pod() -> None:
    (secret,) = of_kind("Secret")
    read = set()
    for workload in of_kind("Deployment") + of_kind("Job"):
        for c in workload["spec"]["template"]["spec"]["containers"]:
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == secret["metadata"]["name"]
                    assert ref["key"] in secret["stringData"], ref["key"]
                    read.add(ref["key"])
    assert set(secret["stringData"]) == read


def test_every_env_example_variable_is_read_by_compose() -> None:
    text = COMPOSE_FILE.read_text("utf-8")
    read = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    read |= {s["environment"] for s in compose().get("secrets", {}).values() if "environment" in s}
    assert set(env_file(ENV_EXAMPLE)) == read
