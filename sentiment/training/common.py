"""Helpers shared by the training tools."""

from __future__ import annotations

from sentiment.evaluation import binary_report, read_jsonl, report

__all__ = ["binary_report", "read_jsonl", "report"]
