"""A generated stream for the demo brand: everyday chatter, then a complaint goes viral.

The timeline (story seconds after the stream starts; ``speed`` runs it faster):

* chatter: a few posts a minute about the brand from many authors on Bluesky, Mastodon,
  Reddit (English) and Weibo (Chinese): mostly positive or neutral, a little grumbling,
  and some posts about *nimbus clouds* that the demo watch excludes;
* at ``crisis_after_seconds`` a customer posts on Bluesky that their X2 caught fire while
  charging. Reposts and replies follow, then near-duplicate posts by other owners on
  Mastodon, Reddit and Weibo, with ever larger accounts (tech news at the end), at an
  exponentially rising rate: ``crisis_mentions`` mentions (default 360, from ~300
  authors, 4 platforms) by ``crisis_growth_seconds`` after the complaint, then a
  quieter tail (a third as many again, fading out over 1.5x the growth phase).

Deterministic for a seed: the same posts, authors, parents and story times every run.
``created_at`` is the injected clock's time when a post is emitted; ids carry the run's
start time, so a second run in the same database does not collide with the first.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.clock import Clock
from core.events import Author, Engagement, Mention
from listener.config import DemoSourceConfig
from listener.sources import demo_texts as T

PLATFORMS = ("bluesky", "mastodon", "reddit", "weibo")
# When each platform joins the story (share of the growth phase) and how much it carries.
_JOINS = {"bluesky": 0.0, "mastodon": 0.15, "reddit": 0.3, "weibo": 0.4}
_WEIGHTS = {"bluesky": 4.0, "mastodon": 2.0, "reddit": 1.5, "weibo": 2.5}


@dataclass(frozen=True)
class Post:
    """One planned post; becomes a Mention when its time comes."""

    offset: float  # story seconds after the stream start
    key: str  # unique within a run
    source: str
    text: str
    lang: str
    handle: str
    followers: int
    verified: bool = False
    reply_to: str | None = None  # key of the parent post
    repost_of: str | None = None
    likes: int = 0


class DemoSource:
    name = "demo"

    def __init__(self, config: DemoSourceConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.emitted = 0
        self._stopped = False

    async def start(self) -> None:
        self._stopped = False

    async def stop(self) -> None:
        self._stopped = True

    @property
    def stopped(self) -> bool:
        return self._stopped

    def plan(self) -> Iterator[Post]:
        """Every post in story order (endless unless ``duration_seconds`` is set)."""
        # merge is stable: a parent and its reply at the same offset keep their order
        posts = heapq.merge(_crisis(self.config), _chatter(self.config), key=lambda p: p.offset)
        limit = self.config.duration_seconds
        for post in posts:
            if limit is not None and post.offset > limit:
                return
            yield post

    async def mentions(self) -> AsyncIterator[Mention]:
        start = self.clock.now()
        run = f"{self.config.seed}x{int(start.timestamp())}"
        ids: dict[str, str] = {}  # post key -> mention id, for the cascade links
        for post in self.plan():
            due = start + timedelta(seconds=post.offset / self.config.speed)
            delay = (due - self.clock.now()).total_seconds()
            if delay > 0:
                await self.clock.sleep(delay)
            if self.stopped:
                return
            mention = _mention(post, run, ids, self.clock.now())
            if post.key.startswith("c"):  # only crisis posts are ever parents
                ids[post.key] = mention.id
            self.emitted += 1
            yield mention


def _mention(post: Post, run: str, ids: dict[str, str], now: datetime) -> Mention:
    mention_id = f"{post.source}:demo-{run}-{post.key}"
    return Mention(
        id=mention_id,
        source=post.source,
        url=f"https://{post.source}.example/{post.handle}/{run}-{post.key}",
        text=post.text,
        lang=post.lang,
        created_at=now,
        author=Author(
            id=f"{post.source}:{post.handle}",
            handle=post.handle,
            followers=post.followers,
            verified=post.verified,
        ),
        engagement=Engagement(likes=post.likes),
        reply_to=ids.get(post.reply_to) if post.reply_to else None,
        repost_of=ids.get(post.repost_of) if post.repost_of else None,
    )


def _fmt(template: str, brand: str, rng: random.Random) -> str:
    slug = brand.lower().replace(" ", "-")
    return template.format(brand=brand, model=rng.choice(T.MODELS), slug=slug)


class _Handles:
    """Unique, deterministic made-up handles."""

    def __init__(self, rng: random.Random, prefix: str) -> None:
        self.rng = rng
        self.prefix = prefix
        self.count = 0

    def new(self) -> str:
        self.count += 1
        head = self.rng.choice(T.HANDLE_HEADS)
        tail = self.rng.choice(T.HANDLE_TAILS)
        return f"{head}{tail}{self.prefix}{self.count}"


def _chatter(cfg: DemoSourceConfig) -> Iterator[Post]:
    """Endless everyday posts, a Poisson process of ``chatter_per_minute``."""
    if cfg.chatter_per_minute <= 0:
        return
    rng = random.Random(f"{cfg.seed}:chatter")
    handles = _Handles(rng, "n")
    regulars = [handles.new() for _ in range(200)]
    followers = {h: int(rng.lognormvariate(math.log(300), 1.3)) for h in regulars}
    rate = cfg.chatter_per_minute / 60.0
    t, n = 0.0, 0
    while True:
        t += rng.expovariate(rate)
        n += 1
        handle = rng.choice(regulars)
        roll = rng.random()
        pool: tuple[str, ...]
        if roll < 0.08:
            source, lang, pool = rng.choice(("bluesky", "mastodon")), "en", T.NOISE_EN
        elif roll < 0.28:
            source, lang, pool = "weibo", "zh", T.CHATTER_ZH
        else:
            source, lang = rng.choice(("bluesky", "mastodon", "reddit")), "en"
            mood = rng.random()
            pool = (
                T.CHATTER_POSITIVE_EN
                if mood < 0.45
                else T.CHATTER_NEUTRAL_EN
                if mood < 0.85
                else T.CHATTER_MILD_NEGATIVE_EN
            )
        yield Post(
            offset=t,
            key=f"n{n}",
            source=source,
            text=_fmt(rng.choice(pool), cfg.brand, rng),
            lang=lang,
            handle=handle,
            followers=followers[handle],
        )


def _crisis_times(cfg: DemoSourceConfig, rng: random.Random) -> list[float]:
    """Story seconds after the complaint: exponential growth to the peak, then a tail."""
    n, growth = cfg.crisis_mentions, cfg.crisis_growth_seconds
    tau = growth / 3.0  # e-fold every third of the growth phase (~20x over it)
    scale = max(n - 1, 1) / math.expm1(growth / tau)
    times = [0.0]
    for k in range(1, n):
        times.append(tau * math.log1p(k / scale) * rng.uniform(0.97, 1.0))
    tail_tau, tail_n = growth / 2.0, n // 3
    for _ in range(tail_n):
        u = rng.random() * -math.expm1(-3.0)  # truncated at three tail_taus
        times.append(growth + -tail_tau * math.log1p(-u))
    times[1:] = sorted(times[1:])
    return times


def _crisis(cfg: DemoSourceConfig) -> Iterator[Post]:
    rng = random.Random(f"{cfg.seed}:crisis")
    handles = _Handles(rng, "c")
    growth = cfg.crisis_growth_seconds
    brand = cfg.brand
    authors: list[tuple[str, int]] = []
    roots: dict[str, list[str]] = {p: [] for p in PLATFORMS}  # own posts per platform
    news = list(T.NEWS_HANDLES)
    rng.shuffle(news)

    original = Post(
        offset=cfg.crisis_after_seconds,
        key="c0",
        source="bluesky",
        text=_fmt(T.CRISIS_ORIGINAL, brand, rng),
        lang="en",
        handle=handles.new(),
        followers=640,
        likes=12,
    )
    roots["bluesky"].append(original.key)
    story = [original.key]  # every post of the complaint's cascade so far
    yield original

    for i, t in enumerate(_crisis_times(cfg, rng)[1:], start=1):
        progress = min(1.0, t / growth)
        key = f"c{i}"
        offset = cfg.crisis_after_seconds + t
        if progress > 0.6 and news and rng.random() < 0.04:
            handle = news.pop()
            zh = not handle.isascii()
            text = rng.choice(T.CRISIS_NEWS_ZH if zh else T.CRISIS_NEWS_EN)
            source = "weibo" if zh else rng.choice(("bluesky", "mastodon"))
            yield Post(
                offset=offset,
                key=key,
                source=source,
                text=_fmt(text, brand, rng),
                lang="zh" if zh else "en",
                handle=handle,
                verified=True,
                followers=int(rng.uniform(2e5, 3e6)),
                likes=int(rng.uniform(500, 5000)),
                repost_of=original.key,  # news reports embed the viral post
            )
            story.append(key)
            roots[source].append(key)
            continue

        open_platforms = [p for p in PLATFORMS if progress >= _JOINS[p]]
        source = rng.choices(open_platforms, [_WEIGHTS[p] for p in open_platforms])[0]
        if authors and rng.random() < 0.12:
            handle, followers = rng.choice(authors)
        else:
            median = 150 * 10 ** (2.5 * progress)  # ever larger accounts join
            handle = handles.new()
            followers = int(rng.lognormvariate(math.log(median), 1.0))
            authors.append((handle, followers))

        kind = _kind(source, rng)
        parent = None
        if kind != "post" and roots[source]:
            parent = roots[source][0] if rng.random() < 0.6 else rng.choice(roots[source])
        elif kind == "post" and source == "weibo" and not roots["weibo"]:
            pass  # the Chinese-language thread starts on Weibo: a story of its own
        else:
            # A new post elsewhere quotes or links the complaint (a quote is a repost
            # with text): the story crosses platforms as one cascade.
            kind = "quote"
            parent = original.key if rng.random() < 0.7 else rng.choice(story)
        text, lang = _crisis_text(source, "post" if kind == "quote" else kind, brand, rng)
        yield Post(
            offset=offset,
            key=key,
            source=source,
            text=text,
            lang=lang,
            handle=handle,
            followers=followers,
            repost_of=parent if kind in ("repost", "quote") else None,
            reply_to=parent if kind == "reply" else None,
        )
        story.append(key)
        if kind in ("post", "quote"):
            roots[source].append(key)


def _kind(source: str, rng: random.Random) -> str:
    roll = rng.random()
    if source == "reddit":
        return "reply" if roll < 0.75 else "post"
    if source == "weibo":
        return "repost" if roll < 0.5 else "post"
    if source == "mastodon":
        return "repost" if roll < 0.3 else "reply" if roll < 0.55 else "post"
    return "repost" if roll < 0.3 else "reply" if roll < 0.65 else "post"


def _crisis_text(source: str, kind: str, brand: str, rng: random.Random) -> tuple[str, str]:
    pool: tuple[str, ...]
    if source == "weibo":
        pool = T.CRISIS_ZH_REPOSTS if kind == "repost" else T.CRISIS_ZH
        return _fmt(rng.choice(pool), brand, rng), "zh"
    if kind == "repost":
        return "", "en"  # Bluesky reposts and Mastodon boosts carry no text
    if source == "reddit":
        template = rng.choice(T.CRISIS_REDDIT_COMMENTS) if kind == "reply" else T.CRISIS_REDDIT_ROOT
        return _fmt(template, brand, rng), "en"
    pool = T.CRISIS_REPLIES_EN if kind == "reply" else T.CRISIS_POSTS_EN
    return _fmt(rng.choice(pool), brand, rng), "en"
