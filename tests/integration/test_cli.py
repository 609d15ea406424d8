"""The command line: replay output format, check-config explanations, db upgrade."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import pytest

from api.cli import main
from api.replay import run_replay
from api.settings import Settings
from core.clock import ManualClock
from tests.fakes import FakeClassifier
from tests.support import crisis_stream


async def test_replay_writes_one_line_per_tier_or_spread_change(
    tmp_path: Path, clock: ManualClock
) -> None:
    stream = crisis_stream(clock.now(), n=300, minutes=8)
    path = tmp_path / "in.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for m in stream[:300]:
            f.write(m.model_dump_json(exclude_none=True) + "\n")
        f.write("{not json\n")
    out = tmp_path / "out.jsonl"
    summary = await run_replay(Settings(), path, out, progress=False, classifier=FakeClassifier())
    assert summary.mentions == 300 and summary.rejected == 1
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines, "the complaint's spread must show up"
    assert all(
        set(line) == {"story_root", "at", "tier", "spread", "predicted_size"} for line in lines
    )
    root = [line for line in lines if line["story_root"] == "bluesky:root-1"]
    assert max(line["tier"] for line in root) == 3
    assert max(line["spread"] for line in root) == 3
    assert all(line["at"].endswith("Z") for line in lines)
    # each line is a change: consecutive lines of a story differ in tier or spread
    for a, b in itertools.pairwise(root):
        assert (a["tier"], a["spread"]) != (b["tier"], b["spread"])
    assert summary.rate > 0 and "mentions/s" in summary.render()


def test_check_config_explains_unknown_keys_and_bad_references(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "listner: {}\n"
        "alerts:\n  teams:\n    pr: {channels: [nowhere]}\n"
        "api:\n  keys: [{name: k, key: short, role: responder}]\n"
    )
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "listner: unknown key" in err
    assert "unknown channel 'nowhere'" in err
    assert "at least 16 characters" in err

    good = tmp_path / "good.yaml"
    good.write_text("listener:\n  watches: [{id: acme, brand: Acme, terms: [acme]}]\n")
    assert main(["check-config", str(good)]) == 0
    assert "OK" in capsys.readouterr().out


def test_check_config_never_echoes_a_secret(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "secret.yaml"
    bad.write_text(
        "alerts:\n  channels:\n    s: {type: slack, webhook_url: 'ftp://T000/SECRETVALUE'}\n"
    )
    assert main(["check-config", str(bad)]) == 2
    assert "SECRETVALUE" not in capsys.readouterr().err


def test_db_upgrade_creates_the_schema(tmp_path: Path, monkeypatch, capsys) -> None:
    db = tmp_path / "cli.db"
    monkeypatch.setenv("CRISISWATCH_DATABASE__URL", f"sqlite+aiosqlite:///{db}")
    assert main(["db", "upgrade"]) == 0
    assert db.exists() and "upgraded" in capsys.readouterr().out


def test_a_yaml_syntax_error_names_the_line_not_its_content(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("database:\n  url: postgresql+asyncpg://cw:S3cretPass@db/cw: [\n")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "line" in err and "S3cretPass" not in err
