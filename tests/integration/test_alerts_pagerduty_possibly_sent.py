"""A PagerDuty trigger that may have reached PagerDuty, though never recorded as sent
(its answer was lost: a timeout; or the alerter died before recording it), and that is
then cancelled (an ack, a resolve, a merge, an upgrade's new page) still gets its
follow-up: else the alert PagerDuty may hold under its ``dedup_key`` stays triggered and
keeps paging for an incident already acknowledged or resolved in crisiswatch.
PagerDuty takes an acknowledge or resolve for a key it does not know (202, no effect).

Through the outbox and the incident workflow, against a fake PagerDuty that keeps the
Events API v2 alert state, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts import incidents as svc
from alerts import outbox
from alerts.config import AlertsConfig
from alerts.models import Delivery
from alerts.notifiers.base import AlertMessage, Notifier, RateLimit
from alerts.workflow import service as workflow
from core.clock import ManualClock
from core.db import unit_of_work
from core.metrics import Metrics
from tests.notifier_fakes import PD_KEY, PagerDutyHarness
from tests.support import tier_signal

Sessions = async_sessionmaker[AsyncSession]
KEY_1 = "crisiswatch-incident-1"


class LostAnswers(PagerDutyHarness):
    """PagerDuty processes the event, but its answer never comes back (a timeout)."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock)
        self.lose_answers = False

    def ok(self) -> httpx.Response:
        answer = super().ok()
        if self.lose_answers:
            raise httpx.ReadTimeout("the answer was lost", request=self.requests[-1])
        return answer


def config(channel: dict[str, Any] | None = None, **delivery: Any) -> AlertsConfig:
    pd = {"type": "pagerduty", "routing_key": PD_KEY, "url": PagerDutyHarness.url}
    return AlertsConfig.model_validate(
        {
            "channels": {"pd": channel or pd, "chat": {"type": "console"}},
            "teams": {"ops": {"channels": ["pd"], "fallback_channels": ["chat"]}},
            "routes": {1: ["ops"], 2: ["ops"], 3: ["ops"]},
            "delivery": {"jitter": 0} | delivery,
        }
    )


@pytest.fixture
async def pd(clock: ManualClock) -> AsyncIterator[LostAnswers]:
    harness = LostAnswers(clock)
    yield harness
    await harness.close()


class Chat:
    name, kind = "chat", "console"
    rate_limits: ClassVar[tuple[RateLimit, ...]] = ()

    def __init__(self, log: list[AlertMessage]) -> None:
        self.log = log

    async def send(self, alert: AlertMessage) -> None:
        self.log.append(alert)


class Flow:
    def __init__(self, sessions: Sessions, clock: ManualClock, pd: LostAnswers) -> None:
        self.sessions, self.clock, self.pd = sessions, clock, pd
        self.config = config()
        self.metrics = Metrics()
        self.chat: list[AlertMessage] = []
        self.notifiers: dict[str, Notifier] = {"pd": pd.notifier(), "chat": Chat(self.chat)}

    async def signal(self, sid: str, tier: int) -> int:
        async with unit_of_work(self.sessions) as session:
            signal = tier_signal(self.clock.now(), signal_id=sid, story_id="s1", tier=tier)
            incident = await svc.apply_signal(session, signal, self.config, self.clock)
            assert incident is not None
            return incident.id

    async def deliver(self) -> int:
        return await outbox.deliver_due(
            self.sessions, self.notifiers, self.config, self.clock, self.metrics
        )

    async def ack(self, incident_id: int) -> None:
        async with unit_of_work(self.sessions) as session:
            await svc.acknowledge(session, incident_id, "alice", self.clock)

    async def resolve(self, incident_id: int) -> None:
        async with unit_of_work(self.sessions) as session:
            await svc.resolve(session, incident_id, "alice", self.clock)

    async def rows(self) -> list[tuple[str, str, int]]:
        async with self.sessions() as session:
            found = await session.scalars(select(Delivery).order_by(Delivery.id))
            return [(r.reason, r.status, r.attempts) for r in found]


@pytest.fixture
def flow(any_sessions: Sessions, clock: ManualClock, pd: LostAnswers) -> Flow:
    return Flow(any_sessions, clock, pd)


