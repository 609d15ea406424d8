"""The command line: replay output format, check-config explanations, db upgrade."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import os
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from api.cli import main
from api.replay import ReplayError, run_replay
from api.settings import Settings
from core.clock import ManualClock
from core.events import Mention, Sentiment
from tests.conftest import DEFAULT_PG
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


async def test_replay_writes_each_storys_forecast_at_10_30_and_60_minutes(
    tmp_path: Path, clock: ManualClock
) -> None:
    # the crisis spreads over 70 minutes: its forecast ages pass while mentions still come
    stream = crisis_stream(clock.now(), n=300, minutes=70)
    path = tmp_path / "in.jsonl"
    path.write_text("".join(m.model_dump_json(exclude_none=True) + "\n" for m in stream))
    out = tmp_path / "out.jsonl"
    summary = await run_replay(Settings(), path, out, progress=False, classifier=FakeClassifier())
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    root = [line for line in lines if line["story_root"] == "bluesky:root-1"]
    forecasts = [line for line in root if "forecast_minutes" in line]
    assert [line["forecast_minutes"] for line in forecasts] == [10, 30, 60]
    assert summary.forecasts == len([line for line in lines if "forecast_minutes" in line])
    assert "forecasts written" in summary.render()
    t0 = stream[0].created_at
    for line in forecasts:
        age = timedelta(minutes=line["forecast_minutes"])
        assert line["at"] == (t0 + age - timedelta(milliseconds=1)).isoformat(
            timespec="milliseconds"
        ).replace("+00:00", "Z")
        assert line["predicted_size"] > 0
        # the levels are the latest change's
        changes = [c for c in root if "forecast_minutes" not in c and c["at"] <= line["at"]]
        assert (line["tier"], line["spread"]) == (changes[-1]["tier"], changes[-1]["spread"])
    # none asked: only the changes, the same ones
    plain = tmp_path / "plain.jsonl"
    await run_replay(
        Settings(), path, plain, progress=False, classifier=FakeClassifier(), forecast_at=()
    )
    only = [json.loads(line) for line in plain.read_text().splitlines()]
    assert [(c["story_root"], c["at"], c["tier"], c["spread"]) for c in only] == [
        (c["story_root"], c["at"], c["tier"], c["spread"])
        for c in lines
        if "forecast_minutes" not in c
    ]


def _write_stream(path: Path, mentions: list[Mention]) -> Path:
    data = "".join(m.model_dump_json(exclude_none=True) + "\n" for m in mentions).encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


async def test_replay_warns_of_an_input_not_sorted_by_time(
    tmp_path: Path, clock: ManualClock
) -> None:
    stream = crisis_stream(clock.now(), n=100, minutes=70)
    path = _write_stream(tmp_path / "in.jsonl", stream)
    out = tmp_path / "out.jsonl"
    summary = await run_replay(Settings(), path, out, progress=False, classifier=FakeClassifier())
    assert summary.out_of_order == 0 and "warning" not in summary.render()
    _write_stream(path, stream[50:] + stream[:50])
    summary = await run_replay(Settings(), path, out, progress=False, classifier=FakeClassifier())
    assert summary.out_of_order > 0
    assert "not sorted by created_at" in summary.render()


async def test_replay_refuses_to_write_over_its_own_input(
    tmp_path: Path, clock: ManualClock
) -> None:
    path = _write_stream(tmp_path / "in.jsonl", crisis_stream(clock.now(), n=50))
    before = path.read_bytes()
    with pytest.raises(ReplayError, match="is the input"):
        await run_replay(Settings(), path, path, progress=False, classifier=FakeClassifier())
    with pytest.raises(ReplayError, match="is the input"):  # the same file by another name
        await run_replay(
            Settings(),
            path,
            tmp_path / "sub" / ".." / "in.jsonl",
            progress=False,
            classifier=FakeClassifier(),
        )
    assert path.read_bytes() == before


async def test_a_replay_that_fails_leaves_no_output_to_score(
    tmp_path: Path, clock: ManualClock
) -> None:
    data = gzip.compress(
        "".join(
            m.model_dump_json(exclude_none=True) + "\n"
            for m in crisis_stream(clock.now(), n=3000, minutes=70)
        ).encode()
    )
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) * 3 // 4])  # a truncated download
    out = tmp_path / "out.jsonl"
    out.write_text('{"story_root": "stale"}\n')  # an earlier run's
    with pytest.raises(ReplayError, match="unreadable after line"):
        await run_replay(Settings(), path, out, progress=False, classifier=FakeClassifier())
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [path]  # nor a temporary file


class _InterruptingClassifier(FakeClassifier):
    """Cancels the replay's task from its worker thread at its ``at``-th batch."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at
        self.loop = asyncio.get_running_loop()
        self.task: asyncio.Task[object] | None = None

    def classify(self, texts: Sequence[str], langs: Sequence[str | None]) -> list[Sentiment]:
        if self.calls == self.at and self.task is not None:
            self.loop.call_soon_threadsafe(self.task.cancel)  # what Ctrl-C does to the run
        return super().classify(texts, langs)


