"""``crisiswatch watches test``: which posts each watch catches, and why, from the CLI."""

from __future__ import annotations

import gzip
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import api.watch_posts
import api.watch_test
from api.cli import main
from listener.config import WatchConfig
from listener.watches import WatchMatcher

CONFIG = """\
listener:
  watches:
    - id: acme
      aliases:
        acme: [acme, "acme corp", 艾克米]
        jobs: [hiring, "job opening*", 招聘]
      query: >-
        @acme AND (refund* OR (battery NEAR/3 (fire OR smoke*)) OR 退款 OR 投诉)
        AND NOT @jobs
      exclude: ["acme clouds"]
    - id: acme-zh
      query: '(acme OR 艾克米) AND (退款 OR 投诉)'
      langs: [zh]
    - id: weibo-only
      query: '艾克米 AND source:weibo'
"""


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.upper().startswith("CRISISWATCH_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "watches.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def watches(config: Path, *args: str) -> tuple[int, str, str]:
    code = main(["watches", "test", "--config", str(config), *args])
    return code, *_captured()


def _captured() -> tuple[str, str]:
    raise NotImplementedError  # replaced per test by the capsys fixture below


@pytest.fixture(autouse=True)
def _capture(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def captured() -> tuple[str, str]:
        out = capsys.readouterr()
        return out.out, out.err

    monkeypatch.setattr(sys.modules[__name__], "_captured", captured)


def rows(out: str) -> dict[str, str]:
    """The watch lines of a one-post table, continuation lines joined: id -> the rest."""
    found: dict[str, str] = {}
    last = ""
    for line in out.split("\n\nsummary:")[0].splitlines()[1:]:
        if line.startswith("   "):
            found[last] += " " + line.strip()
        else:
            last, rest = line.strip().split(None, 1)
            found[last] = rest
    return found


def test_an_english_post_shows_each_part_found_near_alias_and_prefix(config: Path) -> None:
    code, out, err = watches(
        config, "--text", "Acme refunds take weeks, and my battery caught fire", "--lang", "en"
    )
    assert code == 0, err
    assert out.startswith("[1] lang en: Acme refunds take weeks, and my battery caught fire\n")
    found = rows(out)
    assert found["acme"] == (
        'MATCH  acme (@acme) "Acme", refund* "refunds", '
        'battery NEAR/3 (fire OR smoke*) "battery caught fire"'
    )
    assert found["acme-zh"].startswith("no     langs [zh]: the post's language is en; ")
    assert found["weibo-only"] == "no     source:weibo: the source is not given; no 艾克米"
    assert out.endswith(
        "summary: 1 post(s)\n"
        "  watch       matched\n"
        "  acme        1 of 1\n"
        "  acme-zh     0 of 1\n"
        "  weibo-only  0 of 1\n"
    )


def test_a_chinese_post_in_traditional_characters_and_a_camel_case_tag(config: Path) -> None:
    code, out, _ = watches(
        config, "--text", "#AcmeRefund 艾克米退款太慢，投訴無門", "--lang", "zh-Hant"
    )
    assert code == 0
    found = rows(out)
    assert found["acme"] == (
        'MATCH  acme (@acme) "Acme", 艾克米 (@acme) "艾克米", refund* "Refund", 退款 "退款", '
        '投诉 "投訴"'
    )
    assert found["acme-zh"].startswith("MATCH")  # langs [zh] takes zh-Hant
    assert found["weibo-only"] == (
        'no     source:weibo: the source is not given (found: 艾克米 "艾克米")'
    )


def test_an_exclude_entry_and_an_and_not_part_name_what_vetoed(config: Path) -> None:
    code, out, _ = watches(
        config, "--watch", "acme", "--text", "Acme Clouds refund policy", "--text", "Acme hiring"
    )
    assert code == 0
    first, second = out.split("\n\n")[:2]
    assert rows(first + "\n\nsummary:")["acme"] == (
        'no     exclude entry "acme clouds" vetoed it: "Acme Clouds" (the query matched: '
        'acme (@acme) "Acme", refund* "refund")'
    )
    assert rows(second + "\n\nsummary:")["acme"] == (
        "no     none of (refund* OR (battery NEAR/3 (fire OR smoke*)) OR 退款 OR 投诉); "
        'NOT @jobs vetoed it: hiring (@jobs) "hiring" (found: acme (@acme) "Acme")'
    )


def test_a_near_too_far_apart_and_the_source_filter(config: Path) -> None:
    code, out, _ = watches(
        config,
        "--watch",
        "acme",
        "weibo-only",
        "--source",
        "Weibo",
        "--text",
        "艾克米 battery lasted a long day, then caught fire",
    )
    assert code == 0
    found = rows(out)
    assert "battery and (fire OR smoke*) both found, but never within 3 words" in found["acme"]
    assert found["weibo-only"] == 'MATCH  艾克米 "艾克米"'


def test_unknown_watch_is_a_usage_error_naming_the_known_ones(config: Path) -> None:
    code, out, err = watches(config, "--watch", "acme", "akme", "--text", "x")
    assert code == 2 and out == ""
    assert err == (
        "crisiswatch watches test: no watch 'akme' in the config; its watches: acme, acme-zh, "
        "weibo-only\n"
    )


def test_a_bad_query_prints_the_caret_error_check_config_prints(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "listener:\n  watches:\n    - {id: acme, query: 'acme AND (refund* OR fire'}\n",
        encoding="utf-8",
    )
    code, out, err = watches(path, "--text", "acme refund")
    assert code == 2 and out == ""
    assert "query error at column 10: unclosed '(': no ')' after it" in err
    assert "      acme AND (refund* OR fire\n               ^\n" in err
    assert main(["check-config", str(path)]) == 2
    _, check_err = _captured()
    assert err == check_err


def test_bad_input_lines_are_reported_counted_and_skipped(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api.watch_posts, "MAX_LINE_BYTES", 200)
    lines = [
        b'{"text": "acme refund", "lang": "en"}',
        b"not json",
        b'["not an object"]',
        b'{"txt": "acme"}',
        b'{"text": "acme", "lang": 5}',
        b'{"text": "caf\xe9"}',  # Latin-1, not UTF-8
        b'{"text": "' + b"x" * 300 + b'"}',  # over the (lowered) line limit
        b"",
        b'{"text": "acme refund again"}',
    ]
    path = tmp_path / "posts.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    code, out, err = watches(config, "--input", str(path), "--watch", "acme", "--quiet")
    assert code == 0
    assert err.splitlines() == [
        "crisiswatch watches test: line 2: not valid JSON (Expecting value); skipped",
        "crisiswatch watches test: line 3: item 1: not a JSON object (a line is "
        '{"text": ..., "lang"?, ...}); skipped',
        'crisiswatch watches test: line 4: no "text" string (a line is {"text": ..., '
        '"lang"?, "source"?, "id"?}); skipped',
        'crisiswatch watches test: line 5: "lang" must be a string; skipped',
        "crisiswatch watches test: line 6: not UTF-8 (byte 0xe9 at byte 14); skipped",
        "crisiswatch watches test: line 7: 313 bytes, longer than any post (200 at most); skipped",
    ]
    assert "[1] line 1, lang en: acme refund\n" in out
    assert "[2] line 9: acme refund again\n" in out
    assert "summary: 2 post(s); 6 bad input line(s) skipped\n" in out
    assert "  acme   2 of 2\n" in out


def test_a_text_longer_than_a_mentions_is_refused(config: Path, tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"text": "a" * 40_001}) + "\n", encoding="utf-8")
    code, _, err = watches(config, "--input", str(path), "--quiet")
    assert code == 0
    assert "line 1: the text is 40,001 characters long; a mention's is at most 40,000" in err
    code, out, err = watches(config, "--text", "a" * 40_001)
    assert code == 2 and out == ""
    assert "--text number 1: the text is 40,001 characters long" in err


RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["config", "watches", "results", "summary"],
    "additionalProperties": False,
    "properties": {
        "config": {"type": "string"},
        "watches": {"type": "array", "items": {"type": "string"}},
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["post", "verdicts"],
                "additionalProperties": False,
                "properties": {
                    "post": {
                        "type": "object",
                        "required": ["number", "line", "id", "lang", "source", "text"],
                        "additionalProperties": False,
                        "properties": {
                            "number": {"type": "integer"},
                            "line": {"type": ["integer", "null"]},
                            "id": {"type": ["string", "null"]},
                            "lang": {"type": ["string", "null"]},
                            "source": {"type": ["string", "null"]},
                            "text": {"type": "string"},
                        },
                    },
                    "verdicts": {"type": "array", "items": {"$ref": "#/$defs/verdict"}},
                },
            },
        },
        "summary": {
            "type": "object",
            "required": ["posts", "skipped_lines", "bad_lines", "watches"],
            "additionalProperties": False,
            "properties": {
                "posts": {"type": "integer"},
                "skipped_lines": {"type": "integer"},
                "bad_lines": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["line", "problem"],
                        "properties": {
                            "line": {"type": "integer"},
                            "problem": {"type": "string"},
                        },
                    },
                },
                "watches": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["watch", "matched", "posts"],
                        "additionalProperties": False,
                        "properties": {
                            "watch": {"type": "string"},
                            "matched": {"type": "integer"},
                            "posts": {"type": "integer"},
                        },
                    },
                },
            },
        },
    },
    "$defs": {
        "found": {
            "type": "object",
            "required": ["literal", "via", "text", "start", "end"],
            "additionalProperties": False,
            "properties": {
                "literal": {"type": "string"},
                "via": {"type": ["string", "null"]},
                "text": {"type": "string"},
                "start": {"type": ["integer", "null"]},
                "end": {"type": ["integer", "null"]},
            },
        },
        "verdict": {
            "type": "object",
            "required": ["watch", "matched", "match_all", "terms", "hits", "found", "why_not"],
            "additionalProperties": False,
            "properties": {
                "watch": {"type": "string"},
                "matched": {"type": "boolean"},
                "match_all": {"type": "boolean"},
                "terms": {"type": "array", "items": {"type": "string"}},
                "hits": {"type": "array", "items": {"$ref": "#/$defs/found"}},
                "found": {"type": "array", "items": {"$ref": "#/$defs/found"}},
                "why_not": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["reason", "found"],
                        "additionalProperties": False,
                        "properties": {
                            "reason": {"type": "string"},
                            "found": {"type": "array", "items": {"$ref": "#/$defs/found"}},
                        },
                    },
                },
            },
        },
    },
}

