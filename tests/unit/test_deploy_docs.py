"""What the operator reads against what deploy/ holds: the README's "Production" section,
deploy/README.md and the comments in deploy/ name environment variables, alert rules, files,
``crisiswatch`` commands and ``kubectl`` steps; each must exist and work as written.

- every ``CRISISWATCH_<SECTION>__<KEY>`` set (compose, pods, the Secret) or named is a
  setting (``api.settings.Settings``, ``__`` between levels): pydantic-settings ignores a
  variable whose first level is not a setting (``CRISISWATCH_BUS_KIND``,
  ``CRISISWATCH_DATABSE__URL``), so loading the settings cannot catch it; one without
  ``__`` must be a variable of ``compose/.env`` (``env.example``) that compose.yaml reads;
- deploy/README.md's alert table lists exactly the rules of prometheus/rules.yml;
- a ``kubectl apply -f`` never applies an object with a container image (the image named
  under ``images:`` in kustomization.yaml reaches it only through ``-k``);
- every ``crisiswatch ...`` command shown parses with the real CLI, and the compose services
  the ``docker compose`` commands name exist;
- every file path shown exists.
"""

from __future__ import annotations

import re
import shlex
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from api.cli import _parser
from api.settings import Settings
from tests.deploy_support import (
    COMPOSE_FILE,
    DEPLOY,
    ENV_EXAMPLE,
    K8S,
    PROMETHEUS,
    ROOT,
    compose,
    env_file,
    k8s_documents,
    load_yaml,
    yaml_documents,
)

PREFIX = "CRISISWATCH_"
DEPLOY_README = DEPLOY / "README.md"


def production_section() -> str:
    """The README's "## Production" section, up to the next level-2 heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Production.*?(?=^## |\Z)", text, re.M | re.S)
    assert match, "README.md has no '## Production' section"
    return match.group(0)


def operator_texts() -> dict[str, str]:
    """Every text an operator follows: the Production section and deploy/'s text files."""
    texts = {"README.md#production": production_section()}
    for path in sorted(DEPLOY.rglob("*")):
        if path.is_file() and path.suffix in {".md", ".yaml", ".yml", ".json", ".example", ""}:
            texts[str(path.relative_to(ROOT))] = path.read_text(encoding="utf-8")
    return texts


# -- environment variables ------------------------------------------------------------------


def _members(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


def is_setting(parts: list[str], annotation: Any = Settings) -> bool:
    """Whether ``parts`` (a variable's levels, lower case) walk the settings' fields to the
    end: a model's field by name, any key of a mapping; a union when any member does."""
    if not parts:
        return True
    for member in _members(annotation):
        if member is Any:
            return True
        if isinstance(member, type) and issubclass(member, BaseModel):
            field = member.model_fields.get(parts[0])
            if field is not None and is_setting(parts[1:], field.annotation):
                return True
        elif typing.get_origin(member) in (dict, typing.Mapping) or member is dict:
            args = typing.get_args(member)
            if is_setting(parts[1:], args[1] if args else Any):
                return True
    return False


def setting_of(variable: str) -> list[str]:
    """``CRISISWATCH_ALERTS__CHANNELS__PR_SLACK__WEBHOOK_URL`` -> its levels, as
    pydantic-settings reads it (``env_prefix`` CRISISWATCH_, ``env_nested_delimiter`` __,
    not case sensitive)."""
    assert variable.startswith(PREFIX), variable
    return variable[len(PREFIX) :].lower().split("__")


def test_the_variable_check_can_fail() -> None:
    for good in (
        "CRISISWATCH_DATABASE__URL",
        "CRISISWATCH_API__METRICS_TOKEN",
        "CRISISWATCH_ALERTS__CHANNELS__PR_SLACK__WEBHOOK_URL",
        "CRISISWATCH_LISTENER__WEBHOOK__ENABLED",
        "CRISISWATCH_LOG_LEVEL",
    ):
        assert is_setting(setting_of(good)), good
    for bad in (
        "CRISISWATCH_BUS_KIND",  # one underscore: not nested, silently ignored
        "CRISISWATCH_DATABSE__URL",  # no such section: silently ignored
        "CRISISWATCH_API__METRIC_TOKEN",
        "CRISISWATCH_ALERTS__CHANNELS__PR_SLACK__HOOK_URL",  # no channel type has it
        "CRISISWATCH_API__KEYS__0",  # a list is set whole, as JSON
    ):
        assert not is_setting(setting_of(bad)), bad


def set_variables() -> dict[str, str]:
    """Variables the deployments hand the processes: name -> where."""
    found: dict[str, str] = {}
    for name, svc in compose()["services"].items():
        if str(svc.get("image", "")).startswith("crisiswatch:"):
            for key in svc.get("environment", {}):
                found[key] = f"compose service {name}"
    for path, doc in k8s_documents():
        if doc["kind"] == "Secret":
            for key in doc.get("stringData", {}):
                found[key] = f"{path.name}: Secret {doc['metadata']['name']}"
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []):
            for env in c.get("env", []):
                found[env["name"]] = f"{path.name}: {doc['metadata']['name']}"
    return found


