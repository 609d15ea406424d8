"""A Chinese team's Feishu and WeCom groups get the whole alert in Chinese, through the
alerter: the incident keeps the heat behind its explanation (``incidents.heat``, migration
0018), the outbox snapshot carries it with the structured reason, and the escalation built
from the incident row minutes later is rendered from it; an English webhook on the same
incident is unchanged. An incident from before 0018 (no heat) falls back to its stored
English explanation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import inspect, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts import incidents as svc
from alerts.config import AlertsConfig
from alerts.models import Delivery, Incident
from alerts.service import AlertService
from core.bus.memory import MemoryBus
from core.clock import ManualClock
from core.db import downgrade_database, make_engine, unit_of_work, upgrade_database
from core.events import HeatFeatures, Signal, WatchMatch
from core.metrics import Metrics

Sessions = async_sessionmaker[AsyncSession]
FEISHU = "https://open.feishu.cn/open-apis/bot/v2/hook/pr"
WECOM = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=cs"
HOOK = "https://audit.acme.example/crisiswatch"
ENGLISH = "41 posts in the last 10 min (230 in all, 88% negative) from 37 authors"


class World:
    def __init__(self, sessions: Sessions, clock: ManualClock, service: AlertService) -> None:
        self.sessions, self.clock, self.service = sessions, clock, service
        self.bodies: list[tuple[str, Any]] = []

    def taken(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for host, body in self.bodies:
            out.setdefault(host, []).append(body)
        self.bodies.clear()
        return out

    async def signal(self, sid: str, tier: int, story: str = "s1", **heat: Any) -> None:
        features = {
            "mentions": 230,
            "mentions_window": 41,
            "window_minutes": 10,
            "unique_authors": 37,
            "reach": 1_234_567,
            "negative_share": 0.88,
            "rate_ratio": 9.0,
            "platforms": 3,
            "predicted_size": 900.0,
        } | heat
        signal = Signal(
            id=sid,
            story_id=story,
            story_root="weibo:root",
            watch=WatchMatch(id="acme", brand="Acme"),
            tier=tier,
            previous_tier=0,
            spread=tier,
            heat=HeatFeatures(**features),
            explanation=ENGLISH,
            at=self.clock.now(),
            trigger_received_at=self.clock.now(),
        )
        await self.service.handle_signals([signal])
        await self.service.sent()

    async def incident(self, story: str = "s1") -> Incident:
        async with self.sessions() as session:
            found = await session.scalar(select(Incident).where(Incident.story_id == story))
            assert found is not None
            return found


def _markdown(body: Any) -> str:
    if "card" in body:  # feishu
        card = body["card"]
        return str(
            card["header"]["title"]["content"] + "\n" + card["body"]["elements"][0]["content"]
        )
    return str(body["markdown"]["content"])  # wecom


@pytest.fixture
async def world(sessions: Sessions, clock: ManualClock) -> AsyncIterator[World]:
    config = AlertsConfig.model_validate(
        {
            "channels": {
                "pr_feishu": {"type": "feishu", "webhook_url": FEISHU, "language": "zh-CN"},
                "cs_wecom": {"type": "wecom", "webhook_url": WECOM, "language": "zh"},
                "audit": {"type": "webhook", "url": HOOK, "secret": "a-shared-secret-16+"},
            },
            "teams": {"pr": {"channels": ["pr_feishu", "cs_wecom", "audit"]}},
            "routes": {1: ["pr"], 2: ["pr"], 3: ["pr"]},
            "escalation_policies": {"again": {"steps": [{"after": "PT10M", "notify": "route"}]}},
            "escalation": {1: "again", 2: "again", 3: "again"},
            "public_url": "https://cw.acme.example",
        }
    )
    holder: list[World] = []

    def handler(request: httpx.Request) -> httpx.Response:
        holder[0].bodies.append((request.url.host, json.loads(request.content)))
        return httpx.Response(200, json={"code": 0, "msg": "success", "errcode": 0})

    metrics = Metrics()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        service = AlertService(MemoryBus(metrics=metrics), sessions, config, http, clock, metrics)
        holder.append(World(sessions, clock, service))
        try:
            yield holder[0]
        finally:
            service.jobs.close()


async def test_chinese_groups_get_the_whole_alert_in_chinese(world: World) -> None:
    await world.signal("sig-1", tier=1)
    incident = await world.incident()
    assert incident.heat is not None and incident.heat["reach"] == 1_234_567
    assert incident.heat["kind"] == "story"
    sent = world.taken()
    feishu = _markdown(sent["open.feishu.cn"][0])
    assert feishu.startswith("一级 #1：Acme：轻微投诉\n**一级 #1：Acme：轻微投诉**")
    assert "**新事件**" in feishu
    assert (
        "近 10 分钟 41 条帖子（累计 230 条，负面占 88%），来自 37 位作者，为平常的 9 倍" in feishu
    )
    # people land in the incident console (the API would answer their browser 401)
    assert "[打开事件](https://cw.acme.example/console/#incident=1)" in feishu
    assert "新事件" in _markdown(sent["qyapi.weixin.qq.com"][0])
    hook = sent["audit.acme.example"][0]
    assert hook["language"] == "en" and hook["summary"] == "Tier 1 #1: Acme: minor complaint"
    assert hook["alert"]["explanation"] == ENGLISH and hook["alert"]["reason"] == "new"
    assert hook["alert"]["api_url"] == "https://cw.acme.example/incidents/1"  # for machines

    # an upgrade: the incident's heat follows its explanation, the reason says it
    await world.signal("sig-2", tier=3, reach=35_000_000, mentions_window=300, mentions=900)
    incident = await world.incident()
    assert incident.heat is not None and incident.heat["reach"] == 35_000_000
    feishu = _markdown(world.taken()["open.feishu.cn"][0])
    assert "**升级为三级（原为一级）**" in feishu and "覆盖 3500万 粉丝" in feishu
    assert "近 10 分钟 300 条帖子" in feishu

    # the escalation is built from the incident row ten minutes later: still Chinese
    world.clock.advance(11 * 60)
    await world.service.tick()
    sent = world.taken()
    feishu = _markdown(sent["open.feishu.cn"][0])
    assert "**升级通知第 1 级：11 分钟内无人确认**" in feishu
    assert "近 10 分钟 300 条帖子" in feishu and "覆盖 3500万 粉丝" in feishu
    hook = sent["audit.acme.example"][0]
    assert hook["status"] == "ESCALATION level 1: not acknowledged within 11 min"

    # the follow-up of the ack, mirrored to every channel that got the alert
    async with unit_of_work(world.sessions) as session:
        await svc.acknowledge(session, incident.id, "alice", world.clock)
    await world.service.tick()
    sent = world.taken()
    assert "**已由 alice 确认**" in _markdown(sent["open.feishu.cn"][0])
    assert sent["open.feishu.cn"][0]["card"]["header"]["template"] == "green"
    assert "已由 alice 确认：三级 #1" in _markdown(sent["qyapi.weixin.qq.com"][0])
    assert sent["audit.acme.example"][0]["status"] == "acknowledged by alice"


async def test_stored_deliveries_carry_the_heat_and_the_reason(world: World) -> None:
    await world.signal("sig-1", tier=2)
    async with world.sessions() as session:
        payloads = list(await session.scalars(select(Delivery.payload)))
    assert len(payloads) == 3
    for payload in payloads:
        assert payload["why"]["code"] == "new" and payload["reason"] == "new"
        assert payload["heat"]["unique_authors"] == 37


async def test_an_incident_from_before_the_heat_was_kept_falls_back_to_english(
    world: World,
) -> None:
    await world.signal("sig-1", tier=1)
    world.taken()
    async with unit_of_work(world.sessions) as session:  # as 0018 leaves an old incident
        await session.execute(update(Incident).values(heat=None))
    world.clock.advance(11 * 60)
    await world.service.tick()
    feishu = _markdown(world.taken()["open.feishu.cn"][0])
    assert "**升级通知第 1 级：11 分钟内无人确认**" in feishu
    assert ENGLISH in feishu and "近 10 分钟" not in feishu


async def test_unreadable_stored_heat_falls_back_to_english(world: World) -> None:
    await world.signal("sig-1", tier=1)
    world.taken()
    async with unit_of_work(world.sessions) as session:
        await session.execute(update(Incident).values(heat={"reach": "lots"}))
    world.clock.advance(11 * 60)
    await world.service.tick()
    feishu = _markdown(world.taken()["open.feishu.cn"][0])
    assert "**升级通知第 1 级：11 分钟内无人确认**" in feishu and ENGLISH in feishu


# -- migration 0018 ----------------------------------------------------------------------------


def _columns(connection: Connection) -> set[str]:
    return {column["name"] for column in inspect(connection).get_columns("incidents")}


async def test_migration_0018_up_and_down_keeps_the_incidents(db_url: str) -> None:
    engine = make_engine(db_url)
    opened = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    try:
        await upgrade_database(engine, "0017")
        async with engine.begin() as conn:
            assert "heat" not in await conn.run_sync(_columns)
            await conn.execute(
                text(
                    "INSERT INTO incidents (watch_id, story_id, brand, tier, spread, status, "
                    "title, explanation, opened_at, updated_at, alerted_at, escalation_level, "
                    "escalation_token, drill, sla_warned, page) VALUES ('acme', 's1', 'Acme', "
                    "2, 2, 'open', 'Acme: local spread', 'old text', :t, :t, :t, 0, 'tok', "
                    "false, 0, 0)"
                ),
                {"t": opened if db_url.startswith("postgresql") else opened.replace(tzinfo=None)},
            )
        await upgrade_database(engine)
        async with engine.begin() as conn:
            assert "heat" in await conn.run_sync(_columns)
            assert (await conn.execute(text("SELECT heat, explanation FROM incidents"))).all() == [
                (None, "old text")
            ]
            await conn.execute(text("UPDATE incidents SET heat = :h"), {"h": '{"reach": 5}'})
        await downgrade_database(engine, "0017")
        async with engine.connect() as conn:
            assert "heat" not in await conn.run_sync(_columns)
            assert await conn.scalar(text("SELECT explanation FROM incidents")) == "old text"
        await upgrade_database(engine)
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT count(*) FROM incidents WHERE heat IS NULL")) == 1
    finally:
        await engine.dispose()
