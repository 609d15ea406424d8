"""Errors of the sentiment models (shared by the English and Chinese loaders)."""

from __future__ import annotations


class ModelLoadError(RuntimeError):
    """A model cannot be loaded (missing files, wrong format, digest mismatch)."""
