"""The README's ``crisiswatch`` commands against the real CLI, as a reader copying them finds:

- every ``crisiswatch <subcommand> ... --flag`` shown anywhere in README.md (shell blocks and
  inline code) names a subcommand that exists and only flags that subcommand takes
  (required arguments may be left out of a sentence's inline code, so it need not parse
  whole: ``tests/unit/test_deploy_docs.py`` parses the Production section's commands whole);
- every YAML block of the README that holds no ``"<...>"`` placeholder passes ``check-config``;
- the check-config error shown under "Watch query language" is what check-config prints.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
from pathlib import Path

import pytest

from api.cli import _parser, main

README_PATH = Path(__file__).resolve().parents[2] / "README.md"
README = README_PATH.read_text(encoding="utf-8")
FENCE = "`" * 3


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of each fenced block, fences paired in order (an opening fence
    may name a language, a closing one never does)."""
    blocks: list[tuple[str, str]] = []
    language: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith(FENCE):
            if language is None:
                language, lines = line[3:].strip(), []
            else:
                blocks.append((language, "\n".join(lines)))
                language = None
        elif language is not None:
            lines.append(line)
    return blocks


def crisiswatch_commands(text: str) -> list[str]:
    """The arguments after ``crisiswatch`` of each command in the shell blocks (continuation
    lines joined, comments cut; a commented-out command counts) and inline code (which
    may wrap)."""
    candidates: list[str] = []
    for language, body in fenced_blocks(text):
        if language in {"sh", "bash", "shell", ""}:
            for line in re.sub(r"\\\n\s*", " ", body).splitlines():
                candidates.append(line.strip().removeprefix("# ").split("  #")[0])
    prose = re.sub(rf"^{FENCE}.*?^{FENCE}", "", text, flags=re.S | re.M)
    candidates += [c.replace("\n", " ") for c in re.findall(r"`([^`]+)`", prose)]
    found = []
    for candidate in candidates:
        for match in re.finditer(r"(?:^|[\s|$]|/bin/)crisiswatch ([a-z][^|;&`]*)", candidate):
            found.append(match.group(1).strip())
    return found


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for action in parser._actions for o in action.option_strings}


def unknown_parts(args: str) -> list[str]:
    """What of ``args`` the CLI does not know: a subcommand, or a flag of the subcommand."""
    words = shlex.split(args.replace("[", " ").replace("]", " ").replace("(", " "))
    parser = _parser()
    path = ["crisiswatch"]
    while words and (subs := _subparsers(parser)):
        if words[0] not in subs:
            return [f"{' '.join(path)} has no subcommand {words[0]!r}"]
        path.append(words[0])
        parser = subs[words.pop(0)]
    options = _options(parser)
    return [
        f"{' '.join(path)} has no option {flag}"
        for word in words
        if word.startswith("--") and (flag := word.split("=")[0]) not in options
    ]


COMMANDS = crisiswatch_commands(README)


def test_the_scan_finds_the_readmes_commands() -> None:
    assert "db downgrade --revision 0014" in COMMANDS  # a commented-out line
    assert "check-config watches.yaml" in COMMANDS  # a block without a language
    assert any(c.startswith("bench detection --input") for c in COMMANDS)
    assert any(c.startswith("dead-letters redrive") for c in COMMANDS)  # inline code


@pytest.mark.parametrize("args", sorted(set(COMMANDS)), ids=lambda a: a[:50])
def test_each_readme_command_names_a_real_subcommand_and_flags(args: str) -> None:
    assert not unknown_parts(args), f"README: `crisiswatch {args}`"


def test_a_wrong_flag_is_caught() -> None:
    assert unknown_parts("replay --inptu x") == ["crisiswatch replay has no option --inptu"]
    assert unknown_parts("dead-letter list") == ["crisiswatch has no subcommand 'dead-letter'"]
    assert unknown_parts("dead-letters list [--since ISO] [--json]") == []


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.upper().startswith("CRISISWATCH_")]:
        monkeypatch.delenv(name)


YAML_EXAMPLES = [
    body for language, body in fenced_blocks(README) if language == "yaml" and '"<' not in body
]  # '"<64 hex digits ...>"': a placeholder for the reader to fill in


def test_the_yaml_scan_finds_the_examples() -> None:
    assert len(YAML_EXAMPLES) >= 4
    assert any("escalation_policies" in body for body in YAML_EXAMPLES)


@pytest.mark.parametrize("body", YAML_EXAMPLES, ids=lambda b: b.split("\n", 1)[0][:40])
def test_each_complete_yaml_example_passes_check_config(
    body: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "example.yaml"
    path.write_text(body, encoding="utf-8")
    code = main(["check-config", str(path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"{path}: OK" in out


def test_the_query_error_shown_is_what_check_config_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    match = re.search(
        rf"^{FENCE}\n\$ crisiswatch check-config watches\.yaml\n(.*?)^{FENCE}", README, re.S | re.M
    )
    assert match, "the README's check-config error example is gone"
    shown = match.group(1).rstrip("\n").splitlines()
    watch = re.search(r"watch '([^']+)'", shown[0])
    assert watch, shown[0]
    query = shown[1].strip()
    path = tmp_path / "watches.yaml"
    path.write_text(
        f"listener:\n  watches:\n    - {{id: {watch.group(1)}, query: '{query}'}}\n",
        encoding="utf-8",
    )
    assert main(["check-config", str(path)]) == 2
    printed = capsys.readouterr().err.splitlines()
    for line in shown:
        assert line in printed, f"README shows {line!r}; check-config prints {printed}"
