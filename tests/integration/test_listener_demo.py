"""DemoSource: deterministic, paced by the clock, and its complaint goes network-wide."""

from __future__ import annotations

from datetime import timedelta

from core.clock import ManualClock
from core.events import Mention
from listener.config import DemoSourceConfig, demo_watch
from listener.sources.base import Source
from listener.sources.demo import DemoSource
from listener.watches import WatchMatcher

FIRE_WORDS = ("fire", "burn", "refund", "recall", "起火", "召回", "退款", "冒烟")


class SteppingClock(ManualClock):
    """A manual clock whose sleeps return at once, moving time forward by what was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.slept = 0.0

    async def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.advance(seconds)


async def run(config: DemoSourceConfig) -> tuple[list[Mention], SteppingClock]:
    clock = SteppingClock()
    source = DemoSource(config, clock)
    assert isinstance(source, Source)
    await source.start()
    mentions = [m async for m in source.mentions()]
    await source.stop()
    return mentions, clock


def story(mentions: list[Mention]) -> list[Mention]:
    """The complaint's story: fire posts and everything that continues them."""
    ids: set[str] = set()
    out = []
    for m in mentions:
        about_fire = any(w in m.text.lower() for w in FIRE_WORDS)
        if about_fire or (m.parent_id is not None and m.parent_id in ids):
            ids.add(m.id)
            out.append(m)
    return out


def fingerprint(mentions: list[Mention]) -> list[tuple[object, ...]]:
    return [
        (
            m.id.split("-", 2)[-1],
            m.source,
            m.text,
            m.author.handle,
            m.author.followers,
            m.parent_id and m.parent_id.split("-", 2)[-1],
        )
        for m in mentions
    ]


async def test_the_complaint_reaches_network_scale_within_two_minutes() -> None:
    mentions, clock = await run(DemoSourceConfig(duration_seconds=200))
    crisis = story(mentions)
    complaint = crisis[0]
    assert "caught fire while charging" in complaint.text
    assert "https://img.example/" in complaint.text
    within = [m for m in crisis if m.created_at <= complaint.created_at + timedelta(seconds=120)]
    assert len(within) >= 200
    assert len({m.author.id for m in within}) >= 100
    assert len({m.source for m in within}) >= 3
    # it accelerates: far more in the second minute than in the first
    first_minute = [
        m for m in within if m.created_at <= complaint.created_at + timedelta(seconds=60)
    ]
    assert 5 <= len(first_minute) < len(within) / 3
    # reposts, replies and quotes point at earlier story mentions; quotes cross platforms,
    # so the complaint is one cascade (plus the Chinese thread that starts on Weibo)
    by_id = {m.id: m for m in crisis}
    linked = [m for m in crisis if m.parent_id]
    assert len(linked) >= 50
    assert all(by_id[m.parent_id].created_at <= m.created_at for m in linked if m.parent_id)
    assert any(by_id[m.parent_id].source != m.source for m in linked if m.parent_id)
    roots = [m for m in crisis if not m.parent_id]
    assert len(roots) <= 2 and roots[0] is complaint
    assert any(m.repost_of and m.text == "" for m in crisis)
    assert any(m.lang == "zh" for m in crisis)
    # larger accounts join as it grows
    early = sorted(m.author.followers or 0 for m in crisis[:40])
    late = sorted(m.author.followers or 0 for m in within[-40:])
    assert late[20] > 10 * early[20]
    # created_at is the clock's time, and the clock was only moved by the source's sleeps
    assert mentions[-1].created_at <= clock.now()
    assert clock.slept <= 200


async def test_background_chatter_is_mostly_not_negative_and_multilingual() -> None:
    mentions, _ = await run(DemoSourceConfig(duration_seconds=1800, crisis_after_seconds=3600))
    assert story(mentions) == []
    assert 100 <= len(mentions) <= 260  # ~6 a minute for 30 minutes
    assert len({m.author.id for m in mentions}) >= 50
    assert {m.lang for m in mentions} == {"en", "zh"}
    matcher = WatchMatcher([demo_watch()])
    matched = [m for m in mentions if matcher.match(m.text, m.lang)]
    assert 0.8 * len(mentions) <= len(matched) < len(mentions)  # the cloud posts are excluded


async def test_same_seed_same_stream_other_seed_other_stream() -> None:
    cfg = DemoSourceConfig(seed=3, duration_seconds=150)
    a, _ = await run(cfg)
    b, _ = await run(cfg)
    c, _ = await run(cfg.model_copy(update={"seed": 4}))
    assert fingerprint(a) == fingerprint(b)
    assert [m.created_at for m in a] == [m.created_at for m in b]
    assert fingerprint(a) != fingerprint(c)


async def test_speed_compresses_the_timeline() -> None:
    slow, slow_clock = await run(DemoSourceConfig(duration_seconds=150))
    fast, fast_clock = await run(DemoSourceConfig(duration_seconds=150, speed=10))
    assert fingerprint(slow) == fingerprint(fast)
    assert fast_clock.slept <= slow_clock.slept / 10 + 1e-6
    complaint = story(fast)[0]
    assert complaint.created_at - fast[0].created_at < timedelta(seconds=3)


async def test_stop_ends_an_endless_stream() -> None:
    clock = SteppingClock()
    source = DemoSource(DemoSourceConfig(), clock)
    await source.start()
    count = 0
    async for _ in source.mentions():
        count += 1
        if count == 30:
            await source.stop()
    assert count == 30
