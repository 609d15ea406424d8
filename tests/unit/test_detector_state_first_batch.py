"""A watch's very first batch can signal (a new watch added during a crisis, a backlog
handled in batches of up to ``detector.max_batch``): killed between publishing those
Signals and the watch's first save, the batch is delivered again and must give the same
Signal ids, so that the alerter applies them once. The ids carry the watch's generation,
random for a watch started afresh: it must be in the store before a Signal under it is
published (it was not: the redelivery started the watch afresh under another generation,
and every Signal of the batch reached the alerter twice)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment.detector.statestore import Fenced, StateStore
from tests.unit.test_detector_state import (
    Killed,
    crisis,
    normalised,
    one_generation_per_watch,
    published,
    service,
    uninterrupted,
)

FIRST_BATCH = 256  # the whole crisis of one watch signals within its first batch


class KilledAfterPublishing(StateStore):
    """Dies (a kill -9, from the state's point of view) on the first save that comes
    after a Signal was published."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(sessions)
        self.published: Callable[[], int] = lambda: 0

    async def save(self, states: Any, fmt: int) -> list[Fenced]:
        if self.published():
            raise Killed
        return await super().save(states, fmt)


async def test_a_crash_before_a_watchs_first_save_re_emits_the_same_ids(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    stream = crisis()
    parts = [stream[i : i + FIRST_BATCH] for i in range(0, len(stream), FIRST_BATCH)]
    store = KilledAfterPublishing(sessions)
    first = service(store)
    store.published = lambda: len(published(first))
    with pytest.raises(Killed):
        await first.handle(list(parts[0]))
    lost_batch = published(first)
    assert lost_batch  # killed after publishing the first Signals, before saving them
    # the bus never committed the batch: a new process gets it again
    second = service(StateStore(sessions))
    await second.handle(list(parts[0]))
    assert [s.id for s in published(second)] == [s.id for s in lost_batch]
    for batch in parts[1:]:
        await second.handle(list(batch))
    signals = published(first) + published(second)
    assert all(len(g) == 1 for g in one_generation_per_watch(signals).values())
    # the alerter applies each id once: what it sees is the uninterrupted run
    applied = {s.id: s for s in signals}
    reference = await uninterrupted()
    assert normalised(sorted(applied.values(), key=signals.index)) == normalised(reference)


class FailsOnceThenKilledAfterPublishing(KilledAfterPublishing):
    """Its first save fails (an error the bus retries), then as ``KilledAfterPublishing``."""

    failed = False

    async def save(self, states: Any, fmt: int) -> list[Fenced]:
        if not self.failed:
            self.failed = True
            raise RuntimeError("a save that failed")
        return await super().save(states, fmt)


async def test_a_watch_whose_first_save_failed_is_started_afresh_on_the_next_try(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    stream = crisis()
    batch = list(stream[:FIRST_BATCH])
    store = FailsOnceThenKilledAfterPublishing(sessions)
    first = service(store)
    store.published = lambda: len(published(first))
    with pytest.raises(RuntimeError):
        await first.handle(batch)  # the bus tries the batch again
    with pytest.raises(Killed):
        await first.handle(batch)
    lost_batch = published(first)
    assert lost_batch
    second = service(StateStore(sessions))
    await second.handle(batch)
    assert [s.id for s in published(second)] == [s.id for s in lost_batch]
