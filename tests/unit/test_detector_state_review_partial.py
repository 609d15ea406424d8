"""Review of the detector's state saves: a save that fails while it collects the
watches' changes (a snapshot that cannot be written for one watch) must hand back
what it already took of the others, so that a later save writes it (the changes of a
watch collected before the failure were dropped: the stories its batch touched were
never written again, and a restore, after a crash or a rebalance, went on from stale
rows: mentions lost, Signals re-numbered)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sentiment.detector.detector import Detector, WatchKey
from sentiment.detector.snapshot import WatchSnapshot
from sentiment.detector.statestore import StateStore
from tests.unit.test_detector_state import batches, crisis, service
from tests.unit.test_detector_state_rows import States

ACME: WatchKey = ("acme", False)
BETA: WatchKey = ("beta", False)


class SnapshotFailed(RuntimeError):
    pass


async def test_changes_collected_before_a_failing_watch_are_saved_later(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = StateStore(sessions)
    svc = service(store)
    parts = batches(crisis())
    for batch in parts[:6]:
        await svc.handle(list(batch))
    batch = list(parts[6])
    assert {Detector.key_of(item) for item in batch} >= {ACME, BETA}
    real = Detector._story_part

    def story_part(self: Detector, ws: Any, story_id: str) -> bytes:
        # beta's parts are written after acme's (saves go in key order): acme's notes
        # were handed over already, beta's own were being written out
        if ws.index.key == BETA[0]:
            raise SnapshotFailed("beta cannot be written")
        return real(self, ws, story_id)

    monkeypatch.setattr(Detector, "_story_part", story_part)
    with pytest.raises(SnapshotFailed):
        await svc.handle(batch)
    monkeypatch.setattr(Detector, "_story_part", real)
    await svc.handle(batch)  # the bus tries the batch again: counted already, saved now
    stored = await StateStore(sessions).load([ACME, BETA])
    states = States(svc.detector.config)
    for key in (ACME, BETA):
        again = Detector(svc.detector.config)
        again.restore(key, WatchSnapshot(stored[key].state, stored[key].stories))
        assert states.of(again, key) == states.of(svc.detector, key), key