POSTS = [
    {"id": "x:1", "lang": "en", "text": "Acme refunds take weeks, and my battery caught fire"},
    {"id": "weibo:2", "lang": "zh-Hant", "source": "weibo", "text": "#AcmeRefund 艾克米退款"},
    {"id": "x:3", "lang": "en", "text": "Acme is hiring for the refund desk"},
    {"text": "nothing to see"},
]


def test_json_output_follows_its_schema_and_is_the_listeners_answer(
    config: Path, tmp_path: Path
) -> None:
    path = tmp_path / "posts.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in POSTS) + "{bad\n", encoding="utf-8")
    code, out, err = watches(config, "--input", str(path), "--json", "-", "--quiet")
    assert code == 0, err
    doc = json.loads(out)  # stdout holds the JSON document alone
    jsonschema.validate(doc, RESULT_SCHEMA)
    assert doc["watches"] == ["acme", "acme-zh", "weibo-only"]
    assert [r["post"]["line"] for r in doc["results"]] == [1, 2, 3, 4]
    assert doc["summary"]["skipped_lines"] == 1
    assert doc["summary"]["bad_lines"][0]["line"] == 5
    matcher = WatchMatcher(WatchConfig.model_validate(w) for w in _watch_dicts())
    for result in doc["results"]:
        post = result["post"]
        answer = {
            m.id: m.terms for m in matcher.match(post["text"], post["lang"], source=post["source"])
        }
        for verdict in result["verdicts"]:
            assert verdict["matched"] == (verdict["watch"] in answer)
            assert tuple(verdict["terms"]) == answer.get(verdict["watch"], ())
            assert bool(verdict["why_not"]) != verdict["matched"]
    first = doc["results"][0]["verdicts"][0]
    assert first["hits"][1] == {
        "literal": "refund*",
        "via": None,
        "text": "refunds",
        "start": 5,
        "end": 12,
    }
    vetoed = doc["results"][2]["verdicts"][0]
    assert vetoed["why_not"][0]["reason"] == "NOT @jobs vetoed it"
    assert vetoed["why_not"][0]["found"][0]["text"] == "hiring"
    summary = {w["watch"]: (w["matched"], w["posts"]) for w in doc["summary"]["watches"]}
    assert summary == {"acme": (2, 4), "acme-zh": (1, 4), "weibo-only": (1, 4)}


def _watch_dicts() -> list[dict[str, Any]]:
    import yaml

    loaded: dict[str, Any] = yaml.safe_load(CONFIG)
    return list(loaded["listener"]["watches"])


def test_only_and_a_json_file_with_the_summary_on_stdout(config: Path, tmp_path: Path) -> None:
    out_path = tmp_path / "out.json"
    code, out, err = watches(
        config,
        "--text",
        "Acme refund",
        "--text",
        "nothing",
        "--only",
        "matched",
        "--json",
        str(out_path),
    )
    assert code == 0
    doc = json.loads(out_path.read_text(encoding="utf-8"))
    jsonschema.validate(doc, RESULT_SCHEMA)
    assert [[v["watch"] for v in r["verdicts"]] for r in doc["results"]] == [["acme"]]
    assert out.startswith("summary: 2 post(s)\n")  # the table is not printed
    assert f"results written to {out_path}" in err
    code, out, _ = watches(config, "--text", "Acme refund", "--only", "unmatched")
    assert "  acme        MATCH" not in out and "  acme-zh     no" in out


def test_gzip_on_stdin_mentions_and_a_webhook_body(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mention = {
        "id": "weibo:9",
        "source": "weibo",
        "text": "艾克米 投诉",
        "lang": "zh",
        "created_at": "2026-01-05T09:00:00Z",
        "author": {"id": "u1", "followers": 10},
    }
    body = {"mentions": [mention, {**mention, "id": "weibo:10", "text": "其他"}]}
    data = gzip.compress((json.dumps(mention) + "\n" + json.dumps(body) + "\n").encode())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, out, err = watches(config, "--input", "-", "--watch", "weibo-only", "--quiet")
    assert code == 0, err
    assert "[1] line 1, id weibo:9, lang zh, source weibo: 艾克米 投诉\n" in out
    assert "[3] line 2, id weibo:10, lang zh, source weibo: 其他\n" in out
    assert "  weibo-only  2 of 3\n" in out


def test_progress_lines_go_to_stderr(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api.watch_test, "PROGRESS_SECONDS", 0.0)
    path = tmp_path / "posts.jsonl"
    path.write_text('{"text": "acme refund"}\n' * 3, encoding="utf-8")
    code, out, err = watches(config, "--input", str(path), "--json", str(tmp_path / "o.json"))
    assert code == 0
    progress = [line for line in err.splitlines() if line.startswith("watches test: ")]
    assert progress  # (with a rate: not compared whole)
    assert progress[-1].startswith("watches test: 100.0% of input, 3 lines, 3 posts")
    assert "watches test:" not in out


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--input", "missing.jsonl"], "missing.jsonl does not exist"),
        (["--text", "x", "--lang", "x" * 65], "--lang is 65 characters long; at most 64"),
        (["--text", "x", "--source", "a\nb"], "--source holds a control character"),
    ],
)
def test_usage_errors_exit_2_with_a_clear_message(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], problem: str
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = watches(config, *args)
    assert code == 2 and out == ""
    assert err.startswith("crisiswatch watches test: ") and problem in err


