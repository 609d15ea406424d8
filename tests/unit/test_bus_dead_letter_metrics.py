"""The dead-letter count says what reached the dead-letter topic; a dead letter that could
not be written (the transport refused it: its batch is delivered again) is a failure,
counted as one, not a dead letter."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from pydantic import BaseModel

from core.bus.base import Bus, DeadLetter, Record
from core.metrics import Metrics


class RefusingDeadLetters(Bus):
    """A transport whose dead-letter topic refuses the first ``refusals`` letters."""

    def __init__(self, refusals: int) -> None:
        super().__init__(Metrics())
        self.refusals = refusals
        self.written: list[DeadLetter] = []

    async def start(self) -> None:
        self._started = True

    async def stop(self) -> None:
        self._started = False

    async def publish(self, topic: str, event: BaseModel, *, key: str) -> None:
        raise NotImplementedError

    async def publish_raw(self, topic: str, value: bytes, *, key: str | None) -> None:
        raise NotImplementedError

    async def dead_letter(self, letter: DeadLetter) -> None:
        if self.refusals:
            self.refusals -= 1
            raise ConnectionError("the dead-letter topic is unavailable")
        self.written.append(letter)


def sample(bus: Bus, name: str) -> float:
    value = bus.metrics.registry.get_sample_value(
        f"crisiswatch_bus_{name}_total", {"topic": "mentions", "group": "g"}
    )
    return value or 0.0


async def handler(events: list[BaseModel]) -> None:
    raise AssertionError("never called: the record cannot be decoded")


async def test_a_dead_letter_the_transport_refused_is_counted_as_a_failure_not_a_letter() -> None:
    bus = RefusingDeadLetters(refusals=2)
    bus.subscribe("mentions", "g", handler)
    sub = bus._subscriptions[0]
    batch: Sequence[Record] = [Record(topic="mentions", key="k", value=b"not json")]
    for _ in range(2):  # the transport delivers the batch again after each failure
        with pytest.raises(ConnectionError):
            await bus.process(sub, batch)
    assert (sample(bus, "dead_letters"), sample(bus, "handler_errors")) == (0.0, 2.0)
    await bus.process(sub, batch)
    assert len(bus.written) == 1
    assert (sample(bus, "dead_letters"), sample(bus, "handler_errors")) == (1.0, 2.0)


def test_an_undecodable_event_is_named_by_its_fields_without_its_input() -> None:
    """The reason a letter carries (logs, ``dead-letters list``) names the fields and what
    is wrong with them; the stranger's input (here 100,000 characters) and pydantic's links
    stay out of it: the letter keeps the value itself."""
    from core.bus.base import decode_event

    huge = "x" * 100_000
    value = json.dumps({"id": huge, "source": 7, "text": ["no"], "created_at": "soon"})
    with pytest.raises(ValueError) as caught:
        decode_event("mentions", value.encode())
    reason = str(caught.value)
    assert reason.startswith("not a valid Mention: ")
    assert "id: " in reason and "source: " in reason and "text: " in reason
    assert "(and 1 more)" in reason  # four fields wrong, three named
    assert huge[:100] not in reason and "errors.pydantic.dev" not in reason
    assert len(reason) < 400
