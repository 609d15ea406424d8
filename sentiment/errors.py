"""Errors of the sentiment models (shared by the English and Chinese loaders)."""

from __future__ import annotations

import zipfile
import zlib


class ModelLoadError(RuntimeError):
    """A model cannot be loaded (missing files, wrong format, digest mismatch)."""


INVALID_FILE: tuple[type[Exception], ...] = (
    OSError, KeyError, TypeError, ValueError,  # unreadable, or not the JSON card expected
    zipfile.BadZipFile, EOFError, zlib.error,  # np.load on a truncated or damaged .npz
)  # fmt: skip
"""What loading a model card and its arrays raises when they are not what they should be."""