def test_every_variable_the_processes_get_is_a_setting() -> None:
    problems = [
        f"{name} ({where})"
        for name, where in sorted(set_variables().items())
        if not is_setting(setting_of(name))
    ]
    assert not problems, f"not a setting (the process would ignore it): {problems}"


def test_every_variable_named_for_the_operator_exists() -> None:
    """A ``CRISISWATCH_*`` name in the docs and comments is a setting (it has ``__``) or a
    variable of ``.env`` that compose.yaml reads (``${NAME...}``)."""
    dotenv = env_file(ENV_EXAMPLE)
    compose_text = COMPOSE_FILE.read_text(encoding="utf-8")
    problems = []
    for where, text in operator_texts().items():
        for name in sorted(set(re.findall(r"\bCRISISWATCH_[A-Z0-9_]*[A-Z0-9]\b", text))):
            if "__" in name:
                if not is_setting(setting_of(name)):
                    problems.append(f"{where}: {name} is not a setting")
            elif name not in dotenv or f"${{{name}" not in compose_text:
                problems.append(f"{where}: {name} is neither a setting nor a compose variable")
    assert not problems, "\n".join(problems)


# -- alert rules ----------------------------------------------------------------------------


def documented_alerts() -> set[str]:
    """The first column of deploy/README.md's ``| alert | fires when |`` table; short names
    after the first (``CrisiswatchSourceDown, SourceStalled``) take its prefix."""
    text = DEPLOY_README.read_text(encoding="utf-8")
    table = re.search(r"^\| alert \| fires when \|\n\|[-| ]+\|\n((?:\|.*\n)+)", text, re.M)
    assert table, "deploy/README.md has no alert table"
    names = set()
    for row in table.group(1).splitlines():
        for name in re.split(r"\s*[,/]\s*", row.split("|")[1].strip()):
            names.add(name if name.startswith("Crisiswatch") else f"Crisiswatch{name}")
    return names


def test_the_alert_table_lists_every_rule() -> None:
    rules = load_yaml(PROMETHEUS / "rules.yml")
    defined = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    documented = documented_alerts()
    assert not documented - defined, f"documented, not in rules.yml: {documented - defined}"
    assert not defined - documented, f"in rules.yml, not documented: {defined - documented}"


def test_alert_names_in_the_docs_exist() -> None:
    rules = load_yaml(PROMETHEUS / "rules.yml")
    defined = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    for where, text in operator_texts().items():
        for name in set(re.findall(r"\bCrisiswatch[A-Z][A-Za-z]+\b", text)):
            assert name in defined, f"{where}: {name}"


# -- kubectl --------------------------------------------------------------------------------


def shell_commands(text: str) -> list[str]:
    """Commands of the Markdown's code blocks and inline code, continuation lines joined."""
    commands = []
    for lang, block in re.findall(r"```([\w-]*)\n(.*?)```", text, re.S):
        if lang not in ("", "sh", "bash", "shell"):
            continue  # (a yaml or json block: matched whole, so its closing fence opens none)
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(line.split("  #")[0].strip())
    commands += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    return commands


def test_kubectl_apply_f_never_bypasses_the_image_override() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    assert kustomization.get("images"), "kustomization.yaml names no image"
    applied = []
    for text in (DEPLOY_README.read_text(encoding="utf-8"), production_section()):
        for command in shell_commands(text):
            if not command.startswith("kubectl apply "):
                continue
            words = shlex.split(command)
            if "-f" not in words:
                continue
            files = [words[i + 1] for i, w in enumerate(words[:-1]) if w == "-f"]
            for name in files:
                path = ROOT / name
                assert path.is_file(), f"{command}: {name} does not exist"
                applied.append(path)
                for doc in yaml_documents(path):
                    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
                    images = [c.get("image") for c in spec.get("containers", [])]
                    assert not images, (
                        f"`{command}` applies {doc['kind']} {doc['metadata']['name']} "
                        f"with image {images} around kustomization.yaml's images: use -k"
                    )
    assert applied, "no kubectl apply -f found: the check read nothing"


