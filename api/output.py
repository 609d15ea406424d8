"""Command output: files that appear only when complete (``atomic_output``), a pipe whose
reader leaves early (``crisiswatch … | head``: ``reader_gone``), and ``-`` for standard
input or output (``STDIO``, ``path_arg``)."""

from __future__ import annotations

import codecs
import contextlib
import errno
import io
import os
import shutil
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

EXIT_BROKEN_PIPE = 128 + 13
"""The shell's status for a process ended by SIGPIPE, as ``cat`` gives under ``head``."""

STDIO = Path("-")
"""``--input -`` / ``--output -``: standard input or output, as ``path_arg`` gives it for
the argument ``-`` exactly. Told by identity (``is_stdio``), so ``./-`` still names a file
called ``-``."""


def path_arg(value: str) -> Path:
    """An argparse type for a file option that also takes ``-``: ``STDIO`` for ``-``, else
    the path (``./-`` is the file named ``-``)."""
    return STDIO if value == "-" else Path(value)


def is_stdio(path: Path) -> bool:
    """Whether ``path`` is ``STDIO`` (the argument ``-``), not a file."""
    return path is STDIO


@contextlib.contextmanager
def standard_output() -> Iterator[TextIO]:
    """Standard output for a command's results (``--output -``), written as they come:
    UTF-8 whatever the locale, as an output file is, and flushed at the end of the block,
    so that a reader that went away (``BrokenPipeError``) shows inside it."""
    out = sys.stdout
    if isinstance(out, io.TextIOWrapper) and codecs.lookup(out.encoding).name != "utf-8":
        out.flush()
        out.reconfigure(encoding="utf-8")
    yield out
    out.flush()


def reader_gone() -> int:
    """After a ``BrokenPipeError`` on stdout: point stdout at the null device, so the
    interpreter's flush at exit raises nothing more, and return ``EXIT_BROKEN_PIPE``."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    return EXIT_BROKEN_PIPE


def is_same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (an output that would overwrite its input),
    through symlinks and other spellings; False when either does not exist yet."""
    try:
        return a.resolve() == b.resolve() or os.path.samefile(a, b)
    except OSError:
        return False


class OutputError(Exception):
    """An output file that cannot be created (its message says which and why)."""


_NOT_REPLACEABLE = frozenset({errno.EBUSY, errno.EXDEV, errno.EPERM})
"""``os.replace`` onto these fails: a bind-mounted file (Docker ``-v file:file``, a
Kubernetes ``subPath``) is a mount point; such a target is overwritten in place instead."""


@contextlib.contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM (``timeout``, systemd, Kubernetes) raises ``SystemExit(143)`` inside the
    block, so cleanup runs as for Ctrl-C; the previous handler is restored after. Only the
    main thread can set handlers: elsewhere the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[TextIO]:
    """A text file that replaces ``path`` only once the block ends without an error (a
    temporary file in the same folder, ``os.replace``d); on any error, Ctrl-C and SIGTERM
    included, the temporary file is removed and ``path`` is left as it was (``kill -9``
    leaves the hidden temporary file behind). A device or a pipe (such as ``/dev/stdout``)
    cannot be replaced: it is written directly; nor can a bind-mounted file: it is
    overwritten in place once the results are complete."""
    if path.exists() and not path.is_file():
        with path.open("w", encoding="utf-8") as fh:
            yield fh
        return
    target = Path(os.path.realpath(path))  # through a symlink: the link stays
    if target.exists():
        mode = stat.S_IMODE(target.stat().st_mode)
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    try:
        fd, temporary = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
        )
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with _terminate_as_exit(), os.fdopen(fd, "w", encoding="utf-8") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(temporary, mode)
        try:
            os.replace(temporary, target)
        except OSError as exc:
            if exc.errno not in _NOT_REPLACEABLE:
                raise
            shutil.copyfile(temporary, target)
            os.unlink(temporary)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
