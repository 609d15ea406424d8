"""The command line misused as an operator would: each mistake is a line or two naming
what is wrong and what to do, with a non-zero exit status, never a traceback."""

from __future__ import annotations

import asyncio
import io
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from api.cli import main

TRUTH_HEADER = "story_root,t0,final_size,t10_min,t50_min,tier\n"
TRUTH_ONE = TRUTH_HEADER + "x:1,2026-01-01T00:00:00+00:00,10,1.0,2.0,1\n"
"""A truth of one story (a truth without any is refused before the input is read)."""


@pytest.fixture(autouse=True)
def _no_database_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRISISWATCH_DATABASE__URL", raising=False)


def _sqlite(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def test_a_config_file_that_is_not_utf8_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "latin1.yaml"
    config.write_bytes("api: {host: 'café'}\n".encode("latin-1"))
    assert main(["check-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"cannot read config file {config}: not UTF-8 text" in err
    assert main(["db", "upgrade", "--config", str(config)]) == 2
    assert "not UTF-8 text" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("notaurl", "not a database URL"),
        ("foo://db/x", "unknown database kind 'foo'"),
        ("mysql://user:secret@db/x", "its driver is not installed"),
        ("sqlite:///x.db", "its driver is not an asyncio one"),
    ],
)
@pytest.mark.parametrize(
    "argv", [["db", "upgrade"], ["templates", "seed"], ["api"], ["check-config"]]
)
def test_an_unusable_database_url_is_a_configuration_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    url: str,
    problem: str,
    argv: list[str],
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"database: {{url: '{url}'}}\n", encoding="utf-8")
    args = [*argv, str(config)] if argv == ["check-config"] else [*argv, "--config", str(config)]
    monkeypatch.chdir(tmp_path)  # (a relative SQLite file would land here)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "database.url" in err and problem in err and "postgresql+asyncpg://" in err
    assert "secret" not in err  # the URL is not echoed


def _upgraded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    db = tmp_path / "cw.db"
    config = tmp_path / "c.yaml"
    config.write_text(f"database: {{url: '{_sqlite(db)}'}}\n", encoding="utf-8")
    assert main(["db", "upgrade", "--config", str(config)]) == 0
    assert main(["db", "upgrade", "--config", str(config)]) == 0  # twice: nothing to do
    capsys.readouterr()
    return db, str(config)


def test_db_upgrade_of_a_database_a_newer_release_migrated_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, config = _upgraded(tmp_path, capsys)
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0099'")
    for argv in (["db", "upgrade"], ["db", "downgrade", "--revision", "-1"]):
        assert main([*argv, "--config", config]) == 1
        err = capsys.readouterr().err
        assert "the database is at revision 0099, which this release does not have" in err
        assert "a newer crisiswatch migrated it" in err and "--revision 00" in err
    # an unknown --revision asked for is still a usage error, said as Alembic says it
    from alembic.script import ScriptDirectory

    from core.db import MIGRATIONS_DIR

    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE alembic_version SET version_num = ?", (head,))
    assert main(["db", "upgrade", "--revision", "zzz", "--config", config]) == 2
    assert "Can't locate revision identified by 'zzz'" in capsys.readouterr().err