async def test_an_interrupted_replay_leaves_no_output_that_looks_complete(
    tmp_path: Path, clock: ManualClock
) -> None:
    stream = [  # every text its own: the classifier sees every batch
        m.model_copy(update={"text": f"{m.text} #{i}"})
        for i, m in enumerate(crisis_stream(clock.now(), n=3000, minutes=70))
    ]
    path = _write_stream(tmp_path / "in.jsonl", stream)
    out = tmp_path / "out.jsonl"
    classifier = _InterruptingClassifier(at=3)
    classifier.task = run = asyncio.create_task(
        run_replay(Settings(), path, out, progress=False, classifier=classifier)
    )
    with pytest.raises(asyncio.CancelledError):
        await run
    assert classifier.calls > 3
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [path]


class _FailingClassifier(FakeClassifier):
    def classify(self, texts: Sequence[str], langs: Sequence[str | None]) -> list[Sentiment]:
        if any("poison" in text for text in texts):
            raise RuntimeError("the model cannot take this text")
        return super().classify(texts, langs)


async def test_a_replay_that_drops_events_says_so(tmp_path: Path, clock: ManualClock) -> None:
    """A stage that gives up on an event (dead-lettered after the bus's tries): the replay
    said nothing. Its output is kept (the rest of the run stands; a bad input line is
    skipped the same way) and the summary warns with the count."""
    stream = crisis_stream(clock.now(), n=50)
    stream[10] = stream[10].model_copy(update={"text": "poison"})
    path = _write_stream(tmp_path / "in.jsonl", stream)
    out = tmp_path / "out.jsonl"
    summary = await run_replay(
        Settings(), path, out, progress=False, classifier=_FailingClassifier()
    )
    assert summary.dropped == 1
    assert "warning: 1 event could not be handled and was dropped" in summary.render()
    assert out.exists()


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
    out = capsys.readouterr().out
    assert "OK" in out and "/metrics: open (set api.metrics_token" in out
    token = "api:\n  metrics_token: 'a-metrics-token-0123456789'\n"
    good.write_text(good.read_text() + token)
    assert main(["check-config", str(good)]) == 0
    out = capsys.readouterr().out
    assert "/metrics: behind api.metrics_token" in out and "0123456789" not in out


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


