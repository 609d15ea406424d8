"""``crisiswatch watches test``: which posts each watch of a config catches, and why.

    crisiswatch watches test --config CONFIG.yaml [--watch ID ...]
        (--text "a post" [--text ...] | --input POSTS.jsonl|.jsonl.gz|-)
        [--lang xx] [--source name] [--json OUT.json|-] [--only matched|unmatched] [--quiet]

Each post is matched by the listener's own matcher against every watch of the config
(``api.watch_verdicts``); for each watch tested the output says matched or not and why:
the query's parts that matched with the post's text they found, or what stopped it. Input
lines are read by ``api.watch_posts`` (``{"text", "lang"?, "source"?, "id"?}``, a mention
in the wire format, or a webhook body); ``--lang``/``--source`` give the language and
source of the ``--text`` posts and of the lines that give none.

Output: a table on stdout (a block per post, a line per watch; a summary at the end), or
with ``--json`` one JSON document (``-``: stdout; a file is written whole at the end, and
stdout gets the summary). Progress lines (every 5 s) and bad input lines go to stderr.
Exit status 0 whatever matched; 2 for a usage or config problem (a bad query prints the
caret error ``check-config`` prints), an unknown ``--watch`` (naming the known ones) or an
input that cannot be read at all. A bad line is reported, counted and skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import textwrap
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from api.output import (
    OutputError,
    atomic_output,
    is_same_file,
    is_stdio,
    path_arg,
    standard_output,
)
from api.watch_posts import (
    MAX_FIELD_CHARS,
    BadLine,
    InputError,
    Post,
    PostReader,
    check_field,
    check_text,
)
from api.watch_verdicts import Found, UnknownWatch, Verdict, WatchTester, Why
from core.events import MAX_LANG_CHARS

NAME = "crisiswatch watches test"
PROGRESS_SECONDS = 5.0
SHOWN_BAD_LINES = 20  # reported one by one on stderr; the rest are counted
KEPT_BAD_LINES = 100  # listed in the JSON summary
_SNIPPET = 60
_POST_TEXT = 100
_WIDTH = 100  # the table's lines are wrapped at this many characters
_KEEP = "\x00"  # a space the wrapping keeps (inside a part found and its text)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class UsageError(Exception):
    """A problem with the arguments: one line on stderr, exit 2."""


def add_parser(sub: Any) -> None:
    w = sub.add_parser("watches", help="try the config's watches on sample posts")
    w_sub = w.add_subparsers(dest="watches_command", required=True, metavar="WATCHES_COMMAND")
    t = w_sub.add_parser(
        "test",
        help="which watches each post matches, and why (the listener's matcher)",
        description="Match posts against the config's watches with the listener's own "
        "matcher and say, per post and watch, which parts of the query matched (and the "
        "text they found) or what stopped the match. Each post is matched on its own text: "
        "a repost or reply inheriting its parent's watches is out of scope.",
    )
    t.add_argument("--config", type=Path, required=True, help="YAML config (its watches)")
    t.add_argument(
        "--watch",
        dest="watches",
        nargs="+",
        action="extend",
        metavar="ID",
        help="only these watches (default: every watch of the config)",
    )
    posts = t.add_mutually_exclusive_group(required=True)
    posts.add_argument(
        "--text", dest="texts", action="append", metavar="TEXT", help="a post (repeatable)"
    )
    posts.add_argument(
        "--input",
        type=path_arg,
        help='posts, JSONL ({"text", "lang"?, "source"?, "id"?} or mentions), .jsonl.gz; '
        "- for stdin",
    )
    t.add_argument("--lang", help="the language of the --text posts and of lines without one")
    t.add_argument("--source", help="the source of the --text posts and of lines without one")
    t.add_argument(
        "--json",
        type=path_arg,
        metavar="OUT",
        help="write the results as JSON to this file (- for stdout) instead of the table",
    )
    t.add_argument(
        "--only", choices=("matched", "unmatched"), help="show only these (the summary counts all)"
    )
    t.add_argument("--quiet", action="store_true", help="no progress output")


def run(args: argparse.Namespace) -> int:
    """The command; ``api.settings.ConfigError`` (a bad config or query) is the caller's."""
    from api.settings import load_settings

    try:
        lang, source = _defaults(args)
        texts = [_text(t, i) for i, t in enumerate(args.texts or (), 1)]
        if args.json is not None:
            _check_output(args.json, args.input, args.config)
        settings = load_settings(args.config)
        watches = list(settings.listener.watches)
        if not watches:
            raise UsageError(f"{args.config} has no watches (listener.watches) to test")
        tester = WatchTester(watches, args.watches)
        errors = _BadLines()
        if args.input is not None:
            reader = PostReader(args.input, lang=lang, source=source, on_bad=errors.add)
            progress = None if args.quiet else _Progress(reader)
            posts: Iterable[Post] = reader if progress is None else progress.wrap(reader)
        else:
            posts = [Post(i, text, lang, source) for i, text in enumerate(texts, 1)]
        summary = _Summary(tester.ids)
        only = None if args.only is None else args.only == "matched"
        with standard_output() as stdout:
            with _output(args.json, stdout) as out:
                writer = _JsonWriter(out, args.config, tester.ids) if out else _Table(stdout)
                for post in posts:
                    verdicts = tester.test(post, only)
                    summary.count(verdicts)
                    shown = [v for v in verdicts if _wanted(v, args.only)]
                    if shown:
                        writer.post(post, shown)
                writer.end(summary.to_json(errors))
            if args.json is None or not is_stdio(args.json):
                stdout.write(summary.render(errors))
        if args.json is not None and not is_stdio(args.json):
            print(f"{NAME}: results written to {args.json}", file=sys.stderr)
        return 0
    except (UsageError, UnknownWatch, InputError, OutputError) as exc:
        print(f"{NAME}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # BrokenPipeError is the caller's (quiet, 141)
        if isinstance(exc, BrokenPipeError):
            raise
        print(f"{NAME}: {exc.strerror or exc}", file=sys.stderr)
        return 2


def _defaults(args: argparse.Namespace) -> tuple[str | None, str | None]:
    try:
        lang = check_field("lang", args.lang, MAX_LANG_CHARS)
        source = check_field("source", args.source, MAX_FIELD_CHARS)
    except ValueError as exc:
        problem = str(exc).replace('"lang"', "--lang").replace('"source"', "--source")
        raise UsageError(problem) from None
    return lang, source


def _text(text: str, number: int) -> str:
    try:
        return check_text(text)
    except ValueError as exc:
        raise UsageError(f"--text number {number}: {exc}") from None


def _check_output(output: Path, source: Path | None, config: Path) -> None:
    """``--json`` names neither the input nor the config (either would be overwritten)."""
    if is_stdio(output):
        return
    for what, path in (("the input file", source), ("the config file", config)):
        if path is not None and not is_stdio(path) and is_same_file(output, path):
            raise UsageError(f"--json {output} is {what}: write the results to another file")


def _wanted(verdict: Verdict, only: str | None) -> bool:
    return only is None or verdict.matched == (only == "matched")


@contextlib.contextmanager
def _output(path: Path | None, stdout: TextIO) -> Iterator[TextIO | None]:
    """The JSON output (None: the table, on stdout)."""
    if path is None:
        yield None
    elif is_stdio(path):
        yield stdout
    else:
        if path.is_dir():
            raise UsageError(f"--json {path} is a folder; name a file")
        with atomic_output(path) as out:
            yield out


class _BadLines:
    def __init__(self) -> None:
        self.count = 0
        self.kept: list[BadLine] = []

    def add(self, bad: BadLine) -> None:
        self.count += 1
        if len(self.kept) < KEPT_BAD_LINES:
            self.kept.append(bad)
        if self.count <= SHOWN_BAD_LINES:
            print(f"{NAME}: line {bad.line}: {bad.problem}; skipped", file=sys.stderr)
        elif self.count == SHOWN_BAD_LINES + 1:
            print(f"{NAME}: more bad lines: counted in the summary", file=sys.stderr)


class _Summary:
    def __init__(self, ids: list[str]) -> None:
        self.posts = 0
        self.matched = dict.fromkeys(ids, 0)

    def count(self, verdicts: list[Verdict]) -> None:
        self.posts += 1
        for v in verdicts:
            self.matched[v.watch] += v.matched

    def to_json(self, errors: _BadLines) -> dict[str, Any]:
        return {
            "posts": self.posts,
            "skipped_lines": errors.count,
            "bad_lines": [{"line": b.line, "problem": b.problem} for b in errors.kept],
            "watches": [
                {"watch": w, "matched": n, "posts": self.posts} for w, n in self.matched.items()
            ],
        }

    def render(self, errors: _BadLines) -> str:
        skipped = f"; {errors.count:,} bad input line(s) skipped" if errors.count else ""
        width = max(len("watch"), *(len(w) for w in self.matched))
        lines = [f"summary: {self.posts:,} post(s){skipped}", f"  {'watch':<{width}}  matched"]
        lines += [f"  {w:<{width}}  {n:,} of {self.posts:,}" for w, n in self.matched.items()]
        return "\n".join(lines) + "\n"


class _Table:
    """A block per post: its header line, then a line per watch (written as they come)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def post(self, post: Post, verdicts: list[Verdict]) -> None:
        width = max(len(v.watch) for v in verdicts)
        lines = [_header(post)]
        for v in verdicts:
            lead = f"  {v.watch:<{width}}  {'MATCH' if v.matched else 'no   '}  "
            why = _why(v)
            if len(lead) + len(why) <= _WIDTH:
                lines.append((lead + why).replace(_KEEP, " ").rstrip())
                continue
            wrapped = textwrap.wrap(
                why,
                _WIDTH,
                initial_indent=lead,
                subsequent_indent=" " * len(lead),
                break_long_words=False,
                break_on_hyphens=False,
            )
            lines.extend(line.replace(_KEEP, " ") for line in wrapped)
        self.out.write("\n".join(lines) + "\n\n")

    def end(self, summary: dict[str, Any]) -> None:
        return


class _JsonWriter:
    """One JSON document, written as it goes: ``{"config", "watches", "results": [{"post",
    "verdicts"}], "summary"}``."""

    def __init__(self, out: TextIO, config: Path, ids: list[str]) -> None:
        self.out = out
        self.first = True
        head = {"config": str(config), "watches": ids}
        out.write(json.dumps(head, ensure_ascii=False)[:-1] + ', "results": [')

    def post(self, post: Post, verdicts: list[Verdict]) -> None:
        item = {"post": _post_json(post), "verdicts": [v.to_json() for v in verdicts]}
        self.out.write(("\n" if self.first else ",\n") + json.dumps(item, ensure_ascii=False))
        self.first = False

    def end(self, summary: dict[str, Any]) -> None:
        self.out.write('\n], "summary": ' + json.dumps(summary, ensure_ascii=False) + "}\n")


def _post_json(post: Post) -> dict[str, Any]:
    return {
        "number": post.number,
        "line": post.line,
        "id": post.id,
        "lang": post.lang,
        "source": post.source,
        "text": post.text,
    }


def _header(post: Post) -> str:
    parts = [f"line {post.line}" if post.line is not None else ""]
    for name, value in (("id", post.id), ("lang", post.lang), ("source", post.source)):
        if value is not None:
            parts.append(f"{name} {_oneline(value, 40)}")
    where = ", ".join(p for p in parts if p)
    return f"[{post.number}]{' ' + where if where else ''}: {_oneline(post.text, _POST_TEXT)}"


def _why(v: Verdict) -> str:
    if v.matched:
        if v.match_all:
            return "match_all"
        return ", ".join(_found(f) for f in v.hits) or "(no terms)"
    text = "; ".join(_reason(w) for w in v.why_not)
    if v.hits:
        text += f" (the query matched: {', '.join(_found(f) for f in v.hits)})"
    elif v.found:
        text += f" (found: {', '.join(_found(f) for f in v.found)})"
    return text


def _reason(why: Why) -> str:
    if not why.found:
        return why.reason
    if len(why.found) == 1 and why.reason.endswith(f" {why.found[0].literal} vetoed it"):
        return f"{why.reason}: {_quoted(why.found[0].text)}"  # (an exclude entry's)
    return f"{why.reason}: {', '.join(_found(f) for f in why.found)}"


def _found(found: Found) -> str:
    """A part found and its text, kept on one line of the table (``_KEEP``)."""
    via = f" ({found.via})" if found.via else ""
    return f"{found.literal}{via} {_quoted(found.text)}".replace(" ", _KEEP)


def _quoted(text: str) -> str:
    return json.dumps(_oneline(text, _SNIPPET), ensure_ascii=False).replace(" ", _KEEP)


def _oneline(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters; a control character (an escape
    sequence in a stranger's post would drive the terminal) is shown as ``\\x1b``."""
    flat = " ".join(text.split())
    if _CONTROL.search(flat):
        flat = _CONTROL.sub(lambda c: f"\\x{ord(c.group()):02x}", flat)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class _Progress:
    """A line on stderr every ``PROGRESS_SECONDS`` (as ``crisiswatch replay`` does)."""

    def __init__(self, reader: PostReader, every: float | None = None) -> None:
        self.reader = reader
        self.every = PROGRESS_SECONDS if every is None else every

    def wrap(self, posts: Iterable[Post]) -> Iterator[Post]:
        started = last = time.monotonic()
        for n, post in enumerate(posts, 1):
            yield post
            if n % 256 == 0 or self.every == 0:
                now = time.monotonic()
                if now - last >= self.every:
                    last = now
                    self._line(n, now - started)

    def _line(self, posts: int, elapsed: float) -> None:
        share = self.reader.progress
        where = f"{share:6.1%} of input, " if share is not None else ""
        rate = posts / elapsed if elapsed > 0 else 0.0
        print(
            f"watches test: {where}{self.reader.lines:,} lines, {posts:,} posts, "
            f"{rate:,.0f} posts/s",
            file=sys.stderr,
            flush=True,
        )
