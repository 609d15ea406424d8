"""Offline training tools (need the ``train`` extra: torch, transformers, scikit-learn)."""
