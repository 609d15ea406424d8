"""The grace periods of deploy/ (Kubernetes, Compose) leave a SIGTERM's stop its whole
budget (``api.runtime.stop_budget``) at the ``bus.stop_timeout`` they configure."""

from __future__ import annotations

from typing import Any

import yaml

from api.runtime import stop_budget
from tests.deploy_support import COMPOSE_FILE, DEPLOY, K8S, compose, k8s_documents, load_yaml


def _stop_timeout(config: dict[str, Any]) -> float:
    return float(config["bus"]["stop_timeout"])


def test_the_grace_periods_cover_the_stop_budget() -> None:
    compose_config = load_yaml(DEPLOY / "config" / "crisiswatch.yaml")
    budget = stop_budget(_stop_timeout(compose_config)).worst_case
    grace = compose()["x-crisiswatch"]["stop_grace_period"]
    assert grace.endswith("s") and float(grace[:-1]) >= budget, (COMPOSE_FILE, grace, budget)

    [config_map] = [doc for path, doc in k8s_documents() if doc.get("kind") == "ConfigMap"]
    k8s_config = yaml.safe_load(config_map["data"]["crisiswatch.yaml"])
    budget = stop_budget(_stop_timeout(k8s_config)).worst_case
    periods = {
        path.name: doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        for path, doc in k8s_documents()
        if doc.get("kind") in ("Deployment", "Job")
    }
    assert periods, K8S
    assert all(period >= budget for period in periods.values()), (periods, budget)
