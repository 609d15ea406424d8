"""Review of the detector's state formats: a watch restored from a snapshot of an older
``STATE_FORMAT`` (one ``READABLE_FORMATS`` names) is written whole by its next save.
Each save labels the watch row with the current format, but wrote only the story rows
its batch changed: the others kept the old format's layout (burst windows tumbling,
retired stories as three lists...: what ``__setstate__`` converts on each load) under
the new label, for as long as their stories lived. A later detector that no longer
reads the old format (``READABLE_FORMATS`` shrinks, the conversion removed) would take
those parts for current ones and misread them, instead of refusing them."""

from __future__ import annotations

import zlib

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment.detector.detector import Detector, WatchKey
from sentiment.detector.snapshot import READABLE_FORMATS, STATE_FORMAT, WatchChanges
from sentiment.detector.statestore import DetectorStateRow, DetectorStoryRow, StateStore
from tests.unit.test_detector_state import batches, crisis, service

ACME: WatchKey = ("acme", False)
OLD = STATE_FORMAT - 1


def marked(blob: bytes) -> bytes:
    """The same part, compressed otherwise (the detector reads it; its own writes differ)."""
    return zlib.compress(zlib.decompress(blob), 9)


async def stored(sessions: async_sessionmaker[AsyncSession]) -> tuple[int | None, dict[str, bytes]]:
    async with sessions() as session:
        fmt = await session.scalar(
            select(DetectorStateRow.format).where(DetectorStateRow.watch_id == "acme")
        )
        found = await session.execute(select(DetectorStoryRow.story_id, DetectorStoryRow.state))
        return fmt, {story_id: bytes(state) for story_id, state in found.all()}


async def save_old(sessions: async_sessionmaker[AsyncSession], fmt: int) -> dict[str, bytes]:
    """Acme's state after ten batches, saved as a detector of format ``fmt`` did."""
    old = service(None)
    for batch in batches(crisis())[:10]:
        await old.handle(list(batch))
    snapshot = old.detector.snapshot(ACME)
    assert len(snapshot.stories) >= 20
    stories = {sid: marked(blob) for sid, blob in snapshot.stories.items()}
    writer = StateStore(sessions)
    await writer.load([ACME])
    whole = WatchChanges(snapshot.watch, stories, frozenset(), whole=True)
    assert await writer.save({ACME: whole}, fmt) == []
    return stories


async def test_a_watch_restored_from_an_older_format_is_saved_whole(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    assert OLD in READABLE_FORMATS
    before = await save_old(sessions, OLD)
    svc = service(StateStore(sessions))
    batch = [s for s in batches(crisis())[10] if Detector.key_of(s) == ACME]
    await svc.handle(batch)  # restores the old watch, changes a few of its stories
    assert svc.detector.story_of("acme", "x:c7-0") is not None  # restored, not afresh
    fmt, after = await stored(sessions)
    assert fmt == STATE_FORMAT
    assert set(after) == set(svc.detector.snapshot(ACME).stories)
    kept = sorted(sid for sid in before if after.get(sid) == before[sid])
    assert kept == []  # no part of the old format left under the new label


async def test_a_watch_of_the_current_format_writes_only_what_changed(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    before = await save_old(sessions, STATE_FORMAT)
    svc = service(StateStore(sessions))
    batch = [s for s in batches(crisis())[10] if Detector.key_of(s) == ACME]
    await svc.handle(batch)
    _, after = await stored(sessions)
    kept = [sid for sid in before if after.get(sid) == before[sid]]
    assert len(kept) >= len(before) // 2  # (a batch touches a few stories)