async def trigger_lost(flow: Flow, tier: int = 2, *, moved: bool = False) -> int:
    """The incident's trigger reached PagerDuty; its answer did not (it waits for a retry,
    or, ``moved``, went to the fallback chat)."""
    incident = await flow.signal("a", tier)
    flow.pd.lose_answers = True
    await flow.deliver()
    flow.pd.lose_answers = False
    if moved:
        await flow.deliver()  # the fallback
    assert flow.pd.open_alerts() == {KEY_1: "triggered"}
    expected = [("alert", "failed", 1), ("alert", "sent", 1)] if moved else []
    assert await flow.rows() == (expected or [("alert", "pending", 1)])
    return incident


async def test_an_ack_after_a_lost_answer_acknowledges_the_alert(flow: Flow) -> None:
    incident = await trigger_lost(flow)
    await flow.ack(incident)  # cancels the failing trigger
    await flow.deliver()
    assert flow.pd.open_alerts() == {KEY_1: "acknowledged"}, "it kept paging at night"
    await flow.resolve(incident)
    await flow.deliver()
    assert flow.pd.open_alerts() == {}
    assert [b["event_action"] for b in flow.pd.bodies] == ["trigger", "acknowledge", "resolve"]


async def test_a_resolve_after_a_lost_answer_resolves_the_alert(flow: Flow) -> None:
    incident = await trigger_lost(flow)
    await flow.resolve(incident)
    await flow.deliver()
    assert flow.pd.open_alerts() == {}
    assert await flow.rows() == [("alert", "cancelled", 1), ("resolve", "sent", 1)]


async def test_a_merge_after_a_lost_answer_resolves_the_alert(flow: Flow) -> None:
    incident = await trigger_lost(flow)
    async with unit_of_work(flow.sessions) as session:
        signal = tier_signal(flow.clock.now(), signal_id="b", story_id="s2", tier=3)
        survivor = await svc.apply_signal(session, signal, flow.config, flow.clock)
        assert survivor is not None
    async with unit_of_work(flow.sessions) as session:
        await workflow.merge(session, incident, survivor.id, "alice", flow.clock)
    await flow.deliver()
    assert flow.pd.open_alerts() == {"crisiswatch-incident-2": "triggered"}


async def test_an_alert_moved_to_its_fallback_after_a_lost_answer_is_acknowledged(
    flow: Flow,
) -> None:
    """PagerDuty is slow: the trigger's answer is lost, and the alert moves to the team's
    fallback chat (``fallback_after``). PagerDuty opened the alert all the same."""
    flow.config = config(fallback_after=1)
    incident = await trigger_lost(flow, moved=True)
    assert [m.action for m in flow.chat] == ["trigger"]
    await flow.ack(incident)
    await flow.deliver()
    assert flow.pd.open_alerts() == {KEY_1: "acknowledged"}
    assert [m.action for m in flow.chat] == ["trigger", "acknowledge"]
    await flow.resolve(incident)
    await flow.deliver()
    assert flow.pd.open_alerts() == {}


async def test_a_send_that_times_out_after_the_ack_is_acknowledged(flow: Flow) -> None:
    """The trigger is in flight when somebody acknowledges; its answer is lost. The ack
    found nothing sent to mirror; recording the timeout cancels the trigger (moot now)."""
    incident = await flow.signal("a", 2)
    inner = flow.notifiers["pd"]

    class AckedMeanwhile:
        name, kind = inner.name, inner.kind
        rate_limits: ClassVar[tuple[RateLimit, ...]] = inner.rate_limits

        async def send(self, alert: AlertMessage) -> None:
            if alert.action == "trigger":
                flow.pd.lose_answers = True
                await flow.ack(incident)  # commits while the send is not recorded
            try:
                await inner.send(alert)
            finally:
                flow.pd.lose_answers = False

    flow.notifiers["pd"] = AckedMeanwhile()
    await flow.deliver()
    assert flow.pd.open_alerts() == {KEY_1: "acknowledged"}
    assert await flow.rows() == [("alert", "cancelled", 1), ("ack", "sent", 1)]
    await flow.resolve(incident)
    await flow.deliver()
    assert flow.pd.open_alerts() == {}


