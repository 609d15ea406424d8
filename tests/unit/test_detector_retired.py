"""The retired-story memory (what a forgotten story leaves behind: its Signal count, label
and life tag) is each watch's own, part of its saved state, and bounded per watch; a new
life of a story whose entry was dropped never reuses a Signal id an earlier life sent
(the alerter applies a Signal id once: a reused one is taken for a redelivery, its alert
lost)."""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path

from core.events import ScoredMention, Signal
from sentiment.detector.config import DetectorConfig
from sentiment.detector.detector import Detector, WatchKey
from sentiment.detector.snapshot import READABLE_FORMATS, STATE_FORMAT, WatchSnapshot
from tests.unit.test_detector import by_time, chatter, complaint, run, scored
from tests.unit.test_detector_state import BETA, on_watch

ACME: WatchKey = ("acme", False)
FORMAT_8 = Path(__file__).parents[1] / "data" / "detector-state-format8.json"


def wave(start: float, prefix: str, n: int = 300, root: str = "root") -> list[ScoredMention]:
    """Reposts of ``root`` (a second wave of an old story: its root is not repeated)."""
    return [scored(f"{prefix}{i}", start + i * 0.05, repost_of=f"x:{root}") for i in range(n)]


def seen(signals: list[Signal]) -> list[tuple[str, int, int, str]]:
    return [(s.id, s.tier, s.spread, s.at.isoformat()) for s in signals]


def restored_after_every(
    config: DetectorConfig, stream: list[ScoredMention], batch: int, *, first: str = "acme"
) -> list[Signal]:
    """The stream in batches, each taken by a new detector that restores every watch the
    previous one held (watch ``first`` first)."""
    signals: list[Signal] = []
    detector: Detector | None = None
    for i in range(0, len(stream), batch):
        fresh = Detector(config, generation="g")
        if detector is not None:
            for key in sorted(detector._watches, key=lambda key: key[0] != first):
                fresh.restore(key, detector.snapshot(key))
        detector = fresh
        signals += run(detector, stream[i : i + batch])
    return signals


def test_a_story_revived_after_its_entry_was_dropped_never_reuses_a_signal_id() -> None:
    """Second and third waves of reposts of a story forgotten long enough for its retired
    entry to be dropped (``4 * max_stories`` retired stories since): their Signals used
    to be numbered from #1 again, ids the alerter had applied already (the new wave's
    alerts were dropped as redeliveries). Each life now has its own tag; the memory stays
    within its cap; a restore after every batch gives the same ids."""
    config = DetectorConfig(max_stories=2)
    stream = (
        by_time(complaint(120), chatter(140, 200))
        + by_time(wave(210, "w"), chatter(230, 290))
        + wave(300, "v")
    )
    detector = Detector(config, generation="g")
    signals = run(detector, stream)
    ids = [s.id for s in signals]
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    lives = {i.rpartition(".")[0] for i in ids if i.startswith("acme:x:root#")}
    assert len(lives) == 3, ids  # "g" (the first life), then two tags
    ws = detector._watches[ACME]
    assert len(ws.retired) <= 4 * config.max_stories and ws.forgotten >= 2
    assert seen(restored_after_every(config, stream, 100)) == seen(signals)


def _two_watches() -> list[ScoredMention]:
    """acme: a complaint, forgotten among a little chatter (its entry kept: fewer than
    ``4 * max_stories`` retired since), revived by three reposts; beta: busy chatter
    meanwhile (many stories forgotten)."""
    acme = by_time(complaint(120), chatter(125, 175), wave(190, "late", n=3))
    beta = on_watch(by_time(chatter(100, 190, seed=9), chatter(100, 190, seed=11)), BETA)
    return by_time(acme, beta)


def test_a_watch_decides_the_same_whatever_other_watches_do() -> None:
    """The memory was shared by all the watches of a process: beta's forgotten chatter
    pushed acme's complaint out of it, and its revival lost its Signal count (ids
    reused) and its root's label (tier 0 instead of 1)."""
    config = DetectorConfig(max_stories=5)
    both = _two_watches()
    alone = [m for m in both if m.mention.watch is not None and m.mention.watch.id == "acme"]
    reference = run(Detector(config), alone)
    assert [(s.id, s.tier, s.spread) for s in reference[-1:]] == [("acme:x:root#5", 1, 1)]
    mixed = [s for s in run(Detector(config), both) if s.watch.id == "acme"]
    assert seen(mixed) == seen(reference)


