"""The ack link's pages speak the language of the channel the link was sent to: a Chinese
PR lead who taps 确认 in Feishu gets a Chinese confirm page, result and 410/409 pages; an
English channel's pages are as they were; a forged link (no channel known) says it in both."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from alerts import acklinks
from alerts import incidents as incident_service
from alerts.acklinks import AckLinkConfig, AckToken
from alerts.config import AlertsConfig
from alerts.incidents import InvalidTransition, acknowledge, resolve
from alerts.models import CLOSED, Incident
from api.app import create_app
from api.runtime import Role, Runtime
from api.settings import Settings
from core.clock import ManualClock
from core.db import unit_of_work
from core.settings import DatabaseConfig
from tests.integration.test_acklinks import new_incident as open_incident

ACK_SECRET = "ack-link-secret-0123456789abcdefghij"
HEADER = (
    '<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
)

Api = tuple[httpx.AsyncClient, Runtime]


@pytest.fixture
async def api(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Api]:
    alerts = AlertsConfig.model_validate(
        {
            "channels": {
                **AlertsConfig().channels,
                "pr_feishu": {"type": "console", "language": "zh-CN"},
                "pr_mail": {"type": "console"},
            }
        }
    )
    settings = Settings(
        database=DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'ack.db'}"),
        ack_links=AckLinkConfig(secret=ACK_SECRET, ttl=timedelta(hours=1)),
        alerts=alerts,
    )
    runtime = Runtime(settings, clock=clock, migrate=True, roles=frozenset({Role.API}))
    app = create_app(runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cw") as client:
            yield client, runtime


async def new_incident(
    runtime: Runtime, clock: ManualClock, title: str = "Acme: network-wide crisis"
) -> int:
    """An open tier-3 incident with a title of ours (a zh page translates its tier name)."""
    return await open_incident(runtime, clock, title)


async def mint(runtime: Runtime, clock: ManualClock, incident_id: int, channel: str) -> str:
    """The path of a fresh ack link, as the alerter mints it (recipient = channel)."""
    assert runtime.sessions is not None
    async with unit_of_work(runtime.sessions) as session:
        url = await acklinks.mint_ack_url(
            session,
            runtime.settings.ack_links,
            "https://cw.example/",
            incident_id=incident_id,
            recipient=channel,
            channel=channel,
            now=clock.now(),
        )
    assert url is not None
    return urlsplit(url).path


def has_chinese(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def english_on(text: str, *names: str) -> list[str]:
    """The Latin words a reader sees on a page (its title, heading, paragraphs, button),
    less the names it shows as written (channels, brands, actors) and "crisiswatch"."""
    visible = html.unescape(" ".join(re.findall(r"<(?:title|h1|p|button)[^>]*>([^<]*)<", text)))
    for name in sorted((*names, "crisiswatch"), key=len, reverse=True):
        visible = visible.replace(name, " ")
    return re.findall(r"[A-Za-z]{2,}", visible)


async def test_zh_channel_confirm_page_and_result_are_chinese(api: Api, clock: ManualClock) -> None:
    client, runtime = api
    incident_id = await new_incident(runtime, clock, title="Acme <b>x</b>: network-wide crisis")
    path = await mint(runtime, clock, incident_id, "pr_feishu")

    page = await client.get(path)
    assert page.status_code == 200, page.text
    assert page.text.startswith(HEADER.format(lang="zh-CN"))
    assert f"<h1>确认事件 #{incident_id}？</h1>" in page.text
    assert "<p>三级：Acme &lt;b&gt;x&lt;/b&gt;：全网危机</p>" in page.text
    assert "<p>状态：未确认。</p>" in page.text
    assert "<p>将以 pr_feishu 的身份确认，升级通知随即停止。</p>" in page.text
    assert '<form method="post"><button type="submit">确认</button></form>' in page.text
    assert "Acknowledge" not in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"

    done = await client.post(path)
    assert done.status_code == 200, done.text
    assert done.text.startswith(HEADER.format(lang="zh-CN"))
    assert f"<h1>事件 #{incident_id} 已确认</h1>" in done.text
    assert "<p>已由 pr_feishu（通过 pr_feishu 的确认链接）确认，升级通知已停止。</p>" in done.text
    assert english_on(page.text + done.text, "pr_feishu", "Acme") == []

    for again in (await client.get(path), await client.post(path)):
        assert again.status_code == 410
        assert again.text.startswith(HEADER.format(lang="zh-CN"))
        assert "<h1>链接已使用</h1>" in again.text and "此确认链接已使用过。" in again.text


async def test_en_channel_pages_are_unchanged(api: Api, clock: ManualClock) -> None:
    client, runtime = api
    incident_id = await new_incident(runtime, clock, title="Acme: <script>x</script>")
    path = await mint(runtime, clock, incident_id, "pr_mail")

    page = await client.get(path)
    assert page.status_code == 200
    style = "body{font-family:sans-serif;max-width:36em;margin:3em auto;padding:0 1em}"
    assert page.text == (  # the page as it was before languages
        HEADER.format(lang="en")
        + f"<title>Acknowledge incident #{incident_id}? - crisiswatch</title>"
        + f"<style>{style}</style></head>"
        + f"<body><h1>Acknowledge incident #{incident_id}?</h1>"
        + "<p>Tier 3: Acme: &lt;script&gt;x&lt;/script&gt;</p><p>Status: open.</p>"
        + "<p>You will acknowledge it as pr_mail; escalation stops.</p>"
        + '<form method="post"><button type="submit">Acknowledge</button></form>'
        + "</body></html>"
    )

    done = await client.post(path)
    assert done.status_code == 200
    assert f"<h1>Incident #{incident_id} acknowledged</h1>" in done.text
    assert "<p>Acknowledged by pr_mail (via pr_mail link). Escalation has stopped.</p>" in (
        done.text
    )
    used = await client.get(path)
    assert used.status_code == 410
    assert "This acknowledge link has already been used." in used.text
    assert not has_chinese(done.text + used.text)


async def test_expired_link_page_follows_the_channel(api: Api, clock: ManualClock) -> None:
    client, runtime = api
    incident_id = await new_incident(runtime, clock)
    zh = await mint(runtime, clock, incident_id, "pr_feishu")
    en = await mint(runtime, clock, incident_id, "pr_mail")
    clock.advance(3600)
    for answer in (await client.get(zh), await client.post(zh)):
        assert answer.status_code == 410
        assert answer.text.startswith(HEADER.format(lang="zh-CN"))
        assert "<h1>链接已过期</h1>" in answer.text
        assert (
            "<p>此确认链接已过期。请使用最新一条告警消息中的确认链接，"
            "或请值班人员在 crisiswatch 中确认。</p>"
        ) in answer.text
        assert english_on(answer.text) == []
    for answer in (await client.get(en), await client.post(en)):
        assert answer.status_code == 410
        assert answer.text.startswith(HEADER.format(lang="en"))
        assert "<h1>Link expired</h1>" in answer.text and not has_chinese(answer.text)
    refused = runtime.metrics.registry.get_sample_value(
        "crisiswatch_inbound_refused_total", {"endpoint": "ack", "reason": "expired"}
    )
    assert refused == 4


async def test_409_pages_follow_the_channel(api: Api, clock: ManualClock) -> None:
    client, runtime = api
    survivor = await new_incident(runtime, clock, title="kept")
    resolved = await new_incident(runtime, clock, title="resolved one")
    merged = await new_incident(runtime, clock, title="merged one")
    links = {
        (incident, channel): await mint(runtime, clock, incident, channel)
        for incident in (resolved, merged)
        for channel in ("pr_feishu", "pr_mail")
    }
    assert runtime.sessions is not None
    async with unit_of_work(runtime.sessions) as session:
        await resolve(session, resolved, "bob", clock)
        row = await session.get(Incident, merged)
        assert row is not None
        row.status = CLOSED
        row.merged_into_id = survivor

    for answer in (
        await client.get(links[resolved, "pr_feishu"]),
        await client.post(links[resolved, "pr_feishu"]),
    ):
        assert answer.status_code == 409
        assert answer.text.startswith(HEADER.format(lang="zh-CN"))
        assert "<h1>无需确认</h1>" in answer.text and "<form" not in answer.text
        assert f"事件 {resolved} 的状态为已解决，无需确认。" in answer.text
        assert english_on(answer.text) == []
    for answer in (
        await client.get(links[merged, "pr_feishu"]),
        await client.post(links[merged, "pr_feishu"]),
    ):
        assert answer.status_code == 409
        assert (
            f"<p>事件 {merged} 已合并到事件 {survivor}，此链接不能确认事件 {survivor}。"
            f"请使用事件 {survivor} 告警消息中的确认链接，或请值班人员在 crisiswatch 中确认。</p>"
        ) in answer.text
        assert english_on(answer.text) == []
    answer = await client.get(links[resolved, "pr_mail"])
    assert answer.status_code == 409
    assert f"<p>Incident {resolved} is resolved; there is nothing to acknowledge.</p>" in (
        answer.text
    )
    answer = await client.post(links[merged, "pr_mail"])
    assert answer.status_code == 409
    assert f"Incident {merged} was merged into incident {survivor};" in answer.text
    assert not has_chinese(answer.text)


async def test_forged_link_says_it_in_both_languages(api: Api, clock: ManualClock) -> None:
    client, runtime = api
    path = await mint(runtime, clock, await new_incident(runtime, clock), "pr_feishu")
    token_id, expires, signature = path.removeprefix("/ack/").split(".")
    for bad in (f"/ack/{token_id}.{expires}.{signature[:-2]}xx", "/ack/garbage"):
        for answer in (await client.get(bad), await client.post(bad)):
            assert answer.status_code == 403
            assert "<h1>Invalid link / 链接无效</h1>" in answer.text
            assert "<p>This acknowledge link is not valid. Use the link from the alert.</p>" in (
                answer.text
            )
            assert '<p lang="zh-CN">此确认链接无效，请使用告警中的链接。</p>' in answer.text
            assert token_id not in answer.text


async def test_link_of_a_channel_no_longer_configured_is_english(
    api: Api, clock: ManualClock
) -> None:
    client, runtime = api
    incident_id = await new_incident(runtime, clock)
    path = await mint(runtime, clock, incident_id, "old_feishu")
    page = await client.get(path)
    assert page.status_code == 200
    assert page.text.startswith(HEADER.format(lang="en"))
    assert f"<h1>Acknowledge incident #{incident_id}?</h1>" in page.text


async def test_zh_page_names_who_acknowledged_before_in_chinese(
    api: Api, clock: ManualClock
) -> None:
    """Acknowledged already (another channel's link, a person): the zh link's answer says who
    in Chinese, names as written; the English page of the same states is as it was."""
    client, runtime = api
    by_link = await new_incident(runtime, clock, "Acme: network-wide crisis")
    first = await mint(runtime, clock, by_link, "pr_mail")
    zh = await mint(runtime, clock, by_link, "pr_feishu")
    assert (await client.post(first)).status_code == 200  # the English channel's link first
    page = await client.get(zh)
    assert "<p>状态：已确认。</p>" in page.text and english_on(page.text, "pr_feishu", "Acme") == []
    done = await client.post(zh)
    assert done.status_code == 200
    assert "<p>已由 pr_mail（通过 pr_mail 的确认链接）确认，升级通知已停止。</p>" in done.text
    assert english_on(done.text, "pr_mail") == []

    by_person = await new_incident(runtime, clock, "Acme: local spread")
    en = await mint(runtime, clock, by_person, "pr_mail")
    zh = await mint(runtime, clock, by_person, "pr_feishu")
    assert runtime.sessions is not None
    async with unit_of_work(runtime.sessions) as session:
        await acknowledge(session, by_person, "alice (via pr_mail link)", clock)
    done = await client.post(zh)  # a person's name that only looks like a link's: as written
    assert "<p>已由 alice (via pr_mail link) 确认，升级通知已停止。</p>" in done.text
    english = await client.post(en)
    assert "<p>Acknowledged by alice (via pr_mail link). Escalation has stopped.</p>" in (
        english.text
    )

    third = await new_incident(runtime, clock, "Acme: minor complaint")
    zh = await mint(runtime, clock, third, "pr_feishu")
    en = await mint(runtime, clock, third, "pr_mail")
    assert (await client.post(zh)).status_code == 200
    english = await client.post(en)  # the English page names the zh link as it always did
    assert "<p>Acknowledged by pr_feishu (via pr_feishu link). Escalation has stopped.</p>" in (
        english.text
    )


async def test_zh_page_of_an_incident_gone_while_acknowledging_is_chinese(
    api: Api, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refusal of an incident that vanished under the click named it in English."""
    client, runtime = api
    path = await mint(runtime, clock, await new_incident(runtime, clock), "pr_feishu")
    gone = AckToken(id="x", incident_id=999_999, recipient="pr_feishu", channel="pr_feishu")

    async def redeem(*_: object) -> AckToken:
        return gone

    async def state(*_: object) -> dict[str, object]:
        return {}

    async def refuse(*_: object, **__: object) -> None:
        raise InvalidTransition("incident 999999 is closed; there is nothing to acknowledge")

    monkeypatch.setattr(acklinks, "redeem", redeem)
    monkeypatch.setattr("api.audit.incident_state", state)
    monkeypatch.setattr(incident_service, "acknowledge", refuse)
    answer = await client.post(path)
    assert answer.status_code == 409
    assert "<h1>无需确认</h1><p>事件 999999 已不存在。</p>" in answer.text
    assert english_on(answer.text) == []
