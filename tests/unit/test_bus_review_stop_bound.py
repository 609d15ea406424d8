"""Kafka bus review (issue 8): ``stop()`` is bounded by ``bus.stop_timeout`` in all.

With the broker gone at SIGTERM (a fault, a node drained with it), every closing step
hangs: each consumer's final commit and LeaveGroup, the producer's flush and close. Each
step was given at least 1 s of its own past the deadline, one after the other, so a
process with several consumers overran ``stop_timeout`` by 2 s per consumer plus 2 (and
5 more for a cancelled batch): past the orchestrator's grace period (``StopBudget``
counts the Kafka bus's stop as ``stop_timeout``), it was killed mid-close.
"""

from __future__ import annotations

import asyncio
from typing import Any

from core.bus.base import Subscription
from core.bus.kafka import KafkaBus, _Consumer
from core.settings import BusConfig

STOP_TIMEOUT = 0.6


class Hanging:
    """A client whose calls never answer (the broker is gone); counts cancellations."""

    def __init__(self) -> None:
        self.cancelled = 0

    async def _hang(self, *_: Any) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    commit = stop = flush = _hang

    def assignment(self) -> set[Any]:
        return {"tp"}


async def _nothing(events: list[Any]) -> None:
    return None


async def test_stop_with_every_close_step_hanging_ends_within_stop_timeout() -> None:
    bus = KafkaBus(BusConfig(kind="kafka", stop_timeout=STOP_TIMEOUT))
    clients = []
    for topic in ("mentions", "scored", "signals"):
        state = _Consumer(sub=Subscription(topic, "g", _nothing), physical=topic)
        state.consumer = Hanging()
        state.pending = {"tp": 5}  # handled, not committed yet: a final commit is due
        clients.append(state.consumer)
        bus._consumers.append(state)
    # one batch in flight that does not end by itself (a handler waiting on the broker)
    busy = bus._consumers[0]
    busy.busy = True
    busy.task = asyncio.create_task(asyncio.Event().wait())
    bus._producer = producer = Hanging()
    bus._started = True
    loop = asyncio.get_running_loop()
    began = loop.time()
    await bus.stop()
    took = loop.time() - began
    # generous (a loaded CI box): before, it took about 8.6 s (each step 1 s past the deadline)
    assert took < STOP_TIMEOUT + 2.5, f"stop() took {took:.1f} s for stop_timeout {STOP_TIMEOUT}"
    assert busy.task.cancelled()
    # every step was tried (and given up on), none skipped
    assert [c.cancelled for c in clients] == [2, 2, 2]  # final commit, then close
    assert producer.cancelled == 2  # flush, then close
    assert not bus.started