def test_a_restore_after_every_batch_gives_the_signals_of_an_uninterrupted_run() -> None:
    """A restore appended the watch's entries at the end of the shared memory, so the
    order of restores decided whose entries went first: restored acme first, its
    complaint's entry went before beta's older ones, and its revival lost its count."""
    config = DetectorConfig(max_stories=5)
    acme = by_time(complaint(120), chatter(125, 175), wave(190, "late", n=3))
    beta = on_watch(by_time(chatter(0, 160, seed=9), chatter(0, 160, seed=11)), BETA)
    stream = by_time(acme, beta)
    reference = seen(run(Detector(config, generation="g"), stream))
    assert [s[:3] for s in reference[-1:]] == [("acme:x:root#g.5", 1, 1)]
    assert seen(restored_after_every(config, stream, 40, first="acme")) == reference


def _format_8() -> tuple[dict[str, object], Detector]:
    saved = json.loads(FORMAT_8.read_text())
    assert saved["format"] == 8 and 8 in READABLE_FORMATS and STATE_FORMAT == 9
    detector = Detector(DetectorConfig(max_stories=5), generation="other")
    detector.restore(
        ACME,
        WatchSnapshot(
            base64.b64decode(saved["watch"]),
            {sid: base64.b64decode(blob) for sid, blob in saved["stories"].items()},
        ),
    )
    return saved, detector


def test_a_format_8_snapshot_keeps_its_retired_stories() -> None:
    """A real format-8 snapshot (``tests/data/detector-state-format8.json``): its retired
    entries (three lists) are read; story r2, remembered, goes on counting its Signals
    and carries its root's label."""
    _, detector = _format_8()
    revived = run(detector, wave(300, "late", n=3, root="r2"))
    assert [(s.id, s.tier, s.spread) for s in revived] == [("acme:x:r2#g.5", 1, 1)]


def test_a_format_8_snapshot_lost_entries_reuse_no_signal_id() -> None:
    """In that snapshot the shared memory had dropped story root's entry for watch beta's
    chatter, without a count: a second wave of root's reposts after the restore was
    numbered from #1 again (ids sent before the snapshot). Such a restored watch counts
    one entry dropped, so new lives are tagged."""
    saved, detector = _format_8()
    sent = saved["signals"]
    assert isinstance(sent, list) and "acme:x:root#g.1" in sent
    revived = [s.id for s in run(detector, wave(300, "w"))]
    assert revived and all(i.startswith("acme:x:root#g.r1.") for i in revived), revived
    assert not set(revived) & set(sent)


def test_a_folded_story_that_sent_forecasts_is_remembered() -> None:
    """An orphan story (reposts of p before p) sent forecast reports (replays:
    ``forecast_report_quiet``), then p came and folded it into q's cascade: it was dropped
    without a retired entry, and p's next story (q forgotten, new reposts of p) numbered
    its Signals from #1 again."""
    config = DetectorConfig(
        forecast_report_minutes=[2, 4, 6],
        forecast_report_quiet=True,
        predict_min_mentions=3,
        story_expiry_hours=3,
    )
    stream = [scored("q", 0, text="q post about acme")]
    stream += [scored(f"c{i}", 1 + i / 2, repost_of="x:p", author=f"a{i}") for i in range(8)]
    stream += [scored("p", 8, text="p reply about acme", reply_to="x:q")]
    stream += [scored("y", 300, text="other post")]
    stream += [scored(f"z{i}", 400 + i / 2, repost_of="x:p", author=f"b{i}") for i in range(8)]
    stream += [scored("end", 460, text="unrelated words here")]
    detector = Detector(config)
    ids = [s.id for s in run(detector, stream)]
    assert detector.stories_folded == 1
    assert sum(i.startswith("acme:x:p#") for i in ids) > 3, ids  # both lives sent some
    assert [i for i, n in Counter(ids).items() if n > 1] == []
