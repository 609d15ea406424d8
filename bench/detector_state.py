"""What saving a big watch's detector state costs, per batch, on PostgreSQL.

Builds one watch holding ``--stories`` active stories (a root post with its own text and
``--reposts`` reposts each, plus one viral story of ``--viral`` reposts) and saves it
whole once (its first save). Then, for each ``--touch`` count k, feeds ``--rounds``
batches of ``--batch`` reposts spread over k random stories and times what
``DetectorService`` does after each batch: serialise what changed (the watch row and the
rows of the stories the batch touched) and write it (one transaction); and what a new
owner does once: load the watch and restore it. Prints JSON.

    PYTHONPATH=. python bench/detector_state.py --stories 2000 --reposts 10 --viral 10000

Needs a PostgreSQL it may create a scratch database on (``--url``, default the tests'
``CRISISWATCH_TEST_POSTGRES``); the database is dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from core.db import make_engine, make_sessionmaker, upgrade_database
from core.events import Author, Mention, ScoredMention, Sentiment, WatchMatch
from sentiment.detector.config import DetectorConfig
from sentiment.detector.detector import Detector
from sentiment.detector.snapshot import STATE_FORMAT, WatchChanges, WatchSnapshot
from sentiment.detector.statestore import StateStore

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
WATCH = WatchMatch(id="big", brand="Big", terms=("big",))
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
VOCABULARY = (
    "acme store coffee morning train weather music update order delivery price app review "
    "friend weekend photo design color screen speaker garden kitchen travel city office "
    "battery camera sale launch event video stream game book movie dinner lunch bike shoe"
)
WORDS = tuple(VOCABULARY.split())
NEUTRAL = Sentiment(
    label="neutral",
    probs={"negative": 0.1, "neutral": 0.8, "positive": 0.1},
    model="b",
    version="1",
)


def stream(stories: int, reposts: int, viral: int, seed: int = 1) -> list[ScoredMention]:
    rng = random.Random(seed)
    out: list[ScoredMention] = []
    span = 6 * 60.0  # minutes: all stories stay active (expiry is 48 h)

    def mention(mid: str, minute: float, body: str, parent: str | None) -> ScoredMention:
        at = T0 + timedelta(minutes=minute)
        return ScoredMention(
            mention=Mention(
                id=mid,
                source="x",
                text=body,
                created_at=at,
                received_at=at,
                author=Author(id=f"a{rng.randrange(10**9)}", followers=rng.randrange(5000)),
                repost_of=parent,
                watch=WATCH,
            ),
            sentiment=NEUTRAL,
        )

    for s in range(stories):
        start = rng.uniform(0, span)
        body = " ".join(rng.choice(WORDS) for _ in range(14)) + f" #{s}"
        out.append(mention(f"x:s{s}", start, body, None))
        for r in range(reposts):
            out.append(mention(f"x:s{s}-r{r}", start + rng.uniform(0, 60), "", f"x:s{s}"))
    out.append(mention("x:viral", 10.0, "the viral post " * 5, None))
    for r in range(viral):
        out.append(mention(f"x:viral-{r}", 10.0 + r * 300 / max(viral, 1), "", "x:viral"))
    return sorted(out, key=lambda m: (m.mention.created_at, m.mention.id))


def repost(mid: str, at: datetime, parent: str, rng: random.Random) -> ScoredMention:
    """A repost of ``parent`` (what the timed batches are made of)."""
    return ScoredMention(
        mention=Mention(
            id=mid,
            source="x",
            text="",
            created_at=at,
            received_at=at,
            author=Author(id=f"a{rng.randrange(10**9)}", followers=rng.randrange(5000)),
            repost_of=parent,
            watch=WATCH,
        ),
        sentiment=NEUTRAL,
    )


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stories", type=int, default=2000)
    p.add_argument("--reposts", type=int, default=10)
    p.add_argument("--viral", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument(
        "--batch",
        type=int,
        default=256,
        help="mentions per batch (at most detector.max_batch, 1,024 by default)",
    )
    p.add_argument("--touch", default="1,50,256", help="stories a batch touches (comma-separated)")
    p.add_argument("--url", default=os.environ.get("CRISISWATCH_TEST_POSTGRES", DEFAULT_PG))
    args = p.parse_args()

    detector = Detector(DetectorConfig(), generation=None)
    mentions = stream(args.stories, args.reposts, args.viral)
    started = time.process_time()
    for m in mentions:
        detector.observe(m)
    observe_cpu = time.process_time() - started
    key = ("big", False)
    rng = random.Random(2)
    last = mentions[-1].mention.created_at
    roots = [f"x:s{s}" for s in range(args.stories)]
    ms = 1000.0

    name = f"cw_bench_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(args.url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(f"{args.url.rpartition('/')[0]}/{name}")
    try:
        await upgrade_database(engine)
        store = StateStore(make_sessionmaker(engine))

        async def save() -> tuple[WatchChanges, float, float]:
            t0 = time.perf_counter()
            delta = detector.changes(key)
            t1 = time.perf_counter()
            await store.save({key: delta}, STATE_FORMAT)
            detector.saved(key, delta)
            return delta, t1 - t0, time.perf_counter() - t1

        whole, whole_dump, whole_write = await save()
        first_save = {
            "story_rows": len(whole.stories),
            "bytes": whole.size,
            "serialise_ms": round(whole_dump * ms, 1),
            "write_ms": round(whole_write * ms, 1),
        }
        per_touch: dict[str, object] = {}
        n = 0
        for touch in (int(t) for t in args.touch.split(",")):
            dump, write, total, observe, rows, size = [], [], [], [], [], []
            for _ in range(args.rounds):
                chosen = rng.sample(roots, min(touch, len(roots)))
                t0 = time.process_time()
                for i in range(args.batch):
                    n += 1
                    at = last + timedelta(seconds=n / 100)
                    detector.observe(repost(f"x:b{n}", at, chosen[i % len(chosen)], rng))
                observe.append(time.process_time() - t0)
                delta, d, w = await save()
                dump.append(d)
                write.append(w)
                total.append(d + w)
                rows.append(len(delta.stories))
                size.append(delta.size)
            per_touch[str(touch)] = {
                "story_rows_written_median": statistics.median(rows),
                "bytes_median": statistics.median(size),
                "serialise_ms_median": round(statistics.median(dump) * ms, 1),
                "write_ms_median": round(statistics.median(write) * ms, 1),
                "save_ms_median": round(statistics.median(total) * ms, 1),
                "save_ms_max": round(max(total) * ms, 1),
                "observe_cpu_ms_median": round(statistics.median(observe) * ms, 1),
            }
        t0 = time.perf_counter()
        row = (await store.load([key]))[key]
        t1 = time.perf_counter()
        fresh = Detector(DetectorConfig(), generation=None)
        fresh.restore(key, WatchSnapshot(row.state, row.stories))
        t2 = time.perf_counter()
    finally:
        await engine.dispose()
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()

    per_batch_observe = observe_cpu / len(mentions) * args.batch
    print(
        json.dumps(
            {
                "stories_held": detector.stories_active,
                "mentions": len(mentions),
                "batch": args.batch,
                "observe_cpu_ms_per_batch_build": round(per_batch_observe * ms, 1),
                "first_save_whole": first_save,
                "save_per_batch_by_stories_touched": per_touch,
                "load_ms": round((t1 - t0) * ms, 1),
                "restore_ms": round((t2 - t1) * ms, 1),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
