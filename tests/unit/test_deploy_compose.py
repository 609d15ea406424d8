"""deploy/compose/compose.yaml: the Compose Specification's JSON schema, references between
services and files, and every crisiswatch service's settings loaded as the container would.

No container engine runs here: these checks read the files only (see deploy/README.md,
"What CI checks").
"""

from __future__ import annotations

import json
import os
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from alerts.config import SlackChannelConfig
from api.cli import _parser
from api.settings import load_settings
from tests.deploy_support import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    ROLES,
    compose,
    env_file,
    interpolate,
)

COMPOSE_DIR = COMPOSE_FILE.parent


def crisiswatch_services() -> dict[str, dict[str, Any]]:
    """The services that run the crisiswatch image (their command is a CLI command)."""
    return {
        name: svc
        for name, svc in compose()["services"].items()
        if str(svc.get("image", "")).startswith("crisiswatch:")
    }


def test_compose_file_matches_the_compose_specification() -> None:
    schema_file = files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json"
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_schema_check_can_fail() -> None:
    schema_file = files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json"
    validator = jsonschema.Draft202012Validator(json.loads(schema_file.read_text("utf-8")))
    broken = compose()
    broken["services"]["api"]["depends_on"] = {"migrate": {"condition": "when_it_feels_like_it"}}
    broken["services"]["api"]["helthcheck"] = {}
    assert len(list(validator.iter_errors(broken))) >= 2


def test_every_service_has_an_image_or_a_build() -> None:
    for name, svc in compose()["services"].items():
        assert svc.get("image") or svc.get("build"), name
        build = svc.get("build")
        if build:
            context = (COMPOSE_DIR / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), f"{name}: no Dockerfile"
            assert (context / "pyproject.toml").is_file(), f"{name}: context is not the repo"


def test_depends_on_names_real_services_and_known_conditions() -> None:
    services = compose()["services"]
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        deps = {key: {} for key in deps} if isinstance(deps, list) else deps
        for target, how in deps.items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert target != name
            condition = how.get("condition", "service_started")
            if condition == "service_healthy":
                health = services[target].get("healthcheck", {})
                assert health.get("test") and not health.get("disable"), (
                    f"{name} waits for {target} to be healthy, but it has no healthcheck"
                )
            if condition == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} must be one-shot"


def test_every_bus_or_database_process_waits_for_the_migration() -> None:
    services = crisiswatch_services()
    for role in ROLES:
        deps = services[role]["depends_on"]
        assert deps["migrate"] == {"condition": "service_completed_successfully"}, role
    assert services["migrate"]["command"][:2] == ["db", "upgrade"]
    assert services["scorer"]["deploy"]["replicas"] == 2


def test_mounted_files_exist() -> None:
    data = compose()
    for name, cfg in data.get("configs", {}).items():
        assert (COMPOSE_DIR / cfg["file"]).is_file(), f"config {name}: {cfg['file']}"
    for name, secret in data.get("secrets", {}).items():
        if "file" in secret:
            assert (COMPOSE_DIR / secret["file"]).is_file(), f"secret {name}: {secret['file']}"
    for name, svc in data["services"].items():
        for secret in svc.get("secrets", []):
            source = secret if isinstance(secret, str) else secret["source"]
            assert source in data.get("secrets", {}), f"{name}: undeclared secret {source}"
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source} missing"
            else:
                assert source in data["volumes"], f"{name}: undeclared volume {source}"


def test_env_example_sets_every_required_variable() -> None:
    env = env_file(ENV_EXAMPLE)
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    interpolate(text, env)  # raises on a ${VAR:?...} the example leaves unset
    for name, secret in compose().get("secrets", {}).items():  # secrets made from .env
        if "environment" in secret:
            assert env.get(secret["environment"]), f"secret {name}: {secret['environment']}"
    with pytest.raises(AssertionError, match="POSTGRES_PASSWORD"):
        interpolate(text, {k: v for k, v in env.items() if k != "POSTGRES_PASSWORD"})


def _environment(svc: dict[str, Any]) -> dict[str, str]:
    env = env_file(ENV_EXAMPLE)
    return {k: interpolate(str(v), env) for k, v in svc.get("environment", {}).items()}


def _config_path(svc: dict[str, Any], args: Any) -> Path:
    """The host file behind the container path the command's --config names."""
    top = compose()["configs"]
    for mount in svc["configs"]:
        if mount["target"] == str(args.config):
            return COMPOSE_DIR / top[mount["source"]]["file"]
    raise AssertionError(f"--config {args.config} is not mounted")


@pytest.mark.parametrize("name", sorted(crisiswatch_services()))
def test_each_process_command_and_settings_load(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    svc = crisiswatch_services()[name]
    args = _parser().parse_args(svc["command"])  # a real CLI command (SystemExit if not)
    for key in [k for k in os.environ if k.startswith("CRISISWATCH_")]:
        monkeypatch.delenv(key)
    for key, value in _environment(svc).items():
        assert key.startswith("CRISISWATCH_"), f"{name}: {key}"
        monkeypatch.setenv(key, value)
    settings = load_settings(_config_path(svc, args))  # unknown or invalid keys raise
    assert settings.bus.kind == "kafka"
    assert settings.database.url.get_secret_value().startswith("postgresql+asyncpg://")
    assert settings.api.host == "0.0.0.0"  # reachable by Prometheus and the healthcheck
    port = getattr(args, "port", None) or settings.api.port
    health = " ".join(svc["healthcheck"]["test"]) if name != "migrate" else ""
    if name != "migrate":
        assert f"127.0.0.1:{port}/readyz" in health, name
        # /metrics behind the token Prometheus sends (test_deploy_observability)
        token = settings.api.metrics_token
        assert token is not None, f"{name}: /metrics open (api.metrics_token unset)"
        assert token.get_secret_value() == env_file(ENV_EXAMPLE)["CRISISWATCH_METRICS_TOKEN"]
    if name == "listener":
        assert settings.listener.webhook.enabled and settings.listener.webhook.secret
    if name == "api":
        assert settings.api.keys, "the API needs keys"
    if name == "alerter":
        channel = settings.alerts.channels["pr_slack"]
        assert isinstance(channel, SlackChannelConfig)
        # the environment wins over the file's placeholder
        assert channel.webhook_url.get_secret_value() == env_file(ENV_EXAMPLE)["SLACK_WEBHOOK_URL"]
    published = [p.rsplit(":", 1)[-1] for p in svc.get("ports", [])]
    assert all(int(p) == port for p in published), f"{name} publishes {published}, serves {port}"