async def crash_before_recording(flow: Flow, monkeypatch: pytest.MonkeyPatch) -> None:
    async def crash(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("the alerter died before recording what it sent")

    with monkeypatch.context() as patched:
        patched.setattr(outbox, "_record", crash)
        with pytest.raises(RuntimeError):
            await flow.deliver()
    assert flow.pd.open_alerts() == {KEY_1: "triggered"}


async def test_a_resolve_after_a_crash_resolves_the_alert(
    flow: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    incident = await flow.signal("a", 2)
    await crash_before_recording(flow, monkeypatch)
    await flow.resolve(incident)
    await flow.deliver()
    assert flow.pd.open_alerts() == {}
    flow.clock.advance(flow.config.delivery.claim_timeout.total_seconds() + 1)
    await flow.deliver()
    assert [b["event_action"] for b in flow.pd.bodies] == ["trigger", "resolve"]


async def test_a_new_page_resolves_an_older_page_lost_in_a_crash(
    flow: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Page 0's trigger went out, the alerter died; somebody acknowledged; an upgrade
    starts page 1 before page 0's row was due again: the upgrade cancels it, and must
    resolve what it may have opened."""
    incident = await flow.signal("a", 2)
    await crash_before_recording(flow, monkeypatch)
    await flow.ack(incident)
    await flow.signal("b", 3)  # a new page
    await flow.deliver()
    assert flow.pd.open_alerts() == {"crisiswatch-incident-1-1": "triggered"}
    await flow.resolve(incident)
    await flow.deliver()
    assert flow.pd.open_alerts() == {}


async def test_a_new_page_resolves_an_older_page_cancelled_by_the_ack(flow: Flow) -> None:
    """The ack cancelled page 0's failing trigger (and acknowledged it); the upgrade's new
    page must resolve it (an acknowledged alert stays open for good in PagerDuty, or pages
    again at the service's acknowledgement timeout)."""
    incident = await trigger_lost(flow)
    await flow.ack(incident)
    await flow.deliver()
    await flow.signal("b", 3)  # a new page
    await flow.deliver()
    assert flow.pd.open_alerts() == {"crisiswatch-incident-1-1": "triggered"}
    await flow.resolve(incident)
    await flow.deliver()
    assert flow.pd.open_alerts() == {}
    actions = [(b["event_action"], b["dedup_key"]) for b in flow.pd.bodies]
    assert actions == [
        ("trigger", KEY_1),
        ("acknowledge", KEY_1),
        ("resolve", KEY_1),
        ("trigger", "crisiswatch-incident-1-1"),
        ("resolve", "crisiswatch-incident-1-1"),
    ], "one follow-up per page and action"


async def test_the_normal_path_sends_each_follow_up_once(flow: Flow) -> None:
    incident = await flow.signal("a", 2)
    await flow.deliver()
    await flow.ack(incident)
    await flow.deliver()
    await flow.signal("b", 3)  # a new page
    await flow.deliver()
    await flow.resolve(incident)
    await flow.deliver()
    flow.clock.advance(3600)
    await flow.deliver()
    actions = [(b["event_action"], b["dedup_key"]) for b in flow.pd.bodies]
    assert actions == [
        ("trigger", KEY_1),
        ("acknowledge", KEY_1),
        ("resolve", KEY_1),
        ("trigger", "crisiswatch-incident-1-1"),
        ("resolve", "crisiswatch-incident-1-1"),
    ]


async def test_a_channel_retyped_to_pagerduty_is_sent_and_followed_as_pagerduty(
    flow: Flow,
) -> None:
    """Page 0's alert was queued while ``pd`` was a chat; somebody acknowledged, an
    upgrade started page 1; a restart made ``pd`` a PagerDuty service before they went.
    Page 0's alert goes to PagerDuty as a trigger: it is resolved at once (superseded),
    and every event is counted as a PagerDuty delivery."""
    flow.config = config({"type": "console"})
    incident = await flow.signal("a", 2)
    await flow.ack(incident)
    await flow.signal("b", 3)  # a new page
    flow.config = config()
    await flow.deliver()  # ``pd`` is PagerDuty now
    assert flow.pd.open_alerts() == {"crisiswatch-incident-1-1": "triggered"}
    sent = flow.metrics.registry.get_sample_value(
        "crisiswatch_deliveries_total", {"channel": "pagerduty", "outcome": "sent"}
    )
    assert sent == 3
    await flow.resolve(incident)
    await flow.deliver()
    assert flow.pd.open_alerts() == {}