def test_db_downgrade_rolls_the_schema_back_and_forward(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    import sqlite3
    from contextlib import closing

    db = tmp_path / "cli.db"
    monkeypatch.setenv("CRISISWATCH_DATABASE__URL", f"sqlite+aiosqlite:///{db}")
    assert main(["db", "upgrade"]) == 0
    with closing(sqlite3.connect(db)) as conn:
        head = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    assert main(["db", "downgrade", "--revision", "-1"]) == 0
    assert "downgraded to -1" in capsys.readouterr().out
    with closing(sqlite3.connect(db)) as conn:
        below = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    assert below == f"{int(head) - 1:04d}"
    assert main(["db", "downgrade", "--revision", "nope"]) == 2
    line = _one_clear_line(capsys.readouterr().err)
    assert line.startswith("crisiswatch db downgrade: ")
    assert main(["db", "upgrade"]) == 0


def test_a_yaml_syntax_error_names_the_line_not_its_content(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("database:\n  url: postgresql+asyncpg://cw:S3cretPass@db/cw: [\n")
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "line" in err and "S3cretPass" not in err


def _one_clear_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("crisiswatch")]
    assert len(lines) == 1, err
    return lines[0]


def test_seeding_a_database_never_migrated_says_to_upgrade_it(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    db = tmp_path / "fresh.db"
    monkeypatch.setenv("CRISISWATCH_DATABASE__URL", f"sqlite+aiosqlite:///{db}")
    assert main(["templates", "seed"]) == 1
    line = _one_clear_line(capsys.readouterr().err)
    assert line.startswith("crisiswatch templates seed: the database has no response_templates")
    assert "crisiswatch db upgrade" in line
    assert main(["db", "upgrade"]) == 0
    assert main(["templates", "seed"]) == 0
    assert "starter template(s) added" in capsys.readouterr().out


def test_db_commands_on_an_unknown_revision_or_an_unreachable_database(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("CRISISWATCH_DATABASE__URL", f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    assert main(["db", "upgrade", "--revision", "nope"]) == 2
    line = _one_clear_line(capsys.readouterr().err)
    assert line == "crisiswatch db upgrade: Can't locate revision identified by 'nope'"
    # nothing listens on port 1; the password is not repeated
    url = "postgresql+asyncpg://cw:S3cretPass@127.0.0.1:1/cw"
    monkeypatch.setenv("CRISISWATCH_DATABASE__URL", url)
    for argv in (["db", "upgrade"], ["templates", "seed"]):
        assert main(argv) == 1
        line = _one_clear_line(capsys.readouterr().err)
        assert "cannot reach the database" in line and "S3cretPass" not in line


def test_db_commands_on_a_database_that_refuses_the_connection(monkeypatch, capsys) -> None:
    """No such database, or a user it does not know: one line, not a traceback (they were
    neither outages nor anything the command said)."""
    admin = os.environ.get("CRISISWATCH_TEST_POSTGRES", DEFAULT_PG)
    base, _, _ = admin.rpartition("/")
    scheme, _, rest = base.partition("://")
    host = rest.rpartition("@")[2]
    for url, why in (
        (f"{base}/cw_no_such_database", 'database "cw_no_such_database" does not exist'),
        (f"{scheme}://cw_no_such_user@{host}/test", 'role "cw_no_such_user" does not exist'),
    ):
        monkeypatch.setenv("CRISISWATCH_DATABASE__URL", url)
        assert main(["db", "upgrade"]) == 1
        line = _one_clear_line(capsys.readouterr().err)
        assert line.startswith("crisiswatch db upgrade: the database refused the connection")
        assert why in line


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["run", "--port", "70000"], "argument --port: 70000 is not a port: use 1 to 65535"),
        (["api", "--port", "0"], "argument --port: 0 is not a port"),
        (["scorer", "--port", "http"], "argument --port: 'http' is not a port number"),
        (["replay", "--input", "i", "--output", "o", "--limit", "-1"], "--limit: -1 is not 1"),
        (["replay", "--input", "i", "--output", "o", "--limit", "0"], "--limit: 0 is not 1"),
        (["replay", "--input", "i", "--output", "o", "--forecast-at", "10,x"], "'x' is not"),
        (["replay", "--input", "i", "--output", "o", "--forecast-at", "0"], "0 is not between"),
    ],
)
def test_bad_numbers_are_usage_errors(argv: list[str], says: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and says in err, err


@pytest.mark.parametrize("since", ["99999999999d", "9999999d", "3651d", "0h", "9" * 5000 + "m"])
def test_backfill_refuses_a_since_out_of_range(tmp_path: Path, since: str, capsys) -> None:
    config = tmp_path / "b.yaml"
    config.write_text(
        "listener:\n  watches: [{id: acme, terms: [acme]}]\n"
        "  sources:\n    hackernews: {queries: [acme]}\n"
    )
    out = tmp_path / "o.jsonl"
    argv = ["backfill", "--config", str(config), "--watch", "acme", "--since", since]
    assert main([*argv, "--output", str(out)]) == 2
    line = _one_clear_line(capsys.readouterr().err)
    assert line.startswith("crisiswatch backfill: --since") and "at most 3650d" in line
    assert not out.exists()


@pytest.mark.parametrize("journal", ["{tmp}/no-folder-here/j", "/proc/no-such-folder/j"])
def test_a_start_an_operator_can_fix_fails_in_one_line(tmp_path: Path, journal: str) -> None:
    """A setting or file problem found at start (here: a journal that cannot be made) is
    one CRITICAL line naming it, a non-zero exit, and no traceback."""
    import subprocess
    import sys

    from tests.support import free_port

    port = str(free_port())
    (tmp_path / "no-folder-here").write_text("a file where a folder should be")
    config = tmp_path / "c.yaml"
    config.write_text(
        f"database:\n  url: sqlite+aiosqlite:///{tmp_path}/cw.db\n"
        f"bus:\n  journal: {journal.format(tmp=tmp_path)}\n"
        "listener:\n  watches: []\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "run", "--config", str(config), "--port", port],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode != 0
    assert "crisiswatch cannot start: cannot create the folder of the bus journal" in done.stderr
    assert "Traceback" not in done.stderr
