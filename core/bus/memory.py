"""In-process bus: one bounded log per topic, one cursor per consumer group.

Publishing waits while the slowest group is ``capacity`` events behind (back-pressure,
never a drop). A group's cursor moves only after its handler returned, so a handler
failure leads to a retry of the same events, exactly as on Kafka.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from pydantic import BaseModel

from core.bus.base import Bus, DeadLetter, Record, Subscription, encode_event
from core.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass
class _Topic:
    name: str
    records: list[Record] = field(default_factory=list)
    base: int = 0  # offset of records[0]
    committed: dict[str, int] = field(default_factory=dict)  # group -> next offset

    @property
    def end(self) -> int:
        return self.base + len(self.records)

    def lag(self) -> int:
        if not self.committed:
            return len(self.records)
        return self.end - min(self.committed.values())

    def trim(self) -> None:
        if not self.committed:
            return
        low = min(self.committed.values())
        if low > self.base:
            del self.records[: low - self.base]
            self.base = low


class MemoryBus(Bus):
    def __init__(self, capacity: int = 1000, metrics: Metrics | None = None) -> None:
        super().__init__(metrics)
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.dead_letters: list[DeadLetter] = []
        self._topics: dict[str, _Topic] = {}
        self._changed = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self._busy: set[str] = set()
        self._stopping = False

    def _topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = _Topic(name)
        return topic

    async def start(self) -> None:
        if self._started:
            return
        for sub in self._subscriptions:
            self._topic(sub.topic).committed.setdefault(sub.group, 0)
        self._started = True
        self._stopping = False
        self._tasks = [
            asyncio.create_task(self._consume(sub), name=f"bus:{sub.topic}:{sub.group}")
            for sub in self._subscriptions
        ]

    async def stop(self) -> None:
        self._stopping = True
        async with self._changed:
            self._changed.notify_all()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks = []
        self._started = False

    async def publish(self, topic: str, event: BaseModel, *, key: str) -> None:
        await self.publish_raw(topic, encode_event(event), key=key)

    async def publish_raw(self, topic: str, value: bytes, *, key: str | None) -> None:
        t = self._topic(topic)
        async with self._changed:
            await self._changed.wait_for(lambda: t.lag() < self.capacity or self._stopping)
            if self._stopping and t.lag() >= self.capacity:
                raise RuntimeError("bus is stopping; publish refused")
            t.records.append(Record(topic=topic, key=key, value=value, offset=t.end))
            self.metrics.bus_published.labels(topic).inc()
            self._changed.notify_all()

    async def dead_letter(self, letter: DeadLetter) -> None:
        self.dead_letters.append(letter)

    async def join(self) -> None:
        """Wait until every group has handled everything published so far (and what that
        produced in turn). For tests and replays."""
        async with self._changed:
            await self._changed.wait_for(self._idle)

    def _idle(self) -> bool:
        if self._busy:
            return False
        return all(
            all(pos >= t.end for pos in t.committed.values()) for t in self._topics.values()
        )

    async def _consume(self, sub: Subscription) -> None:
        t = self._topic(sub.topic)
        name = f"{sub.topic}:{sub.group}"
        while True:
            async with self._changed:
                await self._changed.wait_for(
                    lambda: t.committed[sub.group] < t.end or self._stopping
                )
                pos = t.committed[sub.group]
                if pos >= t.end:  # stopping and nothing left for us
                    return
                if sub.max_wait > 0 and t.end - pos < sub.max_batch and not self._stopping:
                    try:
                        await asyncio.wait_for(
                            self._changed.wait_for(
                                lambda: t.end - t.committed[sub.group] >= sub.max_batch
                                or self._stopping
                            ),
                            timeout=sub.max_wait,
                        )
                    except TimeoutError:
                        pass
                start = pos - t.base
                batch = t.records[start : start + sub.max_batch]
                self._busy.add(name)
            try:
                await self.process(sub, batch)
            except BaseException:
                self._busy.discard(name)  # not committed: the batch is delivered again
                raise
            async with self._changed:
                self._busy.discard(name)
                # committed only after the handler returned (or dead-lettered)
                t.committed[sub.group] = pos + len(batch)
                t.trim()
                self._changed.notify_all()
