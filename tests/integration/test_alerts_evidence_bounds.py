"""What a Signal carries beyond the columns the alerter stores it in (an evidence mention
id over 512 characters, a follower count over 64 bits, a NUL in a text: the Signal
contract does not bound them, and another producer may send them) is made to fit, and
the alert goes out; an id that can never be stored is refused with a clear reason (the
bus dead-letters it). On SQLite and PostgreSQL, which enforces column lengths and
refuses NUL: before, the insert failed there and the bus retried the signal for ever."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts.config import AlertsConfig
from alerts.incidents import MAX_MENTION_ID
from alerts.models import Incident, IncidentEvidence
from alerts.notifiers.base import AlertMessage
from alerts.service import AlertService
from core.bus.base import PermanentError
from core.bus.memory import MemoryBus
from core.clock import ManualClock
from core.events import MAX_COUNT, Evidence, Signal, WatchMatch
from core.metrics import Metrics
from tests.notifier_fakes import RecordingConsole
from tests.support import tier_signal

Sessions = async_sessionmaker[AsyncSession]
pytestmark = pytest.mark.postgres

CONFIG = AlertsConfig.model_validate(
    {
        "channels": {"cs": {"type": "console"}},
        "teams": {"customer_service": {"channels": ["cs"]}},
        "routes": {"teams": ["customer_service"], "group_wait": "PT0S"},
    }
)


async def handle(sessions: Sessions, clock: ManualClock, *signals: Signal) -> list[AlertMessage]:
    """Handle ``signals`` one after the other; the alerts that went out."""
    log: list[AlertMessage] = []
    async with httpx.AsyncClient() as http:
        metrics = Metrics()
        service = AlertService(MemoryBus(metrics=metrics), sessions, CONFIG, http, clock, metrics)
        service.notifiers["cs"] = RecordingConsole(log)
        try:
            for signal in signals:
                await service.handle_signals([signal])
            await service.sent()
            await service.tick()
        finally:
            service.jobs.close()
    return log


def signal_with(clock: ManualClock, *evidence: Evidence, **update: Any) -> Signal:
    signal = tier_signal(clock.now(), signal_id="sig#1.1", story_id="acme:s1", tier=2)
    return signal.model_copy(update={"evidence": evidence, **update})


async def stored_evidence(sessions: Sessions) -> list[IncidentEvidence]:
    async with sessions() as session:
        return list(await session.scalars(select(IncidentEvidence).order_by(IncidentEvidence.id)))


async def test_an_evidence_id_longer_than_its_column_is_kept_as_head_and_hash(
    any_sessions: Sessions, clock: ManualClock
) -> None:
    """Two evidence mentions whose 600-character ids differ only at the end stay two rows
    of at most 512 characters, their source readable; the same ids in a later signal add
    no row (the cut is the same each time)."""
    long_a = "bsky:" + "x" * 595 + "a"
    long_b = "bsky:" + "x" * 595 + "b"
    first = signal_with(
        clock,
        Evidence(id=long_a, created_at=clock.now(), label="negative", text="first"),
        Evidence(id=long_b, created_at=clock.now(), label="negative", text="second"),
    )
    again = first.model_copy(update={"id": "sig#1.2", "tier": 3, "previous_tier": 2})
    log = await handle(any_sessions, clock, first, again)
    assert len(log) == 2  # the new incident, then its upgrade
    rows = await stored_evidence(any_sessions)
    assert [row.text for row in rows] == ["first", "second"]
    ids = [row.mention_id for row in rows]
    assert ids[0] != ids[1]
    assert all(len(i) <= MAX_MENTION_ID and i.startswith("bsky:xxx") for i in ids)
    assert log[0].evidence[0].text == "first"


async def test_a_short_evidence_id_is_stored_as_sent(
    any_sessions: Sessions, clock: ManualClock
) -> None:
    exact = "bsky:" + "y" * (MAX_MENTION_ID - 5)
    signal = signal_with(clock, Evidence(id=exact, created_at=clock.now(), label="negative"))
    assert len(await handle(any_sessions, clock, signal)) == 1
    assert [row.mention_id for row in await stored_evidence(any_sessions)] == [exact]


async def test_evidence_texts_and_counts_beyond_the_columns_are_made_to_fit(
    any_sessions: Sessions, clock: ManualClock
) -> None:
    """A NUL in the texts (JSON's ``\\u0000`` decodes to it), a follower count over 64
    bits, a 400-character author: the evidence is stored with U+FFFD, ``MAX_COUNT`` and
    the author's first 255 characters; so are the explanation and the brand."""
    ev = Evidence(
        id="bsky:1",
        url="https://bsky.app/\x00",
        text="angry\x00post",
        author="a" * 400,
        followers=2**64,
        created_at=clock.now(),
        label="negative",
    )
    signal = signal_with(
        clock,
        ev,
        explanation="41 negative\x00 posts",
        watch=WatchMatch(id="acme", brand="Ac\x00me"),
    )
    assert len(await handle(any_sessions, clock, signal)) == 1
    [row] = await stored_evidence(any_sessions)
    assert (row.url, row.text) == ("https://bsky.app/\ufffd", "angry\ufffdpost")
    assert row.author == "a" * 255 and row.followers == MAX_COUNT
    async with any_sessions() as session:
        incident = await session.scalar(select(Incident))
    assert incident is not None
    assert (incident.explanation, incident.brand) == ("41 negative\ufffd posts", "Ac\ufffdme")


@pytest.mark.parametrize("field", ["id", "story_id", "merged_into"])
async def test_an_id_holding_a_nul_is_refused_with_its_reason(
    any_sessions: Sessions, clock: ManualClock, field: str
) -> None:
    """An id is a key: it cannot be changed to fit, so the signal is refused (the bus
    dead-letters a PermanentError) rather than retried for ever."""
    update: dict[str, Any] = {field: "acme:s\x001"}
    if field == "merged_into":
        update["tier"] = update["spread"] = 0
    signal = signal_with(clock, **update)
    with pytest.raises(PermanentError, match=f"{field} holds a NUL"):
        await handle(any_sessions, clock, signal)
