"""Command output piped into a reader that leaves early (``crisiswatch … | head``)."""

from __future__ import annotations

import contextlib
import os
import sys

EXIT_BROKEN_PIPE = 128 + 13
"""The shell's status for a process ended by SIGPIPE, as ``cat`` gives under ``head``."""


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
