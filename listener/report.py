"""What an ingest call did with each mention (for the webhook's answer and the CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["published", "duplicate", "unmatched", "too_large"]
"""``too_large``: the bus refused its event for its size (it never can take it): not
published, not remembered as seen (a smaller version of it goes through)."""


@dataclass(frozen=True)
class ItemOutcome:
    index: int  # position in the ingested sequence
    id: str
    outcome: Outcome
    watches: tuple[str, ...] = ()  # ids of the watches it was published for
    reason: str = ""  # why it was refused (``too_large``): safe to return, no content


@dataclass
class IngestReport:
    accepted: int = 0  # new mentions (not duplicates), matched or not; not too_large
    duplicates: int = 0  # already seen: not published again
    unmatched: int = 0  # new, but no watch matched: not published
    published: int = 0  # events published (one per matching watch)
    too_large: int = 0  # new and matched, but refused by the bus for its size
    items: list[ItemOutcome] = field(default_factory=list)
