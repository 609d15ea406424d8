"""What an ingest call did with each mention (for the webhook's answer and the CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["published", "duplicate", "unmatched"]


@dataclass(frozen=True)
class ItemOutcome:
    index: int  # position in the ingested sequence
    id: str
    outcome: Outcome
    watches: tuple[str, ...] = ()  # ids of the watches it was published for


@dataclass
class IngestReport:
    accepted: int = 0  # new mentions (not duplicates), matched or not
    duplicates: int = 0  # already seen: not published again
    unmatched: int = 0  # new, but no watch matched: not published
    published: int = 0  # events published (one per matching watch)
    items: list[ItemOutcome] = field(default_factory=list)
