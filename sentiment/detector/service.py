"""The detector stage on the bus: "scored" (group "detector") in, "signals" out.

Signals are published with ``key=story_id`` (a story's Signals stay in order). The
handler is idempotent: the core ignores mentions it already counted, and Signals whose
publication failed stay queued and go out first on the next delivery, so a failed
publish neither loses a Signal nor produces a second one with another id.

State lives in memory: in distributed mode each detector process owns the watches of its
"scored" partitions (the topic is keyed by watch).
"""

from __future__ import annotations

import uuid
from collections import deque
from typing import Any

from core.bus import Bus, PermanentError
from core.events import TOPIC_SCORED, TOPIC_SIGNALS, ScoredMention, Signal
from core.metrics import Metrics
from sentiment.detector.config import DetectorConfig
from sentiment.detector.detector import Detector

GROUP = "detector"


class DetectorService:
    def __init__(
        self, bus: Bus, config: DetectorConfig, metrics: Metrics, *, generation: str | None = None
    ) -> None:
        """``generation``: marks this process's Signal ids (default: random, so a restart
        never reuses ids; replays pass "" for stable ids)."""
        self.bus = bus
        self.config = config
        self.metrics = metrics
        self.detector = Detector(
            config, generation=uuid.uuid4().hex[:8] if generation is None else generation
        )
        self._unpublished: deque[Signal] = deque()

    def register(self) -> None:
        self.bus.subscribe(
            TOPIC_SCORED,
            GROUP,
            self.handle,
            max_batch=self.config.max_batch,
            max_wait=self.config.max_wait_seconds,
        )

    async def start(self) -> None:
        """Nothing runs in the background: the bus drives the stage."""

    async def stop(self) -> None:
        """Nothing to stop (state is in memory)."""

    async def handle(self, events: list[Any]) -> None:
        with self.metrics.stage_latency.labels(GROUP).time():
            await self._publish()  # left over from a failed delivery
            for event in events:
                if not isinstance(event, ScoredMention):
                    raise PermanentError(
                        f"the detector takes ScoredMention events, not {type(event).__name__}"
                    )
                self._unpublished.extend(self.detector.observe(event))
            self.metrics.stories_active.set(self.detector.stories_active)
            await self._publish()

    async def _publish(self) -> None:
        while self._unpublished:
            signal = self._unpublished[0]
            await self.bus.publish(TOPIC_SIGNALS, signal, key=signal.story_id)
            self._unpublished.popleft()
            self.metrics.signals_emitted.labels(str(signal.tier)).inc()