# -- commands and paths ---------------------------------------------------------------------


def crisiswatch_commands() -> list[tuple[str, str]]:
    """``(where, arguments)`` of every crisiswatch command shown: in the Markdown's code,
    after ``crisiswatch`` (also ``docker run ... crisiswatch:TAG`` and ``docker compose ...
    run ... SERVICE``, whose arguments reach the image's ``crisiswatch`` entry point); in
    the other files' comments, an indented ``#   crisiswatch ...`` line (with its
    continuation lines; ``a | b``: each of them)."""
    found: list[tuple[str, str]] = []
    for where, text in operator_texts().items():
        if where.endswith((".md", "#production")):
            for command in shell_commands(text):
                match = re.match(r"(?:\.venv/bin/)?crisiswatch (.+)", command)
                if match:
                    found.append((where, match.group(1)))
                match = re.match(r"docker run .*?crisiswatch:\S+ (.+)", command)
                if match:
                    found.append((where, match.group(1)))
            continue
        joined = re.sub(r"\\\n\s*#?\s*", " ", text)
        for match in re.finditer(r"#\s{2,}crisiswatch (.+)", joined):
            for alternative in match.group(1).split(" | "):
                found.append((where, alternative.split("  #")[0].strip()))
    return found


def test_the_command_scan_finds_the_documented_commands() -> None:
    args = {a for _, a in crisiswatch_commands()}
    assert "check-config deploy/config/crisiswatch.yaml" in args
    assert "db upgrade" in args  # the Dockerfile's role list
    assert any(a.startswith("replay --config deploy/config/replay-") for a in args)


@pytest.mark.parametrize("where,args", crisiswatch_commands(), ids=lambda v: str(v)[:60])
def test_each_crisiswatch_command_shown_parses(where: str, args: str) -> None:
    try:
        _parser().parse_args(shlex.split(args))
    except SystemExit:
        pytest.fail(f"{where}: `crisiswatch {args}` is not a crisiswatch command")


def test_docker_compose_commands_name_real_services() -> None:
    services = compose()["services"]
    seen = 0
    for where, text in operator_texts().items():
        if not where.endswith((".md", "#production")):
            continue
        for command in shell_commands(text):
            for scaled in re.findall(r"--scale (\w[\w-]*)=\d+", command):
                assert scaled in services, f"{where}: {command}"
                seen += 1
            run = re.search(r"docker compose .*? run (?:--?\S+ )*([\w-]+) (.+)", command)
            if run:
                service, args = run.groups()
                assert service in services, f"{where}: {command}"
                assert str(services[service].get("image", "")).startswith("crisiswatch:")
                _parser().parse_args(shlex.split(args))  # SystemExit: not a command
                seen += 1
    assert seen >= 2, "the scan found no docker compose run / --scale command"


PATH = re.compile(r"(?<![\w/.:-])((?:deploy/|k8s/|prometheus/|grafana/|compose/|config/)[\w./-]+)")


def test_every_file_path_shown_exists() -> None:
    """Paths in backticks or links: from the repository root, or from deploy/."""
    problems = []
    for where, text in operator_texts().items():
        if not where.endswith((".md", "#production")):
            continue
        quoted = " ".join(re.findall(r"`([^`]+)`", text) + re.findall(r"\]\(([^)#]+)", text))
        for path in set(PATH.findall(quoted)):
            path = path.rstrip(".")
            if path.endswith("/.env") or "*" in path:
                continue  # made by the operator from env.example
            if not ((ROOT / path).exists() or (DEPLOY / path).exists()):
                problems.append(f"{where}: {path}")
    assert not problems, problems


def test_the_production_section_names_deploy_paths_from_the_root() -> None:
    """The main README is read from the repository root: its paths start with deploy/."""
    section = production_section()
    quoted = " ".join(re.findall(r"`([^`]+)`", section))
    for path in PATH.findall(quoted):
        assert path.startswith("deploy/"), f"README Production: {path} (from the root?)"
        assert Path(ROOT / path.rstrip(".")).exists() or path.endswith("/.env"), path
