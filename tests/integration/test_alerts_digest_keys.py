"""Digests and per-incident keys through the outbox: a channel that keys its alerts per
incident (PagerDuty) never gets a digest, even when its rows were queued while it had
another type; a digest sent again after a crash, holding other rows, keeps each
incident's own idempotency key (receivers dedupe items on it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts import outbox
from alerts.config import AlertsConfig
from alerts.incidents import apply_signal
from alerts.models import Delivery
from alerts.notifiers.base import AlertMessage, Notifier, RateLimit
from alerts.notifiers.pagerduty import PagerDutyNotifier
from core.clock import ManualClock
from core.db import unit_of_work
from core.metrics import Metrics
from tests.notifier_fakes import PD_KEY, SIGNING_SECRET, PagerDutyHarness, WebhookHarness
from tests.support import tier_signal

Sessions = async_sessionmaker[AsyncSession]


def config(channel: dict[str, Any]) -> AlertsConfig:
    return AlertsConfig.model_validate(
        {
            "channels": {"ch": channel},
            "teams": {"ops": {"channels": ["ch"]}},
            "routes": {1: ["ops"], 2: ["ops"], 3: ["ops"]},
            "delivery": {"jitter": 0},
        }
    )


async def queue_in_one_group(
    sessions: Sessions, cfg: AlertsConfig, clock: ManualClock, *stories: str
) -> None:
    """Raise an incident per story; their alerts are held together (one digest group)."""
    async with unit_of_work(sessions) as session:
        for story in stories:
            signal = tier_signal(clock.now(), signal_id=story, story_id=story, tier=2)
            assert await apply_signal(session, signal, cfg, clock) is not None
        await session.execute(update(Delivery).values(digest_group="g"))


async def dedupe_keys(sessions: Sessions) -> dict[int, str]:
    async with sessions() as session:
        rows = (await session.scalars(select(Delivery).order_by(Delivery.id))).all()
        return {row.incident_id: row.dedupe_key for row in rows}


class Spy:
    """A PagerDuty notifier that keeps the messages it is given."""

    kind = "pagerduty"
    rate_limits: ClassVar[tuple[RateLimit, ...]] = PagerDutyNotifier.rate_limits

    def __init__(self, inner: Notifier) -> None:
        self.inner, self.name = inner, inner.name
        self.got: list[AlertMessage] = []

    async def send(self, alert: AlertMessage) -> None:
        self.got.append(alert)
        await self.inner.send(alert)


@pytest.fixture
async def pd(clock: ManualClock) -> AsyncIterator[PagerDutyHarness]:
    harness = PagerDutyHarness(clock)
    yield harness
    await harness.close()


@pytest.fixture
async def hook(clock: ManualClock) -> AsyncIterator[WebhookHarness]:
    harness = WebhookHarness(clock)
    yield harness
    await harness.close()


async def test_a_channel_retyped_to_pagerduty_gets_no_digest(
    sessions: Sessions, clock: ManualClock, metrics: Metrics, pd: PagerDutyHarness
) -> None:
    """Alerts held (quiet hours, group wait) while ``ch`` was a chat; a restart made it a
    PagerDuty service. The rows say ``console``: merged by that, they went as one digest
    under the first incident's key, and PagerDuty never heard of the second."""
    await queue_in_one_group(sessions, config({"type": "console"}), clock, "s1", "s2")
    now_pd = config({"type": "pagerduty", "routing_key": PD_KEY, "url": pd.url})
    spy = Spy(pd.notifier())
    await outbox.deliver_due(sessions, {"ch": spy}, now_pd, clock, metrics)
    assert [m.digest for m in spy.got] == [(), ()]
    assert [m.dedup_key for m in spy.got] == ["crisiswatch-incident-1", "crisiswatch-incident-2"]
    assert pd.pages == ["crisiswatch-incident-1", "crisiswatch-incident-2"]


async def test_a_digest_sent_again_after_a_crash_keeps_each_incidents_key(
    sessions: Sessions,
    clock: ManualClock,
    metrics: Metrics,
    hook: WebhookHarness,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The digest of incidents 1 and 2 went out, then the alerter died before recording
    it; after the claim timeout the rows are due again, now with incident 3's: the new
    digest has a new key (another set of alerts), so a receiver deduping on the message
    key shows incidents 1 and 2 twice. Each item carries its delivery's own key."""
    cfg = config({"type": "webhook", "url": hook.url, "secret": SIGNING_SECRET})
    notifiers = {"ch": hook.notifier()}
    await queue_in_one_group(sessions, cfg, clock, "s1", "s2")

    async def crash(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("the alerter died before recording what it sent")

    with monkeypatch.context() as patched:
        patched.setattr(outbox, "_record", crash)
        with pytest.raises(RuntimeError):
            await outbox.deliver_due(sessions, notifiers, cfg, clock, metrics)
    await queue_in_one_group(sessions, cfg, clock, "s3")
    clock.advance(cfg.delivery.claim_timeout.total_seconds() + 1)
    await outbox.deliver_due(sessions, notifiers, cfg, clock, metrics)

    assert hook.problems == []
    first, again = (body["alert"] for body in hook.bodies)
    assert first["idempotency_key"] != again["idempotency_key"], "another set of alerts"
    keys = await dedupe_keys(sessions)
    assert [(i["incident_id"], i["idempotency_key"]) for i in first["digest"]] == [
        (1, keys[1]),
        (2, keys[2]),
    ]
    assert sorted((i["incident_id"], i["idempotency_key"]) for i in again["digest"]) == [
        (1, keys[1]),
        (2, keys[2]),
        (3, keys[3]),
    ]
    assert {i["page"] for i in again["digest"]} == {0}
