"""The README's "Trying a query" example is what ``crisiswatch watches test`` prints for its
config and posts (pasted from a run: this keeps it so)."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from api.cli import main

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
FENCE = "`" * 3


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.upper().startswith("CRISISWATCH_")]:
        monkeypatch.delenv(name)


def _section() -> str:
    match = re.search(r"^### Trying a query\n(.*?)^## ", README, re.S | re.M)
    assert match, "the README's 'Trying a query' subsection is gone"
    return match.group(1)


def _block(section: str, language: str) -> str:
    """The first fenced block of ``language`` ("": none named), fences paired in order."""
    opened: str | None = None
    lines: list[str] = []
    for line in section.splitlines():
        if not line.startswith(FENCE):
            lines.append(line)
        elif opened is None:
            opened, lines = line[3:].strip(), []
        elif opened == language:
            return "\n".join(lines) + "\n"
        else:
            opened = None
    raise AssertionError(f"no {language or 'plain'} block in 'Trying a query'")


def test_the_readme_example_output_is_what_the_command_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    section = _section()
    (tmp_path / "watches.yaml").write_text(_block(section, "yaml"), encoding="utf-8")
    (tmp_path / "posts.jsonl").write_text(_block(section, "jsonl"), encoding="utf-8")
    command, _, shown = _block(section, "").partition("\n")
    assert command.startswith("$ crisiswatch watches test ")
    monkeypatch.chdir(tmp_path)
    code = main(shlex.split(command)[2:])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out == shown
