"""ReplaySource: wire format, bad lines, pacing through the clock, loops, progress."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.clock import ManualClock
from core.events import Mention
from core.metrics import Metrics
from listener.config import ReplaySourceConfig
from listener.sources.base import Source, SourceFatalError
from listener.sources.replay import ReplaySource

T0 = datetime(2026, 1, 5, 0, 3, 24, tzinfo=UTC)


class SteppingClock(ManualClock):
    """A manual clock whose sleeps return at once, moving time forward by what was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.advance(seconds)


def line(i: int, at: float, **extra: object) -> str:
    data: dict[str, object] = {
        "id": f"twitter:{i}",
        "source": "twitter",
        "text": f"post {i}",
        "lang": "en",
        "created_at": (T0 + timedelta(seconds=at)).isoformat().replace("+00:00", "Z"),
        "author": {"id": None, "followers": None},
    }
    data.update(extra)
    return json.dumps(data)


LINES = [
    line(1, 0),
    line(2, 10, text="", author={"id": "946280683", "followers": None}, repost_of="twitter:1"),
    "{this is not json",
    "",
    json.dumps({"id": "twitter:3", "source": "twitter", "text": "no time"}),
    line(4, 30, author={"id": "7", "followers": 1864793}),
]


def write(path: Path, lines: list[str]) -> Path:
    data = ("\n".join(lines) + "\n").encode()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


async def drain(source: ReplaySource) -> list[Mention]:
    await source.start()
    try:
        return [m async for m in source.mentions()]
    finally:
        await source.stop()


async def test_reads_gzip_wire_format_and_counts_bad_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path / "stream.jsonl.gz", LINES)
    metrics = Metrics()
    source = ReplaySource(ReplaySourceConfig(path=path), ManualClock(), metrics)
    assert isinstance(source, Source)
    with caplog.at_level(logging.WARNING):
        mentions = await drain(source)

    assert [m.id for m in mentions] == ["twitter:1", "twitter:2", "twitter:4"]
    assert mentions[1].repost_of == "twitter:1"
    assert mentions[1].text == ""
    assert mentions[0].author.id is None
    assert mentions[2].author.followers == 1864793
    assert mentions[2].created_at == T0 + timedelta(seconds=30)
    assert source.rejected == 2
    assert source.lines_read == 6
    assert source.emitted == 3
    assert source.bytes_read == source.total_bytes == path.stat().st_size
    assert source.progress == 1.0
    reject = metrics.registry.get_sample_value
    assert (
        reject("crisiswatch_mentions_rejected_total", {"source": "replay", "reason": "not_json"})
        == 1
    )
    assert (
        reject("crisiswatch_mentions_rejected_total", {"source": "replay", "reason": "invalid"})
        == 1
    )
    text = caplog.text
    assert "line 3 rejected" in text and "not valid JSON" in text
    assert "line 5 rejected" in text and "created_at: Field required" in text
    assert "2 rejected" in text  # the summary at the end


async def test_reads_plain_jsonl_in_chunks(tmp_path: Path) -> None:
    lines = [line(i, i) for i in range(25)]
    path = write(tmp_path / "stream.jsonl", lines)
    source = ReplaySource(ReplaySourceConfig(path=path), ManualClock(), chunk_lines=4)
    mentions = await drain(source)
    assert [m.id for m in mentions] == [f"twitter:{i}" for i in range(25)]
    assert source.lines_read == 25


async def test_as_fast_as_possible_never_sleeps(tmp_path: Path) -> None:
    path = write(tmp_path / "s.jsonl.gz", LINES)
    for speed in (None, 0.0):
        clock = SteppingClock()
        await drain(ReplaySource(ReplaySourceConfig(path=path, speed=speed), clock))
        assert clock.sleeps == []


async def test_speed_replays_event_time_gaps_faster(tmp_path: Path) -> None:
    path = write(tmp_path / "s.jsonl.gz", LINES)  # mentions at +0, +10, +30 s
    clock = SteppingClock()
    start = clock.now()
    await drain(ReplaySource(ReplaySourceConfig(path=path, speed=10), clock))
    assert clock.sleeps == [1.0, 2.0]
    assert clock.now() - start == timedelta(seconds=3)


async def until_sleeping(clock: ManualClock) -> None:
    """Wait (bounded) until something sleeps on ``clock``: the file is read in a worker
    thread, so the source gets there in real time."""
    for _ in range(5000):
        if clock._sleepers:
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the replay never waited on the clock")


async def test_pacing_waits_on_the_clock(tmp_path: Path) -> None:
    """With a plain manual clock the replay really waits until time is moved."""
    path = write(tmp_path / "s.jsonl.gz", LINES)  # mentions at +0, +10, +30 s
    clock = ManualClock()
    source = ReplaySource(ReplaySourceConfig(path=path, speed=10), clock)
    await source.start()
    stream = source.mentions()
    assert (await anext(stream)).id == "twitter:1"  # the first one comes at once
    second = asyncio.ensure_future(anext(stream))
    await until_sleeping(clock)
    clock.advance(0.9)
    await asyncio.sleep(0)
    assert not second.done()
    clock.advance(0.1)
    assert (await asyncio.wait_for(second, 5)).id == "twitter:2"
    third = asyncio.ensure_future(anext(stream))
    await until_sleeping(clock)
    clock.advance(2)
    assert (await asyncio.wait_for(third, 5)).id == "twitter:4"
    await stream.aclose()


