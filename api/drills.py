"""Crisis drill scenarios and their injection through the real pipeline.

A scenario is a synthetic story: a first post and ``n`` follow-ups (reposts, replies,
copies) from ``n`` authors on several platforms within ``minutes``, written about the
watch's brand. Every mention is marked ``drill`` (the detector keeps drill stories apart,
alerts say DRILL, the incident is a drill incident). The posts are dated so that the story
has just spread over the scenario's minutes; they go in through the listener when this
process runs one (matching, dedup, as any mention, but to the watch drilled only: never
to the other watches that name the brand), otherwise straight onto the mentions topic
with the watch set.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from aiokafka.errors import KafkaError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel
from sqlalchemy import false, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.workflow.drills import Drill
from api import audit
from api.auth import Principal
from api.runtime import Runtime, make_bus
from core.db import unit_of_work
from core.events import TOPIC_MENTIONS, Author, Mention, WatchMatch

log = logging.getLogger(__name__)

PLATFORMS = ("bluesky", "mastodon", "reddit", "weibo")


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    first: str  # {brand} is replaced
    follow_ups: tuple[str, ...]
    n: int = 200
    minutes: float = 6.0


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "product_complaint",
            "a product complaint going viral (a phone that caught fire while charging)",
            "My {brand} phone caught fire while charging, this is dangerous, {brand} must "
            "recall it",
            (
                "Same here, my {brand} battery is burning hot. Terrible, I want a refund",
                "{brand} is ignoring the fire reports. Worst customer service ever",
                "{brand}手机充电起火，太危险了，必须召回！",
            ),
        ),
        Scenario(
            "executive_remark",
            "an executive's remark going viral",
            "{brand}'s CEO said customers who complain are 'too poor to understand' — "
            "arrogant and terrible, I hate this company",
            (
                "Boycott {brand}. Arrogant executives, terrible attitude to customers",
                "Never buying {brand} again after that CEO remark. Shameful",
                "{brand}高管的言论太恶心了，垃圾公司，抵制！",
            ),
        ),
        Scenario(
            "rumour",
            "a rumour spreading (a fake recall notice)",
            "Leaked: {brand} hides a dangerous defect and will recall every device, "
            "terrible scandal",
            (
                "Is it true {brand} lied about the defect? Awful if so, I want a refund",
                "{brand} recall scandal is everywhere, the worst cover-up",
                "听说{brand}隐瞒缺陷，骗人的，太可怕了",
            ),
        ),
    )
}


class DrillRefused(ValueError):
    """The drill cannot run (unknown scenario or watch): the API answers 422."""


class DrillUnavailable(RuntimeError):
    """This process cannot inject mentions (an API-only process on the in-process bus):
    the API answers 409."""


class DrillInProgress(DrillUnavailable):
    """A drill of the same scenario on the same watch is still remembered by the detector
    (its story lasts ``detector.story_expiry_hours``): the new drill's mentions would join
    that story and the new drill would never be detected. The API answers 409."""


class DrillBusUnreachable(DrillUnavailable):
    """The bus that would carry the drill's mentions cannot be reached: the API answers 503
    and no drill is recorded."""


def mentions_for(
    scenario: Scenario, brand: str, drill_id: int, start: datetime, nonce: str = ""
) -> list[Mention]:
    """The drill's posts. Their ids (``<platform>:drill<id>.<nonce>-...``) are the drill's
    own even where a drill id is given again (SQLite hands out the id of a drill that
    was refused and rolled back): dedup would take them for the refused drill's posts,
    and the detector would join them to its story."""
    tag = f"drill{drill_id}.{nonce}" if nonce else f"drill{drill_id}"
    root_id = f"{PLATFORMS[0]}:{tag}-root"
    out = [
        Mention(
            id=root_id,
            source=PLATFORMS[0],
            text=scenario.first.format(brand=brand),
            lang="en",
            created_at=start,
            author=Author(id=f"{tag}-victim", followers=1200),
            drill=True,
        )
    ]
    for i in range(scenario.n):
        source = PLATFORMS[i % len(PLATFORMS)]
        kind = i % 3
        text = scenario.follow_ups[i % len(scenario.follow_ups)].format(brand=brand)
        if kind == 2:
            text = f"{scenario.first.format(brand=brand)} #{source}{i % 7}"
        out.append(
            Mention(
                id=f"{source}:{tag}-{i}",
                source=source,
                text="" if kind == 0 else text,
                lang="zh" if not text.isascii() else "en",
                created_at=start + timedelta(seconds=(i + 1) * scenario.minutes * 60 / scenario.n),
                author=Author(id=f"{tag}-u{i}", followers=100 + 37 * i),
                repost_of=root_id if kind == 0 else None,
                reply_to=root_id if kind == 1 else None,
                drill=True,
            )
        )
    return out


async def start_drill(
    session: AsyncSession, runtime: Runtime, scenario_name: str, watch_id: str, actor: str
) -> Drill:
    """Record the drill and inject its mentions (the caller commits the record)."""
    scenario = SCENARIOS.get(scenario_name)
    if scenario is None:
        raise DrillRefused(f"unknown scenario {scenario_name!r}; one of {', '.join(SCENARIOS)}")
    watches = {w.id: w for w in runtime.settings.listener.watches}
    watch = watches.get(watch_id)
    if watch is None:
        raise DrillRefused(f"unknown watch {watch_id!r}; configured: {', '.join(watches)}")
    brand = watch.brand or watch.id
    if runtime.listener is None and runtime.bus is None and runtime.settings.bus.kind != "kafka":
        raise DrillUnavailable(
            "this process runs neither the listener nor a bus: start drills on a process "
            "that runs the listener (crisiswatch run, or the api with the listener role)"
        )
    now = runtime.clock.now()
    await _serialize(session)
    # the new drill's first post is dated ``minutes`` back: the earlier story must be
    # forgotten by then
    expiry = timedelta(hours=runtime.settings.detector.story_expiry_hours, minutes=scenario.minutes)
    earlier = await session.scalar(
        select(Drill)
        .where(
            Drill.watch_id == watch.id,
            Drill.scenario == scenario.name,
            Drill.started_at > now - expiry,
        )
        .order_by(Drill.id.desc())
        .limit(1)
    )
    if earlier is not None:
        raise DrillInProgress(
            f"drill {earlier.id} ({scenario.name}) on watch {watch.id!r} started at "
            f"{earlier.started_at.isoformat()}: its story is remembered until "
            f"{(earlier.started_at + expiry).isoformat()} and a new {scenario.name} drill "
            "would join it; start another scenario or watch, or wait"
        )
    start = now - timedelta(minutes=scenario.minutes)
    drill = Drill(
        scenario=scenario.name,
        watch_id=watch.id,
        story_root="",
        mentions=scenario.n + 1,
        first_mention_at=start,
        started_at=now,
        started_by=actor,
    )
    session.add(drill)
    await session.flush()
    mentions = mentions_for(scenario, brand, drill.id, start, secrets.token_hex(4))
    drill.story_root = mentions[0].id
    if runtime.listener is not None:
        report = await runtime.listener.ingest(mentions, only_watch=watch.id)
        if report.accepted - report.unmatched <= 0:  # nothing published: no drill to run
            raise DrillUnavailable(
                f"watch {watch.id!r} matched none of the drill's {len(mentions)} posts "
                f"({report.unmatched} not matched by its query, {report.duplicates} already "
                f"seen): the {scenario.name} scenario's posts name the brand {brand!r}; "
                "drill a watch whose query matches them"
            )
    else:
        match = WatchMatch(id=watch.id, brand=brand, terms=(brand,))
        events: list[tuple[str, BaseModel]] = [
            (m.id, m.model_copy(update={"watch": match, "received_at": now})) for m in mentions
        ]
        if runtime.bus is not None:
            try:
                await runtime.bus.publish_many(TOPIC_MENTIONS, events)
            except Exception as exc:
                log.error("cannot publish the drill's mentions: %s: %s", type(exc).__name__, exc)
                raise DrillBusUnreachable(
                    f"the bus did not take the drill's mentions, so no drill was started: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        else:
            await _publish_once(runtime, events)
    return drill


async def _serialize(session: AsyncSession) -> None:
    """Start drills one at a time (API replicas, a scheduler in each): the check for an
    earlier drill and the new drill's record happen under a lock held until commit."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(7416373)"))  # 'drill'
    else:  # SQLite: FOR UPDATE takes the database's write lock (core.db)
        await session.execute(select(Drill.id).where(false()).with_for_update())


