"""Distributed end to end on a real Kafka-compatible broker and PostgreSQL: every stage a
separate consumer (its own Runtime, as its own process would have), the scorer stopped
mid-stream and started again: no mention lost, no incident or alert twice."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from api.app import create_app
from api.runtime import Role, Runtime
from core.clock import ManualClock
from core.db import upgrade_database_blocking
from core.events import Mention, ScoredMention
from core.settings import BusConfig, DatabaseConfig
from tests.fakes import FakeClassifier
from tests.integration.test_e2e_embedded import embedded_settings
from tests.support import VIEWER_KEY, chatter, crisis_stream, http_receiver

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]
FAST_GROUP = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500}  # as test_faults


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.25)


async def test_stages_over_kafka_and_postgres_survive_a_scorer_restart(
    pg_url: str, kafka_config: BusConfig, clock: ManualClock
) -> None:
    await asyncio.to_thread(upgrade_database_blocking, pg_url)
    # Tansu answers a join after about half the session timeout, and a restarted member's
    # group waits about twice it: the default 10 s made most of this test's minute. What it
    # proves (nothing lost, nothing twice across the restart) does not depend on it.
    bus = kafka_config.model_copy(update=FAST_GROUP)
    async with http_receiver(clock.now) as receiver:
        base = embedded_settings(pg_url, receiver)
        settings = base.model_copy(
            update={
                "bus": bus,
                "database": DatabaseConfig(url=pg_url),
                "alerts": base.alerts.model_copy(update={"tick_interval": timedelta(seconds=0.2)}),
            }
        )

        def runtime(*roles: Role) -> Runtime:
            return Runtime(
                settings, roles=frozenset(roles), clock=clock, classifier=FakeClassifier()
            )

        listener = runtime(Role.LISTENER)
        scorer = runtime(Role.SCORER)
        detector = runtime(Role.DETECTOR)
        alerter = runtime(Role.ALERTER)
        api = runtime(Role.API)
        for rt in (alerter, detector, scorer, listener):
            await rt.start()

        audit = AIOKafkaConsumer(
            f"{kafka_config.topic_prefix}scored",
            bootstrap_servers=kafka_config.bootstrap_servers,
            group_id=f"{kafka_config.topic_prefix}audit",
            auto_offset_reset="earliest",
            session_timeout_ms=FAST_GROUP["session_timeout_ms"],
            heartbeat_interval_ms=FAST_GROUP["heartbeat_interval_ms"],
        )
        await audit.start()
        scored: dict[str, int] = {}

        async def drain_audit() -> None:
            batches = await audit.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    event = ScoredMention.model_validate_json(record.value)
                    scored[event.mention.id] = scored.get(event.mention.id, 0) + 1

        start = clock.now()
        stream: list[Mention] = chatter(start) + crisis_stream(start + timedelta(minutes=1))
        stream.sort(key=lambda m: m.created_at)
        half = len(stream) // 2
        app = create_app(api)
        try:
            assert listener.listener is not None
            clock.set(stream[half - 1].created_at)
            await listener.listener.ingest(stream[:half])

            async def some_scored() -> bool:
                await drain_audit()
                return len(scored) >= 20

            await wait_until(some_scored, 60, "the scorer to score the first mentions")
            await scorer.stop()  # mid-stream: the rest waits in Kafka

            clock.set(stream[-1].created_at)
            await listener.listener.ingest(stream[half:])
            scorer = runtime(Role.SCORER)
            await scorer.start()

            async def all_scored() -> bool:
                await drain_audit()
                return len(scored) == len(stream)

            await wait_until(all_scored, 90, "every mention to be scored after the restart")

            async def alerted() -> bool:
                return all(
                    any(b["alert"]["tier"] == 3 for b in receiver.on(path))
                    for path in ("/pr", "/legal", "/exec")
                )

            await wait_until(alerted, 60, "tier-3 alerts at PR, legal and executives")
            await asyncio.sleep(1.0)  # let any duplicate that would come, come

            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://cw") as c:
                    page = (await c.get("/incidents", headers={"X-API-Key": VIEWER_KEY})).json()
            # The root story's incident is tier 3. (Over several partitions the scorer may
            # hand the detector copies of the complaint before the complaint itself: the
            # copies' story is then merged into the complaint's, and so is its incident,
            # lower tier into higher; the root story's incident is where that leads.)
            by_story = {i["story_id"]: i for i in page["items"]}
            by_id = {i["id"]: i for i in page["items"]}
            crisis = by_story["acme:bluesky:root-1"]
            while crisis["merged_into_id"] is not None:
                crisis = by_id[crisis["merged_into_id"]]
            assert crisis["tier"] == 3 and crisis["status"] != "closed", page
            open_incidents = [i for i in page["items"] if i["merged_into_id"] is None]
            assert [i["id"] for i in open_incidents] == [crisis["id"]], page
            assert page["total"] == len(by_story)
            # at-least-once below, exactly once to the people: one alert per incident,
            # tier and channel, despite the scorer's restart and redeliveries
            for path in ("/cs", "/pr", "/marketing", "/legal", "/exec", "/oncall"):
                sent = [
                    (b["alert"]["incident_id"], b["alert"]["tier"])
                    for b in receiver.on(path)
                    if not b["alert"]["reason"].startswith("TASK ")  # playbook reminders
                    and b["alert"]["action"] == "trigger"  # not an ack/resolve follow-up
                ]
                assert len(sent) == len(set(sent)), (path, sent)
            tier3 = [b for b in receiver.on("/pr") if b["alert"]["tier"] == 3]
            assert {b["alert"]["incident_id"] for b in tier3} >= {crisis["id"]}
            assert receiver.bad_signatures == 0
        finally:
            await audit.stop()
            for rt in (listener, scorer, detector, alerter):
                await rt.stop()
