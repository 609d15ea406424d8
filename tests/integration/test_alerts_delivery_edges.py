"""Delivery at the edges, through the AlertService on a ManualClock (see
``test_alerts_policies`` for the world these tests share): a fallback channel that already
has the alert, an ack link that cannot be minted, a tier-3 alert beside a group held for
its interval."""

from __future__ import annotations

from sqlalchemy import select

from alerts.models import Delivery, Incident
from core.clock import ManualClock
from tests.integration.test_alerts_policies import Sessions, make_world
from tests.integration.test_alerts_retry_policy import flaky, next_due


async def test_a_fallback_that_already_has_the_alert_does_not_end_the_retries(
    sessions: Sessions, clock: ManualClock
) -> None:
    """The PR room's channel falls back to the executives' pager, which is itself one of
    the tier-3 alert's targets (so it already has this alert). A Slack outage of a few
    minutes must not make the PR room's tier-3 alert fail for good (and raise a self-alert
    calling a 503 "a permanent error"): with no channel left, a retryable failure of an
    open tier-3 incident is retried until it is delivered."""
    async for world in make_world(
        sessions,
        clock,
        teams={
            "customer_service": {"channels": ["cs"]},
            "pr": {"channels": ["pr"], "fallback_channels": ["exec"]},
            "legal": {"channels": ["legal"]},
            "executives": {"channels": ["exec"]},
        },
    ):
        pr = flaky(world)
        pr.down = True
        await world.signal("a", tier=3, story="s1")
        for _ in range(4):  # past fallback_after (3)
            await next_due(world)
        async with world.sessions() as session:
            (row,) = await session.scalars(
                select(Delivery)
                .join(Incident, Incident.id == Delivery.incident_id)
                .where(Incident.story_id == "s1", Delivery.channel == "pr")
            )
            own = await session.scalar(select(Incident).where(Incident.watch_id == "crisiswatch"))
        assert row.status == "pending", (row.status, row.attempts, row.last_error)
        assert own is None, "no self-alert: nothing failed for good"
        pr.down = False
        await next_due(world)
        assert [m.reason for ch, m in world.log if ch == "pr"] == ["new"]


async def test_an_ack_link_that_cannot_be_minted_loses_no_alert_and_repeats_none(
    sessions: Sessions, clock: ManualClock
) -> None:
    """Minting the ack link writes to the database (a SQLite write lock held too long, a
    PostgreSQL hiccup). When that fails for one message, the other messages of the round,
    already on their way, must still be recorded as sent (not sent again after the claim
    timeout), and the alert itself must go out (without its link) rather than wait."""
    async for world in make_world(sessions, clock):
        minted: list[tuple[int, str]] = []

        async def ack_link(
            incident_id: int, channel: str, minted: list[tuple[int, str]] = minted
        ) -> str | None:
            minted.append((incident_id, channel))
            if channel == "legal":
                raise RuntimeError("database is locked")
            return f"https://cw.example/ack/{incident_id}-{channel}"

        world.service.ack_link = ack_link
        await world.signal("a", tier=3, story="s1")  # pr, legal, exec in one round
        assert sorted(minted) == [(1, "exec"), (1, "legal"), (1, "pr")]
        async with world.sessions() as session:
            rows = list(await session.scalars(select(Delivery).order_by(Delivery.channel)))
        assert [(r.channel, r.status) for r in rows] == [
            ("exec", "sent"),
            ("legal", "sent"),
            ("pr", "sent"),
        ]
        sent = {ch: m for ch, m in world.log}
        assert sent["legal"].ack_url is None and sent["pr"].ack_url
        clock.advance(600)  # past the claim timeout: nothing is sent again
        world.log.clear()
        await world.service.deliver()
        assert not [m for _, m in world.log if m.reason == "new"]


async def test_a_tier3_alert_does_not_join_a_group_held_by_the_group_interval(
    sessions: Sessions, clock: ManualClock
) -> None:
    """One route for every tier of a watch, grouped by watch. A tier-2 alert that came
    within ``group_interval`` of the group's last message waits for the next interval; a
    tier-3 alert of the same watch is never held by the interval, so it must not join
    that waiting message (and wait minutes of its 10-minute deadline with it)."""
    routes = {"teams": ["pr"], "group_by": ["watch"], "group_wait": "PT0S",
              "group_interval": "PT5M"}  # fmt: skip
    inhibit = {"enabled": False}  # (else the tier-3 incident mutes the others)
    async for world in make_world(sessions, clock, routes=routes, inhibit=inhibit):
        await world.signal("a", tier=1, story="s1")
        assert world.sent() == ["pr"]
        clock.advance(60)
        await world.signal("b", tier=2, story="s2")
        assert world.sent() == [], "below tier 3: waits for the group interval"
        clock.advance(60)
        await world.signal("c", tier=3, story="s3")
        await world.service.tick()
        assert [(ch, m.tier) for ch, m in world.log] == [("pr", 3)], "tier 3 goes at once"
        world.log.clear()
        clock.advance(180)  # the interval is over: the tier-2 alert goes
        await world.service.tick()
        assert [(ch, m.tier) for ch, m in world.log] == [("pr", 2)]