def test_a_truncated_gzip_and_a_json_path_that_is_a_folder(config: Path, tmp_path: Path) -> None:
    path = tmp_path / "posts.jsonl.gz"
    lines = "".join(
        json.dumps({"text": f"acme refund {i * 7919 % 10007}"}) + "\n" for i in range(3000)
    )
    path.write_bytes(gzip.compress(lines.encode())[:2000])
    code, _, err = watches(config, "--input", str(path), "--quiet")
    assert code == 2
    assert f"{path}: cannot read past line" in err
    code, _, err = watches(config, "--text", "x", "--json", str(tmp_path))
    assert code == 2 and f"--json {tmp_path} is a folder" in err
    code, _, err = watches(config, "--text", "x", "--json", str(config))
    assert code == 2 and f"--json {config} is the config file" in err
    assert config.read_text(encoding="utf-8") == CONFIG


def test_a_config_without_watches_and_text_and_input_together(
    tmp_path: Path,
) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("listener: {}\n", encoding="utf-8")
    code, _, err = watches(path, "--text", "x")
    assert code == 2 and "has no watches (listener.watches) to test" in err
    with pytest.raises(SystemExit) as exit_:
        main(["watches", "test", "--config", str(path), "--text", "x", "--input", "-"])
    assert exit_.value.code == 2


