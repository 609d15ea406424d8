"""Incidents, outbox and escalation on a migrated database, with a ManualClock and
httpx.MockTransport standing in for the chat channels."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts import incidents as svc
from alerts.config import AlertsConfig
from alerts.escalation import escalate_due, run_step
from alerts.models import Delivery, Incident, IncidentEvent
from alerts.notifiers.base import Notifier
from alerts.notifiers.registry import build_notifiers
from alerts.outbox import deliver_due
from core.clock import ManualClock
from core.db import unit_of_work
from core.events import Evidence, HeatFeatures, Signal, WatchMatch
from core.metrics import Metrics

Sessions = async_sessionmaker[AsyncSession]
TEAMS = ("customer_service", "pr", "marketing", "legal", "executives")
EXTRA = ("oncall", "pr-lead", "counsel", "ceo")
EXTRA_PEOPLE = ("oncall", "pr_lead", "counsel", "ceo")


def make_config(**overrides: Any) -> AlertsConfig:
    secret = "signing-secret-0123456789"
    channels = {
        f"{name}-hook": {
            "type": "webhook",
            "url": f"https://hooks.example/{name}-hook",
            "secret": secret,
        }
        for name in (*TEAMS, *EXTRA)
    }
    people = {p: {"channels": [f"{p.replace('_', '-')}-hook"]} for p in EXTRA_PEOPLE}
    teams: dict[str, Any] = {t: {"channels": [f"{t}-hook"]} for t in TEAMS}
    for team, person in (("pr", "oncall"), ("legal", "counsel"), ("executives", "ceo")):
        teams[team]["rota"] = {"start": "2026-01-01T09:00:00+00:00", "people": [person]}
    step2 = {"people": ["pr_lead", "counsel", "ceo"]}
    data: dict[str, Any] = {
        "channels": channels,
        "people": people,
        "teams": teams,
        "delivery": {"jitter": 0, "max_attempts": 4},
        # level 1: each team's on-call person; level 2: the next level; then again
        "escalation_policies": {
            "standard": {
                "steps": [
                    {"after": "PT10M", "notify": "on_call"},
                    {"after": "PT10M", "notify": step2},
                ],
                "repeat": 2,
            }
        },
        "escalation": {1: "standard", 2: "standard", 3: "standard"},
        "sla": {},
    }
    data.update(overrides)
    return AlertsConfig.model_validate(data)


def make_signal(
    clock: ManualClock, sid: str = "sig-1", tier: int = 3, story: str = "story-1", **kw: Any
) -> Signal:
    now = clock.now()
    data: dict[str, Any] = {
        "id": sid,
        "story_id": story,
        "story_root": "bsky:root",
        "watch": WatchMatch(id="acme", brand="Acme", terms=("acme",)),
        "tier": tier,
        "previous_tier": 0,
        "spread": tier,
        "heat": HeatFeatures(
            mentions=41,
            mentions_window=41,
            window_minutes=10,
            unique_authors=37,
            reach=1_200_000,
            negative_share=0.9,
        ),
        "explanation": "41 negative posts in 10 min from 37 authors",
        "evidence": (
            Evidence(
                id="bsky:1",
                text="my acme phone caught fire @channel",
                author="ann",
                followers=900,
                created_at=now,
                label="negative",
                url="https://bsky.example/1",
            ),
            Evidence(id="bsky:2", text="same here", author="bob", created_at=now, label="negative"),
        ),
        "at": now,
        "trigger_received_at": now - timedelta(seconds=5),
    }
    data.update(kw)
    return Signal.model_validate(data)


@dataclass
class Channels:
    """Records every POST by channel; answers from a per-channel script, else 200."""

    script: dict[str, list[int]] = field(default_factory=dict)
    calls: list[tuple[str, int]] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        channel = request.url.path.strip("/")
        statuses = self.script.get(channel)
        status = statuses.pop(0) if statuses else 200
        self.calls.append((channel, status))
        return httpx.Response(status)

    def sent(self) -> list[str]:
        return sorted(c for c, s in self.calls if s < 300)


@dataclass
class Env:
    sessions: Sessions
    config: AlertsConfig
    clock: ManualClock
    metrics: Metrics
    channels: Channels
    notifiers: dict[str, Notifier]

    async def apply(self, signal: Signal) -> Incident | None:
        async with unit_of_work(self.sessions) as session:
            return await svc.apply_signal(
                session, signal, self.config, self.clock, metrics=self.metrics
            )

    async def deliver(self) -> int:
        return await deliver_due(
            self.sessions,
            self.notifiers,
            self.config,
            self.clock,
            self.metrics,
            rng=random.Random(0),
        )

    async def escalate(self) -> int:
        return await escalate_due(self.sessions, self.config, self.clock, self.metrics)

    async def deliveries(self) -> list[Delivery]:
        async with self.sessions() as session:
            return list(await session.scalars(select(Delivery).order_by(Delivery.id)))

    async def events(self, kind: str | None = None) -> list[IncidentEvent]:
        async with self.sessions() as session:
            stmt = select(IncidentEvent).order_by(IncidentEvent.id)
            if kind:
                stmt = stmt.where(IncidentEvent.kind == kind)
            return list(await session.scalars(stmt))

    async def incident(self, incident_id: int) -> Incident:
        async with self.sessions() as session:
            return await svc.get_incident(session, incident_id)

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


async def make_env(
    sessions: Sessions, clock: ManualClock, metrics: Metrics, **overrides: Any
) -> AsyncIterator[Env]:
    config = make_config(**overrides)
    channels = Channels()
    async with httpx.AsyncClient(transport=httpx.MockTransport(channels.handler)) as client:
        yield Env(
            sessions, config, clock, metrics, channels, build_notifiers(config, client, clock)
        )


@pytest.fixture
async def env(sessions: Sessions, clock: ManualClock, metrics: Metrics) -> AsyncIterator[Env]:
    async for e in make_env(sessions, clock, metrics):
        yield e


# -- opening, dedup, upgrade -----------------------------------------------------------


async def test_tier3_signal_opens_one_incident_alerting_pr_legal_and_executives(env: Env) -> None:
    incident = await env.apply(make_signal(env.clock))
    assert incident is not None
    assert (incident.status, incident.tier, incident.brand) == ("open", 3, "Acme")
    assert incident.next_escalation_at == env.clock.now() + timedelta(minutes=10)
    assert incident.opened_at.tzinfo is not None

    deliveries = await env.deliveries()
    assert sorted(d.channel for d in deliveries) == ["executives-hook", "legal-hook", "pr-hook"]
    assert {d.status for d in deliveries} == {"pending"}
    assert {d.dedupe_key for d in deliveries} == {
        f"{incident.id}:3:{t}-hook:alert" for t in ("pr", "legal", "executives")
    }
    assert env.sample("crisiswatch_incidents_opened_total", tier="3", drill="false") == 1

    assert await env.deliver() == 3
    assert env.channels.sent() == ["executives-hook", "legal-hook", "pr-hook"]
    detail = await env.incident(incident.id)
    assert [e.kind for e in detail.timeline][:1] == ["opened"]
    assert sorted(e.kind for e in detail.timeline) == sorted(
        ["opened", "escalation_started"]
        + ["alert_queued"] * 3
        + ["alert_delivered"] * 3
        # the playbooks of tiers 1 to 3 (alerts.workflow.tasks): reply, statement,
        # investigation, emergency group, legal review
        + ["task_created"] * 5
    )
    assert [ev.mention_id for ev in detail.evidence] == ["bsky:1", "bsky:2"]
    assert all(d.status == "sent" and d.attempts == 1 for d in detail.deliveries)
    # latency: mention received 5 s before; the first alert of the tier is what counts
    assert env.sample("crisiswatch_alert_latency_seconds_count", tier="3", drill="false") == 1
    assert env.sample(
        "crisiswatch_alert_latency_seconds_sum", tier="3", drill="false"
    ) == pytest.approx(5)
    assert env.sample("crisiswatch_deliveries_total", channel="webhook", outcome="sent") == 3


async def test_a_redelivered_signal_changes_nothing(env: Env) -> None:
    signal = make_signal(env.clock)
    first = await env.apply(signal)
    assert first is not None
    await env.deliver()
    assert await env.apply(signal) is None
    assert await env.apply(signal) is None
    assert await env.deliver() == 0
    async with env.sessions() as session:
        _, total = await svc.list_incidents(session)
    assert total == 1 and len(await env.deliveries()) == 3
    assert len(env.channels.calls) == 3
    assert env.sample("crisiswatch_incidents_opened_total", tier="3", drill="false") == 1


async def test_tier2_then_tier3_upgrades_and_alerts_the_new_teams(env: Env) -> None:
    opened = await env.apply(make_signal(env.clock, "s1", tier=2))
    assert opened is not None and opened.tier == 2
    await env.deliver()
    assert env.channels.sent() == ["marketing-hook", "pr-hook"]

    env.clock.advance(120)
    upgraded = await env.apply(make_signal(env.clock, "s2", tier=3, previous_tier=2))
    assert upgraded is not None and upgraded.id == opened.id
    assert upgraded.tier == 3 and upgraded.title == "Acme: network-wide crisis"
    assert upgraded.next_escalation_at == env.clock.now() + timedelta(minutes=10)
    await env.deliver()
    assert env.channels.sent() == [
        "executives-hook",
        "legal-hook",
        "marketing-hook",
        "pr-hook",
        "pr-hook",
    ]
    reasons = {(d.channel, d.tier, d.reason) for d in await env.deliveries()}
    assert ("pr-hook", 2, "alert") in reasons and ("pr-hook", 3, "upgrade") in reasons
    upgrade_event = (await env.events("upgraded"))[0]
    assert upgrade_event.detail["from_tier"] == 2 and upgrade_event.signal_id == "s2"
    assert env.sample("crisiswatch_alert_latency_seconds_count", tier="2", drill="false") == 1
    assert env.sample("crisiswatch_alert_latency_seconds_count", tier="3", drill="false") == 1


async def test_same_or_lower_tier_signal_only_adds_to_the_timeline(env: Env) -> None:
    incident = await env.apply(make_signal(env.clock, "s1", tier=3))
    assert incident is not None
    new_evidence = Evidence(
        id="bsky:3", text="still burning", created_at=env.clock.now(), label="negative"
    )
    again = await env.apply(make_signal(env.clock, "s2", tier=3, evidence=(new_evidence,)))
    lower = await env.apply(make_signal(env.clock, "s3", tier=1, spread=1))
    assert again is not None and lower is not None
    assert lower.tier == 3 and lower.spread == 1
    assert len(await env.deliveries()) == 3
    assert [e.signal_id for e in await env.events("signal")] == ["s2", "s3"]
    assert [e.mention_id for e in (await env.incident(incident.id)).evidence] == [
        "bsky:1",
        "bsky:2",
        "bsky:3",
    ]


async def test_tier0_signal_for_an_unknown_story_opens_nothing(env: Env) -> None:
    assert await env.apply(make_signal(env.clock, tier=0)) is None
    assert await env.deliveries() == [] and await env.events() == []


# -- delivery: retries and failures ----------------------------------------------------


async def test_a_500_is_retried_with_backoff_then_delivered(env: Env) -> None:
    env.channels.script["pr-hook"] = [500]
    await env.apply(make_signal(env.clock))
    assert await env.deliver() == 3
    pr = next(d for d in await env.deliveries() if d.channel == "pr-hook")
    assert (pr.status, pr.attempts, pr.last_error) == (
        "pending",
        1,
        "channel pr-hook: HTTP 500 (retryable)",
    )
    assert pr.next_attempt_at == env.clock.now() + timedelta(seconds=2)  # initial backoff

    assert await env.deliver() == 0  # not due yet
    env.clock.advance(2)
    assert await env.deliver() == 1
    pr = next(d for d in await env.deliveries() if d.channel == "pr-hook")
    assert (pr.status, pr.attempts, pr.last_error) == ("sent", 2, None)
    assert [c for c in env.channels.calls if c[0] == "pr-hook"] == [
        ("pr-hook", 500),
        ("pr-hook", 200),
    ]
    failed = await env.events("alert_failed")
    assert len(failed) == 1 and failed[0].detail["will_retry"] is True
    assert env.sample("crisiswatch_deliveries_total", channel="webhook", outcome="retry") == 1
    assert env.sample("crisiswatch_deliveries_total", channel="webhook", outcome="sent") == 3
    # the first of the tier's alerts went out at once: one latency sample, not two
    assert env.sample("crisiswatch_alert_latency_seconds_count", tier="3", drill="false") == 1


async def test_a_400_fails_at_once_without_retries(env: Env) -> None:
    env.channels.script["legal-hook"] = [400, 200]
    await env.apply(make_signal(env.clock))
    await env.deliver()
    env.clock.advance(3600)
    assert await env.deliver() == 0
    legal = next(d for d in await env.deliveries() if d.channel == "legal-hook")
    assert (legal.status, legal.attempts, legal.next_attempt_at) == ("failed", 1, None)
    assert "HTTP 400" in (legal.last_error or "")
    assert env.sample("crisiswatch_deliveries_total", channel="webhook", outcome="failed") == 1
    failed = await env.events("alert_failed")
    assert failed[0].detail["will_retry"] is False


async def test_retries_stop_after_max_attempts_and_honour_retry_after(env: Env) -> None:
    env.channels.script["pr-hook"] = [503, 503, 503, 503, 200]
    # tier 2: an open tier-3 incident is never given up (alerts.delivery.keep_trying_tier)
    await env.apply(make_signal(env.clock, tier=2))
    for expected_gap in (2, 4, 8):
        await env.deliver()
        pr = next(d for d in await env.deliveries() if d.channel == "pr-hook")
        assert pr.next_attempt_at == env.clock.now() + timedelta(seconds=expected_gap)
        env.clock.advance(expected_gap)
    await env.deliver()
    pr = next(d for d in await env.deliveries() if d.channel == "pr-hook")
    assert (pr.status, pr.attempts) == ("failed", 4)  # max_attempts = 4


async def test_retry_after_header_sets_the_next_attempt(env: Env, clock: ManualClock) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "45"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        notifiers = build_notifiers(env.config, client, clock)
        await env.apply(make_signal(clock))
        await deliver_due(env.sessions, notifiers, env.config, clock, env.metrics)
    assert {d.next_attempt_at for d in await env.deliveries()} == {
        clock.now() + timedelta(seconds=45)
    }


async def test_a_crash_between_claim_and_record_resends_after_the_claim_expires(env: Env) -> None:
    class Crash(BaseException):
        pass

    class Crashing:
        name, kind = "pr-hook", "webhook"

        async def send(self, alert: object) -> None:
            raise Crash

    await env.apply(make_signal(env.clock, tier=1))  # one delivery: customer_service
    crashing: dict[str, Notifier] = {"customer_service-hook": Crashing()}
    with pytest.raises(Crash):
        await deliver_due(env.sessions, crashing, env.config, env.clock, env.metrics)
    (row,) = await env.deliveries()
    assert (row.status, row.attempts) == ("pending", 1)  # claimed, outcome never recorded
    assert await env.deliver() == 0  # the claim still holds
    env.clock.advance(env.config.delivery.claim_timeout.total_seconds())
    assert await env.deliver() == 1
    (row,) = await env.deliveries()
    assert (row.status, row.attempts) == ("sent", 2)


async def test_a_removed_channel_fails_the_delivery_loudly(env: Env) -> None:
    await env.apply(make_signal(env.clock, tier=1))
    notifiers = {k: v for k, v in env.notifiers.items() if k != "customer_service-hook"}
    await deliver_due(env.sessions, notifiers, env.config, env.clock, env.metrics)
    (row,) = await env.deliveries()
    assert row.status == "failed" and "not configured" in (row.last_error or "")


# -- escalation, ack, resolve ----------------------------------------------------------


async def test_unacknowledged_incident_escalates_along_the_policy(env: Env) -> None:
    incident = await env.apply(make_signal(env.clock))
    assert incident is not None
    await env.deliver()
    env.clock.advance(10 * 60 - 1)
    assert await env.escalate() == 0
    env.clock.advance(1)
    assert await env.escalate() == 1
    assert await env.deliver() == 3
    level1 = sorted(c for c, _ in env.channels.calls[3:])
    assert level1 == ["ceo-hook", "counsel-hook", "oncall-hook"]
    detail = await env.incident(incident.id)
    assert detail.escalation_level == 1
    assert detail.next_escalation_at == env.clock.now() + timedelta(minutes=10)
    payload = next(d.payload for d in detail.deliveries if d.reason == "escalation-1")
    assert payload["reason"] == "ESCALATION level 1: not acknowledged within 10 min"
    assert payload["evidence"][0]["author"] == "ann"

    env.clock.advance(10 * 60)
    assert await env.escalate() == 1
    await env.deliver()
    level2 = sorted(c for c, _ in env.channels.calls[6:])
    # the policy's second step: the next level
    assert level2 == ["ceo-hook", "counsel-hook", "pr-lead-hook"]
    assert [e.detail["level"] for e in await env.events("escalated")] == [1, 2]
    assert env.sample("crisiswatch_escalations_total", tier="3", drill="false") == 2
    assert (await env.events("escalated"))[1].detail["unacknowledged_for"] == "20 min"


async def test_escalation_stops_after_the_last_step(
    sessions: Sessions, clock: ManualClock, metrics: Metrics
) -> None:
    once = {"steps": [{"after": 600, "notify": "on_call"}, {"after": 600, "notify": "route"}]}
    async for env in make_env(sessions, clock, metrics, escalation_policies={"standard": once}):
        await env.apply(make_signal(clock))
        for _ in range(2):
            clock.advance(600)
            assert await env.escalate() == 1
        clock.advance(3600)
        assert await env.escalate() == 0
        incident = (await env.deliveries())[0].incident_id
        # the routes' repeat_interval (default 4 h): a reminder, not another level
        assert (await env.incident(incident)).next_escalation_at == clock.now() + timedelta(hours=3)


async def test_ack_stops_escalation_even_past_the_deadline(env: Env) -> None:
    incident = await env.apply(make_signal(env.clock))
    assert incident is not None
    env.clock.advance(4 * 60)
    async with unit_of_work(env.sessions) as session:
        acked = await svc.acknowledge(
            session, incident.id, "maria", env.clock, metrics=env.metrics, note="on it"
        )
    assert (acked.status, acked.acked_by, acked.next_escalation_at) == (
        "acknowledged",
        "maria",
        None,
    )
    assert acked.escalation_token != incident.escalation_token
    env.clock.advance(3600)
    assert await env.escalate() == 0
    assert env.sample("crisiswatch_time_to_ack_seconds_sum", tier="3", drill="false") == 240
    ack_event = (await env.events("acknowledged"))[0]
    assert ack_event.actor == "maria" and ack_event.detail["note"] == "on it"


async def test_acknowledging_twice_is_harmless(env: Env) -> None:
    incident = await env.apply(make_signal(env.clock))
    assert incident is not None
    async with unit_of_work(env.sessions) as session:
        first = await svc.acknowledge(session, incident.id, "maria", env.clock, metrics=env.metrics)
    env.clock.advance(60)
    async with unit_of_work(env.sessions) as session:
        second = await svc.acknowledge(session, incident.id, "tom", env.clock, metrics=env.metrics)
    assert (second.acked_by, second.acked_at) == ("maria", first.acked_at)
    assert second.escalation_token == first.escalation_token
    assert len(await env.events("acknowledged")) == 1
    assert env.sample("crisiswatch_time_to_ack_seconds_count", tier="3", drill="false") == 1


async def test_a_stale_escalation_round_does_nothing(env: Env) -> None:
    incident = await env.apply(make_signal(env.clock))
    assert incident is not None
    stale_token = incident.escalation_token
    env.clock.advance(601)
    async with unit_of_work(env.sessions) as session:  # the ack lands first...
        await svc.acknowledge(session, incident.id, "maria", env.clock)
    async with unit_of_work(env.sessions) as session:  # ...then a round that read before it
        assert (
            await run_step(session, incident.id, stale_token, env.config, env.clock.now()) is None
        )
    assert await env.events("escalated") == []


async def test_a_round_holding_a_rotated_token_does_nothing_while_still_open(env: Env) -> None:
    """The token alone guards it: an upgrade re-arms the clock, the incident stays open."""
    incident = await env.apply(make_signal(env.clock, tier=2))
    assert incident is not None
    stale_token = incident.escalation_token
    env.clock.advance(601)
    upgraded = await env.apply(make_signal(env.clock, sid="sig-2", tier=3))
    assert upgraded is not None and upgraded.status == "open"
    assert upgraded.escalation_token != stale_token
    env.clock.advance(601)  # the new deadline has passed too: only the token says no
    async with unit_of_work(env.sessions) as session:
        assert (
            await run_step(session, incident.id, stale_token, env.config, env.clock.now()) is None
        )
    assert await env.events("escalated") == []


async def test_ack_cancels_escalations_not_yet_sent(env: Env) -> None:
    incident = await env.apply(make_signal(env.clock))
    assert incident is not None
    await env.deliver()
    env.clock.advance(600)
    assert await env.escalate() == 1  # queued, not sent yet
    async with unit_of_work(env.sessions) as session:
        await svc.acknowledge(session, incident.id, "maria", env.clock)
    # only the ack goes out: mirrored to the three channels that got the alert
    assert await env.deliver() == 3
    statuses = {(d.reason, d.status) for d in await env.deliveries()}
    assert statuses == {("alert", "sent"), ("escalation-1", "cancelled"), ("ack", "sent")}
    follow_up = next(d.payload for d in await env.deliveries() if d.reason == "ack")
    assert (follow_up["action"], follow_up["actor"]) == ("acknowledge", "maria")
    assert follow_up["reason"] == "acknowledged by maria"


async def test_resolve_closes_and_is_idempotent(env: Env) -> None:
    incident = await env.apply(make_signal(env.clock))
    assert incident is not None
    env.clock.advance(60)
    async with unit_of_work(env.sessions) as session:
        resolved = await svc.resolve(session, incident.id, "lead", env.clock, note="handled")
    assert (resolved.status, resolved.resolved_by, resolved.next_escalation_at) == (
        "resolved",
        "lead",
        None,
    )
    async with unit_of_work(env.sessions) as session:
        again = await svc.resolve(session, incident.id, "other", env.clock)
    assert again.resolved_by == "lead" and len(await env.events("resolved")) == 1
    # nothing pending goes out for a resolved incident, and nothing escalates
    assert await env.deliver() == 0
    env.clock.advance(3600)
    assert await env.escalate() == 0
    async with unit_of_work(env.sessions) as session:
        with pytest.raises(svc.InvalidTransition, match="resolved"):
            await svc.acknowledge(session, incident.id, "late", env.clock)
    async with unit_of_work(env.sessions) as session:
        with pytest.raises(svc.IncidentNotFound, match="incident 999 does not exist"):
            await svc.resolve(session, 999, "x", env.clock)


async def test_an_upgrade_reopens_an_acknowledged_incident(env: Env) -> None:
    incident = await env.apply(make_signal(env.clock, "s1", tier=2))
    assert incident is not None
    async with unit_of_work(env.sessions) as session:
        await svc.acknowledge(session, incident.id, "maria", env.clock)
    env.clock.advance(300)
    upgraded = await env.apply(make_signal(env.clock, "s2", tier=3))
    assert upgraded is not None
    assert (upgraded.status, upgraded.acked_by, upgraded.escalation_level) == ("open", None, 0)
    assert upgraded.next_escalation_at == env.clock.now() + timedelta(minutes=10)
    assert (await env.events("upgraded"))[0].detail["was"] == "acknowledged"


async def test_list_and_get(env: Env) -> None:
    await env.apply(make_signal(env.clock, "a", tier=1, story="s-a"))
    env.clock.advance(1)
    b = await env.apply(make_signal(env.clock, "b", tier=3, story="s-b"))
    env.clock.advance(1)
    await env.apply(make_signal(env.clock, "c", tier=2, story="s-c"))
    assert b is not None
    async with unit_of_work(env.sessions) as session:
        await svc.resolve(session, b.id, "lead", env.clock)
    async with env.sessions() as session:
        items, total = await svc.list_incidents(session, limit=2)
        assert total == 3 and [i.story_id for i in items] == ["s-c", "s-b"]
        items, total = await svc.list_incidents(session, limit=2, offset=2)
        assert total == 3 and [i.story_id for i in items] == ["s-a"]
        items, total = await svc.list_incidents(session, status="open")
        assert total == 2 and {i.story_id for i in items} == {"s-a", "s-c"}
        items, total = await svc.list_incidents(session, tier=3, watch="acme")
        assert [i.story_id for i in items] == ["s-b"]
        _, total = await svc.list_incidents(session, watch="other")
        assert total == 0
        with pytest.raises(ValueError, match="unknown status"):
            await svc.list_incidents(session, status="archived")
        detail = await svc.get_incident(session, b.id)
        assert detail.timeline[0].kind == "opened"
        assert detail.timeline[-1].kind == "resolved"
        assert len(detail.evidence) == 2 and len(detail.deliveries) == 3
        with pytest.raises(svc.IncidentNotFound):
            await svc.get_incident(session, 12345)
        counts = await svc.open_counts(session)
        assert counts == {(1, False): 1, (2, False): 1, (3, False): 0} | {
            (t, True): 0 for t in (1, 2, 3)
        }


# -- PostgreSQL ------------------------------------------------------------------------


@pytest.mark.postgres
async def test_signal_to_delivery_on_postgres(
    pg_sessions: Sessions, clock: ManualClock, metrics: Metrics
) -> None:
    async for env in make_env(pg_sessions, clock, metrics):
        env.channels.script["pr-hook"] = [502]
        incident = await env.apply(make_signal(clock))
        assert incident is not None and await env.apply(make_signal(clock)) is None
        assert incident.opened_at == clock.now()
        assert await env.deliver() == 3
        clock.advance(2)
        assert await env.deliver() == 1
        assert {d.status for d in await env.deliveries()} == {"sent"}
        clock.advance(600)
        assert await env.escalate() == 1
        assert await env.deliver() == 3
        async with unit_of_work(pg_sessions) as session:
            await svc.acknowledge(session, incident.id, "maria", clock)
        detail = await env.incident(incident.id)
        assert detail.status == "acknowledged" and detail.acked_at == clock.now()
        assert detail.next_escalation_at is None


async def test_a_forecast_report_is_a_note_that_never_opens_upgrades_or_notifies(
    env: Env,
) -> None:
    def forecast(sid: str, tier: int) -> Signal:
        return make_signal(
            env.clock,
            sid,
            tier=tier,
            previous_tier=tier,
            forecast_minutes=30.0,
            explanation="Forecast at 30 min: projected 900 posts",
        )

    # a story without an incident: nothing opens, nobody is told
    assert await env.apply(forecast("s#1", 2)) is None
    assert await env.deliveries() == []
    # on an open incident: a timeline note with its age, the tier kept, nobody told
    opened = await env.apply(make_signal(env.clock, "s#2", tier=2))
    assert opened is not None
    sent = len(await env.deliveries())
    noted = await env.apply(forecast("s#3", 3))
    assert noted is not None and noted.id == opened.id
    assert (await env.incident(opened.id)).tier == 2
    assert len(await env.deliveries()) == sent
    note = (await env.events("signal"))[-1]
    assert note.detail["forecast_minutes"] == 30.0 and note.signal_id == "s#3"
