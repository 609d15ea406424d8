"""The commented-out examples in the configurations deploy/ ships (deploy/config/*.yaml and
the Kubernetes ConfigMap) still load with the current code once uncommented: an operator
copies them as they are, and no other test reads a comment's YAML.

An example is a run of comment lines ``#   key: ...`` (three spaces after ``#``, then a
lower-case key) at one indentation; it belongs to the section of the nearest uncommented keys
above it with less indentation (``listener:`` for ``  #   sources:``), and is merged there.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.cli import main

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
_EXAMPLE = re.compile(r"^(\s*)#   ([a-z_]+:.*)$")
_KEY = re.compile(r"^(\s*)([a-z_]+):")


def commented_examples(text: str) -> list[tuple[list[str], str]]:
    """``(section path, YAML text)`` of every commented-out example in ``text``."""
    lines = text.splitlines()
    found: list[tuple[list[str], str]] = []
    stack: list[tuple[int, str]] = []  # (indentation, key) of the uncommented keys above
    i = 0
    while i < len(lines):
        match = _EXAMPLE.match(lines[i])
        if match:
            indent = match.group(1)
            block = []
            while i < len(lines) and lines[i].startswith(f"{indent}#   "):
                block.append(lines[i][len(indent) + 4 :])
                i += 1
            found.append(([k for at, k in stack if at < len(indent)], "\n".join(block)))
            continue
        key = _KEY.match(lines[i])
        if key:
            at = len(key.group(1))
            stack = [(a, k) for a, k in stack if a < at] + [(at, key.group(2))]
        i += 1
    return found


def _configmap_text() -> str:
    for doc in yaml.safe_load_all((DEPLOY / "k8s" / "config.yaml").read_text(encoding="utf-8")):
        if doc and doc.get("kind") == "ConfigMap":
            text: str = doc["data"]["crisiswatch.yaml"]
            return text
    raise AssertionError("deploy/k8s/config.yaml has no ConfigMap")


def shipped_configs() -> dict[str, str]:
    found = {
        str(path.relative_to(DEPLOY)): path.read_text(encoding="utf-8")
        for path in sorted((DEPLOY / "config").glob("*.yaml"))
    }
    found["k8s/config.yaml ConfigMap"] = _configmap_text()
    return found


EXAMPLES = [
    (where, path, block)
    for where, text in shipped_configs().items()
    for path, block in commented_examples(text)
]


def with_example(text: str, path: list[str], block: str) -> dict[str, Any]:
    """The configuration ``text`` with ``block`` merged into the section at ``path``."""
    config: dict[str, Any] = yaml.safe_load(text)
    example = yaml.safe_load(block)
    assert isinstance(example, dict), f"not a YAML mapping:\n{block}"
    section = config
    for key in path:
        section = section.setdefault(key, {})
    section.update(example)
    return config


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.upper().startswith("CRISISWATCH_")]:
        monkeypatch.delenv(name)


def _passes(config: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """'' when ``crisiswatch check-config`` accepts ``config``, else what it said."""
    path = tmp_path / "crisiswatch.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    code = main(["check-config", str(path)])
    out, err = capsys.readouterr()
    return "" if code == 0 else err or out


def test_the_scan_finds_the_examples() -> None:
    text = "a: 1\nlistener:\n  watches: []\n  #   sources:\n  #     bluesky: {}\n  # prose\n"
    assert commented_examples(text) == [(["listener"], "sources:\n  bluesky: {}")]
    # prose, variable lists (upper case) and commands are not examples
    assert commented_examples("#   CRISISWATCH_X__Y  what\n# Validate:  crisiswatch x\n") == []
    where = {(w, tuple(p)) for w, p, _ in EXAMPLES}
    assert ("config/crisiswatch.yaml", ("listener",)) in where
    assert ("k8s/config.yaml ConfigMap", ("listener",)) in where


def test_the_example_check_can_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (DEPLOY / "config" / "crisiswatch.yaml").read_text(encoding="utf-8")
    good = "sources:\n  bluesky: {idle_timeout_seconds: 120}"
    assert _passes(with_example(text, ["listener"], good), tmp_path, capsys) == ""
    renamed = good.replace("idle_timeout_seconds", "idle_timeout_secs")
    assert "idle_timeout_secs" in _passes(
        with_example(text, ["listener"], renamed), tmp_path, capsys
    )


@pytest.mark.parametrize(
    "where,path,block", EXAMPLES, ids=[f"{w}:{'.'.join(p)}" for w, p, _ in EXAMPLES]
)
def test_each_commented_example_loads(
    where: str,
    path: list[str],
    block: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = shipped_configs()[where]
    assert _passes(with_example(text, path, block), tmp_path, capsys) == ""