def test_a_process_that_starts_on_a_database_a_newer_release_migrated_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``crisiswatch run`` (and every role that migrates at start) ended in an Alembic
    traceback; now one line at start (a START_ERRORS error: the app logs it, exit 3)."""
    from api.app import START_ERRORS
    from api.runtime import Role, Runtime
    from api.settings import Settings
    from core.db import MigratedByANewerRelease
    from core.settings import DatabaseConfig

    db, _ = _upgraded(tmp_path, capsys)
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0099'")
    settings = Settings(database=DatabaseConfig(url=_sqlite(db)))
    runtime = Runtime(settings, roles=frozenset({Role.API}), migrate=True)
    with pytest.raises(MigratedByANewerRelease, match="a newer crisiswatch migrated it"):
        asyncio.run(runtime.start())
    assert MigratedByANewerRelease in START_ERRORS


def test_keys_hash_refuses_a_key_that_is_not_utf8(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from api.cli import main; raise SystemExit(main())", "keys",
         "hash"],
        input=b"\xff\xfe0123456789abcdefghij\n",
        capture_output=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.decode().strip() == "crisiswatch keys hash: the key is not UTF-8 text"


def test_keys_hash_refuses_a_key_no_http_header_can_carry(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("0123456789abcdef\x00ghij\n"))
    assert main(["keys", "hash"]) == 2
    assert "control character" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO("0123456789abcdef\tghij\n"))
    assert main(["keys", "hash"]) == 0  # a tab may be sent in a header


def test_keys_hash_with_ctrl_d_at_the_prompt(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import getpass

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    def eof(prompt: str = "") -> str:
        raise EOFError

    monkeypatch.setattr(sys, "stdin", Tty())
    monkeypatch.setattr(getpass, "getpass", eof)
    assert main(["keys", "hash"]) == 2
    assert "at least 16 characters" in capsys.readouterr().err


def test_bench_detection_refuses_a_negative_story_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.jsonl").write_text("")
    (tmp_path / "truth.csv").write_text(TRUTH_HEADER)
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "detection", "--input", str(tmp_path / "in.jsonl"), "--truth",
              str(tmp_path / "truth.csv"), "--stories", "-3", "--detector-only"])  # fmt: skip
    assert exit_.value.code == 2
    assert "--stories: -3 is not 1 or more" in capsys.readouterr().err


def _bench(tmp_path: Path, stream: bytes | None, truth: bytes, *extra: str) -> list[str]:
    if stream is not None:
        (tmp_path / "in.jsonl").write_bytes(stream)
    (tmp_path / "truth.csv").write_bytes(truth)
    return ["bench", "detection", "--input", str(tmp_path / "in.jsonl"), "--truth",
            str(tmp_path / "truth.csv"), "--detector-only", "--quiet", *extra]  # fmt: skip


def test_bench_detection_names_a_bad_input_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_bench(tmp_path, b"\n{}\n", TRUTH_ONE.encode())) == 2
    assert "in.jsonl line 2: not a mention (id: Field required;" in capsys.readouterr().err
    assert main(_bench(tmp_path, b"{not json\n", TRUTH_ONE.encode())) == 2
    err = capsys.readouterr().err
    assert "in.jsonl line 1: not a mention (" in err and "Invalid JSON" in err


def test_bench_detection_names_an_unreadable_input_or_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.jsonl").mkdir()
    assert main(_bench(tmp_path, None, TRUTH_ONE.encode())) == 2
    assert "cannot read " in capsys.readouterr().err
    (tmp_path / "in.jsonl").rmdir()
    assert main(_bench(tmp_path, b"", b"story_root,t0\n\xff\xfe\n")) == 2
    assert "cannot read truth file" in capsys.readouterr().err
    import gzip

    cut = gzip.compress(b'{"id": "x"}\n' * 1000)[:40]
    assert main(_bench(tmp_path, cut, TRUTH_ONE.encode())) == 2
    assert "cannot read" in capsys.readouterr().err


def test_bench_detection_refuses_a_json_path_it_cannot_write_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "afile").write_text("")
    argv = _bench(tmp_path, b"", TRUTH_HEADER.encode(), "--json", str(tmp_path / "afile/x.json"))
    assert main(argv) == 2
    assert "afile is not a folder" in capsys.readouterr().err


def test_fit_size_names_a_bad_age(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in.jsonl").write_text("")
    (tmp_path / "truth.csv").write_text(TRUTH_HEADER)
    argv = ["bench", "fit-size", "--input", str(tmp_path / "in.jsonl"), "--truth",
            str(tmp_path / "truth.csv"), "--output", str(tmp_path / "m.json"),
            "--ages", "5,x"]  # fmt: skip
    assert main(argv) == 2
    assert "--ages: 'x' is not minutes" in capsys.readouterr().err