def test_help_says_reposts_inheriting_watches_are_out_of_scope(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["watches", "test", "--help"])
    assert "out of scope" in " ".join(capsys.readouterr().out.split())


def test_a_terms_watch_and_a_match_all_watch(tmp_path: Path) -> None:
    path = tmp_path / "terms.yaml"
    path.write_text(
        "listener:\n  watches:\n"
        "    - {id: t, terms: [acme, 'roadrunner 3000', 'refund*'], exclude: [hiring]}\n"
        "    - {id: all, match_all: true, exclude: [spam], langs: [en]}\n",
        encoding="utf-8",
    )
    code, out, _ = watches(path, "--text", "ACME Roadrunner  3000 refunds", "--text", "spam")
    assert code == 0
    first, second = out.split("\n\n")[:2]
    assert rows(first + "\n\nsummary:") == {
        "t": 'MATCH  acme "ACME", "roadrunner 3000" "Roadrunner 3000", refund* "refunds"',
        "all": "MATCH  match_all",
    }
    assert rows(second + "\n\nsummary:") == {
        "t": 'no     none of the watch\'s terms: (acme OR "roadrunner 3000" OR refund*)',
        "all": 'no     exclude entry spam vetoed it: "spam"',
    }
    code, out, _ = watches(path, "--text", "acme", "--lang", "fr", "--watch", "all")
    assert rows(out)["all"] == "no     langs [en]: the post's language is fr"


def test_a_source_with_spaces_is_read_as_the_filter_reads_it(tmp_path: Path) -> None:
    """A source of " Weibo " passes ``sources: [weibo]``: only the language is the reason."""
    path = tmp_path / "src.yaml"
    path.write_text(
        "listener:\n  watches:\n    - {id: w, match_all: true, langs: [zh], sources: [weibo]}\n",
        encoding="utf-8",
    )
    code, out, _ = watches(path, "--text", "acme", "--lang", "en", "--source", " Weibo ")
    assert code == 0
    assert rows(out)["w"] == "no     langs [zh]: the post's language is en"


def test_control_characters_of_a_post_are_shown_escaped(config: Path) -> None:
    code, out, _ = watches(config, "--watch", "acme", "--text", "Acme \x1b[2J refund \x9b")
    assert code == 0
    assert out.startswith("[1]: Acme \\x1b[2J refund \\x9b\n")
    assert "\x1b" not in out and "\x9b" not in out