async def test_max_gap_shortens_quiet_spells(tmp_path: Path) -> None:
    path = write(tmp_path / "s.jsonl", [line(1, 0), line(2, 3600), line(3, 3610)])
    clock = SteppingClock()
    await drain(ReplaySource(ReplaySourceConfig(path=path, speed=1, max_gap_seconds=60), clock))
    assert clock.sleeps == [60.0, 10.0]


async def test_loop_relabels_ids_and_moves_time_forward(tmp_path: Path) -> None:
    path = write(tmp_path / "s.jsonl", [line(1, 0), line(2, 10, repost_of="twitter:1")])
    source = ReplaySource(ReplaySourceConfig(path=path, loop=True, limit=5), ManualClock())
    mentions = await drain(source)
    assert [m.id for m in mentions] == [
        "twitter:1",
        "twitter:2",
        "twitter:1~1",
        "twitter:2~1",
        "twitter:1~2",
    ]
    assert mentions[3].repost_of == "twitter:1~1"
    assert mentions[2].created_at == T0 + timedelta(seconds=11)
    assert mentions[4].created_at == T0 + timedelta(seconds=22)
    assert source.lines_read == 5


async def test_a_time_out_of_range_is_a_bad_line_not_a_stalled_replay(tmp_path: Path) -> None:
    """It raised OverflowError out of the chunk reader: the lines around it were lost and
    every reopen failed on it again."""
    lines = [line(1, 0), line(2, 1, created_at="0001-01-01T00:00:00+01:00"), line(3, 2)]
    source = ReplaySource(
        ReplaySourceConfig(path=write(tmp_path / "s.jsonl", lines)), ManualClock()
    )
    mentions = await drain(source)
    assert [m.id for m in mentions] == ["twitter:1", "twitter:3"]
    assert source.rejected == 1


async def test_loop_keeps_ids_near_the_length_limit_valid(tmp_path: Path) -> None:
    long_id = "twitter:" + "9" * 503  # 511 characters: "~1" would make 513
    path = write(
        tmp_path / "s.jsonl",
        [
            line(1, 0, id=long_id),
            line(2, 10, id="twitter:" + "9" * 502 + "8", repost_of=long_id),
        ],
    )
    source = ReplaySource(ReplaySourceConfig(path=path, loop=True, limit=6), ManualClock())
    mentions = await drain(source)
    assert len(mentions) == 6
    looped = mentions[2:]
    for mention in looped:  # what a Kafka consumer would decode: valid, not dead-lettered
        assert len(mention.id) <= 512
        assert Mention.model_validate_json(mention.model_dump_json()) == mention
    assert len({m.id for m in mentions}) == 6
    assert looped[1].repost_of == looped[0].id and looped[3].repost_of == looped[2].id
    assert looped[0].id.endswith("~1") and looped[2].id.endswith("~2")
    assert looped[0].id.startswith("twitter:")


async def test_limit_stops_early(tmp_path: Path) -> None:
    path = write(tmp_path / "s.jsonl.gz", [line(i, i) for i in range(10)])
    mentions = await drain(ReplaySource(ReplaySourceConfig(path=path, limit=3), ManualClock()))
    assert len(mentions) == 3


async def test_missing_file_fails_at_start(tmp_path: Path) -> None:
    source = ReplaySource(ReplaySourceConfig(path=tmp_path / "nope.jsonl"), ManualClock())
    with pytest.raises(SourceFatalError, match="cannot be read"):
        await source.start()


async def test_truncated_gzip_is_fatal_after_the_good_lines(tmp_path: Path) -> None:
    data = gzip.compress(("\n".join(line(i, i) for i in range(2000)) + "\n").encode())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    source = ReplaySource(ReplaySourceConfig(path=path), ManualClock(), chunk_lines=100)
    await source.start()
    got = 0
    with pytest.raises(SourceFatalError, match="unreadable after line"):
        async for _ in source.mentions():
            got += 1
    assert got > 0


async def test_stop_ends_the_stream(tmp_path: Path) -> None:
    path = write(tmp_path / "s.jsonl", [line(i, i) for i in range(10)])
    source = ReplaySource(ReplaySourceConfig(path=path), ManualClock())
    await source.start()
    got = []
    async for m in source.mentions():
        got.append(m)
        await source.stop()
    assert len(got) == 1


async def test_a_utf8_bom_does_not_cost_the_first_mention(tmp_path: Path) -> None:
    # files saved by Windows tools start with one; the first line is a story's root
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + ("\n".join(line(i, i) for i in range(3)) + "\n").encode())
    source = ReplaySource(ReplaySourceConfig(path=path), ManualClock())
    assert [m.id for m in await drain(source)] == ["twitter:0", "twitter:1", "twitter:2"]
    assert source.rejected == 0


@pytest.mark.parametrize("name", ["gzipped.jsonl", "plain.jsonl.gz"])
async def test_gzip_is_told_by_its_content_not_its_name(tmp_path: Path, name: str) -> None:
    data = ("\n".join(line(i, i) for i in range(3)) + "\n").encode()
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.startswith("gzipped") else data)
    source = ReplaySource(ReplaySourceConfig(path=path), ManualClock())
    assert len(await drain(source)) == 3
    assert source.rejected == 0
