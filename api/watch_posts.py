"""The posts ``crisiswatch watches test`` reads: ``--text`` arguments or a JSONL file.

An input line is a JSON object with a string ``text`` and, optionally, ``lang``,
``source`` and ``id``: the shape ``sentiment classify`` reads, and a subset of a mention
in the wire format, so a replay file (``crisiswatch replay --input``) or a backfill's
output is read as it is (its other fields are ignored). A line may also hold a webhook
body, ``{"mentions": [...]}`` or a JSON array of such objects: each item is a post.

A bad line (not UTF-8, not JSON, not such an object, a text longer than a mention's, a
line longer than ``MAX_LINE_BYTES``) is reported with its line number, counted and
skipped; the run goes on. Gzip is told by the content (as the replay tells it); standard
input (``-``) may be plain or gzip too.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from api.output import is_stdio
from core.events import MAX_LANG_CHARS, MAX_TEXT_CHARS, storable

MAX_LINE_BYTES = 4 << 20
"""The longest input line read (as ``crisiswatch replay`` reads a line: a mention is at
most about 300 KB of JSON). A longer one is skipped a piece at a time, never held whole."""
MAX_FIELD_CHARS = 512  # an id or a source (a mention's id is at most 512 characters)
_PIECE = 1 << 20
_BOM = b"\xef\xbb\xbf"
_GZIP = b"\x1f\x8b"


class InputError(Exception):
    """The input cannot be read at all (missing, a folder, a corrupt gzip): exit 2."""


@dataclass(frozen=True)
class Post:
    number: int  # 1, 2, ... in input order
    text: str
    lang: str | None = None
    source: str | None = None
    id: str | None = None
    line: int | None = None  # the input line (None: a --text argument)


@dataclass(frozen=True)
class BadLine:
    line: int
    problem: str


def check_field(name: str, value: object, limit: int) -> str | None:
    """A ``lang``/``source``/``id`` value: a string of at most ``limit`` characters, without
    a lone surrogate or a control character (None: absent). ``ValueError`` says why not."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and name == "id":
        return str(value)
    if not isinstance(value, str):
        raise ValueError(f'"{name}" must be a string')
    if len(value) > limit:
        raise ValueError(f'"{name}" is {len(value):,} characters long; at most {limit}')
    if storable(value) != value or any(c < " " or "\x7f" <= c <= "\x9f" for c in value):
        raise ValueError(f'"{name}" holds a control character or a lone surrogate')
    return value if value.strip() else None  # as given: the listener matches it so


def check_text(text: str) -> str:
    """A post's text as a mention holds it (NUL and lone surrogates as U+FFFD); ``ValueError``
    if longer than a mention's text may be."""
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(
            f"the text is {len(text):,} characters long; a mention's is at most "
            f"{MAX_TEXT_CHARS:,} (sources cut longer posts to that)"
        )
    return storable(text)


class PostReader:
    """The posts of a JSONL input, in order; bad lines go to ``on_bad`` and are skipped."""

    def __init__(
        self,
        path: Path,
        *,
        lang: str | None = None,
        source: str | None = None,
        on_bad: Callable[[BadLine], None],
    ) -> None:
        self.path = path
        self.lang = lang  # for lines that give none
        self.source = source
        self.on_bad = on_bad
        self.lines = 0
        self.posts = 0
        self._raw: IO[bytes] | None = None
        self._size = 0

    @property
    def name(self) -> str:
        return "<stdin>" if is_stdio(self.path) else str(self.path)

    @property
    def progress(self) -> float | None:
        """The share of the input file read (compressed bytes for gzip); None for a pipe."""
        if self._raw is None or not self._size:
            return None
        with contextlib.suppress(OSError, ValueError):
            return min(1.0, self._raw.tell() / self._size)
        return None

    def __iter__(self) -> Iterator[Post]:
        with self._open() as stream:
            while True:
                try:
                    line = stream.readline(MAX_LINE_BYTES + 1)
                except (OSError, EOFError, gzip.BadGzipFile) as exc:  # a truncated gzip
                    raise InputError(
                        f"{self.name}: cannot read past line {self.lines}: {exc}"
                    ) from exc
                if not line:
                    return
                self.lines += 1
                if self.lines == 1:
                    line = line.removeprefix(_BOM)
                if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                    self.on_bad(BadLine(self.lines, self._skip_long(stream, len(line))))
                    continue
                if not line.strip():
                    continue
                try:
                    items = _items(line)
                except ValueError as exc:
                    self.on_bad(BadLine(self.lines, str(exc)))
                    continue
                for item in items:
                    try:
                        post = self._post(item)
                    except ValueError as exc:
                        where = f"item {item[0] + 1}: " if item[0] is not None else ""
                        self.on_bad(BadLine(self.lines, where + str(exc)))
                        continue
                    yield post

    def _post(self, item: tuple[int | None, Any]) -> Post:
        _, row = item
        if not isinstance(row, dict):
            raise ValueError('not a JSON object (a line is {"text": ..., "lang"?, ...})')
        text = row.get("text")
        if not isinstance(text, str):
            raise ValueError(
                'no "text" string (a line is {"text": ..., "lang"?, "source"?, "id"?})'
                if text is None
                else '"text" must be a string'
            )
        lang = check_field("lang", row.get("lang"), MAX_LANG_CHARS)
        source = check_field("source", row.get("source"), MAX_FIELD_CHARS)
        ident = check_field("id", row.get("id"), MAX_FIELD_CHARS)
        self.posts += 1
        return Post(
            number=self.posts,
            text=check_text(text),
            lang=lang or self.lang,
            source=source or self.source,
            id=ident,
            line=self.lines,
        )

    def _skip_long(self, stream: io.BufferedIOBase, size: int) -> str:
        while piece := stream.readline(_PIECE):
            size += len(piece)
            if piece.endswith(b"\n"):
                break
        return f"{size:,} bytes, longer than any post ({MAX_LINE_BYTES:,} at most)"

    @contextlib.contextmanager
    def _open(self) -> Iterator[io.BufferedIOBase]:
        if is_stdio(self.path):
            stdin = sys.stdin.buffer
            if not isinstance(stdin, io.BufferedReader):  # (a test's BytesIO: no peek)
                stdin = io.BufferedReader(stdin)
            yield _maybe_gzip(stdin)
            return
        if not self.path.exists():
            raise InputError(f"{self.path} does not exist")
        if self.path.is_dir():
            raise InputError(f"{self.path} is a folder, not a JSONL file")
        try:
            fh = self.path.open("rb")
        except OSError as exc:
            raise InputError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        with fh:
            with contextlib.suppress(OSError):
                self._size = os.fstat(fh.fileno()).st_size
            self._raw = fh
            yield _maybe_gzip(fh)


def _maybe_gzip(fh: io.BufferedReader) -> io.BufferedIOBase:
    if fh.peek(2)[:2] == _GZIP:
        return gzip.open(fh, "rb")
    return fh


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _items(line: bytes) -> list[tuple[int | None, Any]]:
    """A line's posts: the object itself, or each item of a webhook body
    (``{"mentions": [...]}`` or an array), numbered."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = f"byte 0x{line[exc.start]:02x} at byte {exc.start + 1}"
        raise ValueError(f"not UTF-8 ({bad})") from None
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, a 5,000-digit number
        why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise ValueError(f"not valid JSON ({why})") from None
    if isinstance(data, dict) and "text" not in data and isinstance(data.get("mentions"), list):
        data = data["mentions"]
    if isinstance(data, list):
        if not data:
            raise ValueError("an empty list: no post")
        return list(enumerate(data))
    return [(None, data)]