BUS_CONNECT_TIMEOUT = 20.0
"""Seconds an API-only process waits for the broker when it starts a drill."""


async def _publish_once(runtime: Runtime, events: list[tuple[str, BaseModel]]) -> None:
    """Publish a drill's mentions from a process that keeps no bus (the distributed API,
    which must answer while the broker is down): connect a producer for this one drill."""
    bus = make_bus(runtime.settings, runtime.metrics)
    try:
        await asyncio.wait_for(bus.start(), BUS_CONNECT_TIMEOUT)
        await asyncio.wait_for(bus.publish_many(TOPIC_MENTIONS, events), BUS_CONNECT_TIMEOUT)
    except (TimeoutError, RuntimeError, KafkaError) as exc:
        log.error("cannot publish the drill's mentions: %s: %s", type(exc).__name__, exc)
        raise DrillBusUnreachable(
            f"the bus ({runtime.settings.bus.bootstrap_servers}) cannot be reached, so no "
            f"drill was started: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        await bus.stop()


SCHEDULER = "scheduler"
SYSTEM_SCHEDULER = Principal(f"system:{SCHEDULER}", "system")
"""Who the audit log says started a scheduled drill (no person did)."""
SCHEDULE_DEDUP = timedelta(minutes=10)
"""A scheduled drill started this recently on the watch (by another replica's scheduler,
firing at the same time) stands for this firing."""


class DrillSchedule:
    """Runs the scenarios in turn on ``settings.drills.cron`` (APScheduler), in the
    process that runs the listener; started and stopped by the app's lifespan."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._scheduler: AsyncIOScheduler | None = None

    async def start(self) -> None:
        config = self.runtime.settings.drills
        if not config.enabled or self.runtime.listener is None:
            return
        if self.runtime.sessions is None:  # a listener-only process without database.url
            log.error(
                "drills: enabled, but this listener has no database (set database.url), "
                "where drills are recorded: no drill is scheduled"
            )
            return
        scheduler = AsyncIOScheduler()
        trigger = CronTrigger.from_crontab(config.cron, timezone=config.timezone)
        scheduler.add_job(self.run_next, trigger, id="crisis-drill", max_instances=1)
        scheduler.start()
        self._scheduler = scheduler
        log.info("drills: scheduled %r (%s)", config.cron, config.timezone)

    async def run_next(self) -> Drill | None:
        runtime = self.runtime
        watches = runtime.settings.listener.watches
        watch = runtime.settings.drills.watch or (watches[0].id if watches else None)
        if watch is None:
            log.error("drills: no watch configured; the scheduled drill did not run")
            return None
        if runtime.sessions is None:
            log.error("drills: no database to record the drill in; the scheduled drill did not run")
            return None
        names = sorted(SCENARIOS)
        now = runtime.clock.now()
        try:
            async with unit_of_work(runtime.sessions) as session:
                # one drill per firing across replicas (each runs this schedule), and the
                # turn kept in the database (a restart does not rerun the first scenario)
                await _serialize(session)
                last = await session.scalar(
                    select(Drill)
                    .where(Drill.watch_id == watch, Drill.started_by == SCHEDULER)
                    .order_by(Drill.id.desc())
                    .limit(1)
                )
                if last is not None and last.started_at > now - SCHEDULE_DEDUP:
                    log.info("drills: drill %d already started for this firing", last.id)
                    return None
                turn = names.index(last.scenario) + 1 if last and last.scenario in names else 0
                name = names[turn % len(names)]
                drill = await start_drill(session, runtime, name, watch, SCHEDULER)
                audit.record(
                    session, SYSTEM_SCHEDULER, "drill.start", "drill", drill.id, at=now,
                    after={"scenario": name, "watch_id": watch, "started_by": SCHEDULER},
                )  # fmt: skip
        except (DrillRefused, DrillUnavailable) as exc:
            log.error("drills: the scheduled drill did not run: %s", exc)
            return None
        log.warning("drills: scheduled drill %d (%s) injected into watch %s", drill.id, name, watch)
        return drill

    async def stop(self) -> None:
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=False)
