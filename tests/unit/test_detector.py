"""The detector core on generated streams: chatter stays silent, a complaint escalates
1 -> 2 -> 3 in order with deterministic ids, redelivery changes nothing, a positive
story spreads without a tier, a quiet story cools down in event time."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from core.events import Author, Label, Mention, ScoredMention, Sentiment, Signal, WatchMatch
from sentiment.detector.config import DetectorConfig
from sentiment.detector.detector import Detector
from sentiment.detector.evidence import EvidencePicker

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
WATCH = WatchMatch(id="acme", brand="Acme", terms=("acme",))
VOCABULARY = (
    "acme store coffee morning train weather music update order delivery price app review "
    "friend weekend photo design color screen speaker garden kitchen travel city office "
    "battery camera sale launch event video stream game book movie dinner lunch bike shoe "
    "jacket window river market print paper cloud green blue silver quiet happy late early"
)
WORDS = tuple(VOCABULARY.split())
COMPLAINT = (
    "@acme my Acme charger caught fire overnight and nearly burned the desk, I want a refund"
)
PRAISE = "The new Acme phone is honestly the best thing I bought this year, love the camera"


def sentiment(label: Label) -> Sentiment:
    probs: dict[Label, float] = {"negative": 0.05, "neutral": 0.05, "positive": 0.05}
    probs[label] = 0.9
    return Sentiment(label=label, probs=probs, model="test", version="1")


def scored(
    native: str,
    minute: float,
    *,
    text: str = "",
    label: Label = "neutral",
    author: str | None = None,
    followers: int | None = None,
    repost_of: str | None = None,
    reply_to: str | None = None,
    watch: WatchMatch | None = WATCH,
    drill: bool = False,
) -> ScoredMention:
    created = T0 + timedelta(minutes=minute)
    return ScoredMention(
        mention=Mention(
            id=f"x:{native}",
            source="x",
            text=text,
            created_at=created,
            received_at=created + timedelta(seconds=3),
            author=Author(id=author or f"u-{native}", handle=f"h{native}", followers=followers),
            repost_of=repost_of,
            reply_to=reply_to,
            watch=watch,
            drill=drill,
        ),
        sentiment=sentiment(label),
    )


def chatter(start: float, end: float, seed: int = 7) -> list[ScoredMention]:
    """Unrelated posts every ~2 minutes: neutral, positive, and negative without a cue."""
    rng = random.Random(seed)
    out: list[ScoredMention] = []
    minute, i = start, 0
    while minute < end:
        label: Label = rng.choice(["neutral", "neutral", "positive", "negative"])
        text = " ".join(rng.choice(WORDS) for _ in range(9))
        out.append(scored(f"c{seed}-{i}", minute, text=text, label=label))
        minute += rng.uniform(1.0, 3.0)
        i += 1
    return out


def complaint(start: float = 120, root: str = "root", drill: bool = False) -> list[ScoredMention]:
    """A complaint that grows: a few reposts, local spread, then a burst from many authors.
    Reposts have no text (and the scorer's 'neutral' for it): they carry the root's label."""
    out = [scored(root, start, text=COMPLAINT, label="negative", followers=2_000, drill=drill)]
    for i in range(2):  # a few mentions
        out.append(scored(f"{root}-a{i}", start + 1 + i, repost_of=f"x:{root}", drill=drill))
    for i in range(10):  # beyond the first authors
        out.append(scored(f"{root}-b{i}", start + 4 + i, repost_of=f"x:{root}", drill=drill))
    out.append(
        scored(
            f"{root}-reply",
            start + 14,
            text="@acme same happened to me, this is dangerous",
            label="negative",
            followers=90_000,
            reply_to=f"x:{root}",
            drill=drill,
        )
    )
    for i in range(360):  # the burst: 360 reposts in 9 minutes
        out.append(
            scored(f"{root}-c{i}", start + 15 + i * 0.025, repost_of=f"x:{root}", drill=drill)
        )
    return out


def by_time(*streams: list[ScoredMention]) -> list[ScoredMention]:
    merged = [m for stream in streams for m in stream]
    return sorted(merged, key=lambda s: (s.mention.created_at, s.mention.id))


def run(detector: Detector, stream: list[ScoredMention]) -> list[Signal]:
    return [signal for item in stream for signal in detector.observe(item)]


def test_background_chatter_stays_silent() -> None:
    detector = Detector(DetectorConfig())
    assert run(detector, chatter(0, 600)) == []
    assert detector.stories_active > 200


def test_a_growing_complaint_escalates_1_2_3_in_order() -> None:
    detector = Detector(DetectorConfig())
    signals = run(detector, by_time(chatter(0, 180), complaint(120)))
    assert all(s.story_id == "acme:x:root" for s in signals), "chatter must stay silent"
    assert [s.id for s in signals] == [f"acme:x:root#{n}" for n in range(1, 5)]
    assert [(s.previous_tier, s.tier, s.spread) for s in signals] == [
        (0, 1, 0),  # a lone complaint: negative with a cue ("caught fire", "refund")
        (1, 1, 1),  # a few mentions
        (1, 2, 2),  # beyond its first authors
        (2, 3, 3),  # network-wide
    ]
    ats = [s.at for s in signals]
    assert ats == sorted(ats)
    first, *_, last = signals
    assert first.at == T0 + timedelta(minutes=120)
    assert first.trigger_received_at == first.at + timedelta(seconds=3)
    assert first.story_root == "x:root"
    assert first.watch == WATCH
    assert last.heat.negative_share > 0.95, "reposts carry the root's negative label"
    assert last.heat.unique_authors >= 30
    assert last.heat.predicted_size is not None and last.heat.predicted_size > last.heat.mentions
    assert "caught fire" in last.explanation and "refund" in last.explanation
    assert "% negative" in last.explanation
    # evidence: the root first, then the (negative, widely followed) reply with text
    assert [e.id for e in last.evidence] == ["x:root", "x:root-reply"]
    assert last.evidence[0].label == "negative"
    assert all(len(e.text) <= DetectorConfig().evidence_chars for e in last.evidence)


def test_decisions_are_deterministic() -> None:
    stream = by_time(chatter(0, 180), complaint(120))
    one = [s.model_dump() for s in run(Detector(DetectorConfig()), stream)]
    two = [s.model_dump() for s in run(Detector(DetectorConfig()), stream)]
    assert one == two
    assert len(one) == 4


def test_redelivered_mentions_change_nothing() -> None:
    detector = Detector(DetectorConfig())
    stream = by_time(chatter(0, 180), complaint(120))
    assert len(run(detector, stream)) == 4
    before = detector.evaluate("acme", "acme:x:root")
    active = detector.stories_active
    assert run(detector, stream) == []
    assert run(detector, list(reversed(stream[-100:]))) == []
    assert detector.evaluate("acme", "acme:x:root") == before
    assert detector.stories_active == active


def test_edits_and_deletions_count_nothing_even_of_posts_no_longer_held() -> None:
    """A deletion of a post past its story's cap (or expired) was taken for a new post:
    a one-post story, in the watch's baseline and surge counts."""
    config = DetectorConfig(max_mentions_per_story=50)
    detector = Detector(config)
    stream = complaint(120)
    run(detector, stream)
    stories = detector.stories_active
    held = detector.evaluate("acme", "acme:x:root")

    def changed(m: ScoredMention, change: str) -> ScoredMention:
        update: dict[str, object] = {"change": change, "edited_at": m.mention.created_at}
        if change == "deleted":
            update |= {"text": "", "repost_of": None, "reply_to": None}
        return m.model_copy(update={"mention": m.mention.model_copy(update=update)})

    later = [changed(m, "deleted") for m in stream] + [changed(m, "edited") for m in stream]
    assert run(detector, later) == []
    assert detector.stories_active == stories
    decision = detector.evaluate("acme", "acme:x:root")
    assert decision is not None and held is not None
    assert decision.heat.mentions == held.heat.mentions


def test_a_big_positive_story_spreads_without_a_tier() -> None:
    detector = Detector(DetectorConfig())
    story = [scored("p", 120, text=PRAISE, label="positive")]
    story += [scored(f"p{i}", 121 + i * 0.02, repost_of="x:p") for i in range(400)]
    signals = run(detector, by_time(chatter(0, 140), story))
    assert [(s.tier, s.spread) for s in signals] == [(0, 2), (0, 3)]
    assert [s.id for s in signals] == ["acme:x:p#1", "acme:x:p#2"]
    assert signals[-1].heat.negative_share == 0.0


def test_a_quiet_story_cools_down_after_the_cooldown_in_event_time() -> None:
    config = DetectorConfig()
    detector = Detector(config)
    burst = complaint(120)
    last_repost = burst[-1].mention.created_at
    signals = run(detector, by_time(chatter(0, 600), burst))
    assert [s.tier for s in signals] == [1, 1, 2, 3, 2]
    cooled = signals[-1]
    assert (cooled.previous_tier, cooled.tier, cooled.spread) == (3, 2, 2)
    assert cooled.id == "acme:x:root#5"
    # no longer hot after the long window, then held for the cool-down
    hot_until = last_repost + timedelta(minutes=config.long_window_minutes - 60)
    assert cooled.at >= hot_until + timedelta(minutes=config.downgrade_cooldown_minutes)
    assert cooled.at <= last_repost + timedelta(
        minutes=config.long_window_minutes
        + config.downgrade_cooldown_minutes
        + 2 * config.sweep_interval_minutes
    )
    assert cooled.trigger_received_at is None  # decided by a sweep, not by a mention


def test_a_spread_2_that_rests_on_the_rate_cools_down_without_a_new_mention() -> None:
    """Spread 2 by rate (or a burst) falls with time alone: a sweep must look at it. It
    stayed at tier 2 for hours (until a new mention, or its expiry) before."""
    config = DetectorConfig()
    story = [scored("root", 120, text=COMPLAINT, label="negative", author="alice")]
    story += [
        scored(
            f"re{i}",
            120.2 + i * 0.1,
            text=f"same here, acme charger burned too {i}",
            label="negative",
            author=["bob", "carol"][i % 2],
            reply_to="x:root",
        )
        for i in range(7)
    ]
    detector = Detector(config)
    signals = run(detector, by_time(chatter(0, 120), story, chatter(121, 121 + 8 * 60, seed=9)))
    ours = [s for s in signals if s.story_root == "x:root"]
    assert max(s.spread for s in ours) == 2  # 3 authors: by the rate, not by its authors
    cooled = ours[-1]
    assert (cooled.tier, cooled.spread, cooled.previous_tier) == (1, 1, 2)
    assert cooled.trigger_received_at is None  # decided by a sweep, not by a mention
    assert cooled.at - story[-1].mention.created_at <= timedelta(
        minutes=config.short_window_minutes
        + config.downgrade_cooldown_minutes
        + 2 * config.sweep_interval_minutes
    )


def test_a_flare_during_the_cooldown_keeps_the_tier() -> None:
    detector = Detector(DetectorConfig())
    # the story is hot until about minute 205, cooling until 325; it flares up at 250
    again = [scored(f"again{i}", 250 + i * 0.025, repost_of="x:root") for i in range(320)]
    signals = run(detector, by_time(chatter(0, 330), complaint(120), again))
    assert [s.tier for s in signals] == [1, 1, 2, 3]


def test_drills_are_kept_apart_and_flagged() -> None:
    detector = Detector(DetectorConfig())
    signals = run(detector, by_time(complaint(120), complaint(120, root="drill", drill=True)))
    real = [s for s in signals if not s.drill]
    drill = [s for s in signals if s.drill]
    assert [s.tier for s in real] == [s.tier for s in drill] == [1, 1, 2, 3]
    assert {s.story_id for s in real} == {"acme:x:root"}
    assert {s.story_id for s in drill} == {"acme:drill:x:drill"}


def test_mentions_without_a_watch_use_the_placeholder_watch() -> None:
    detector = Detector(DetectorConfig())
    signals = run(detector, [scored("solo", 0, text=COMPLAINT, label="negative", watch=None)])
    assert [(s.story_id, s.watch.id, s.tier) for s in signals] == [("_:x:solo", "_", 1)]


def test_a_revived_story_continues_its_signal_numbers() -> None:
    config = DetectorConfig(story_expiry_hours=3)
    detector = Detector(config)
    first = run(detector, [scored("old", 0, text=COMPLAINT, label="negative")])
    assert [s.id for s in first] == ["acme:x:old#1"]
    run(detector, chatter(10, 400))  # the story is forgotten meanwhile
    assert detector.evaluate("acme", "acme:x:old") is None
    revived = run(detector, [scored(f"late{i}", 400 + i, repost_of="x:old") for i in range(3)])
    # the reposts carry the forgotten root's negative label: a few mentions, tier 1
    assert [(s.id, s.tier, s.spread) for s in revived] == [("acme:x:old#2", 1, 1)]


def test_evidence_is_the_root_then_the_most_negative_and_most_followed() -> None:
    picker = EvidencePicker(size=4, chars=40)
    picker.offer(scored("root", 0, text=COMPLAINT, label="negative"), is_root=True)
    for i in range(30):
        label: Label = "negative" if i == 7 else "neutral"
        text = f"reply number {i} to the acme charger story"
        item = scored(f"r{i}", 1 + i, text=text, label=label, followers=1_000 + i)
        picker.offer(item, is_root=False)
    picker.offer(scored("rt", 40, followers=10**7), is_root=False)  # no text: no evidence
    evidence = picker.pick()
    # root; most negative (r7), most followed (r29); then the next of each: r0 (ties on
    # negativity go to the earliest), r28 would follow
    assert [e.id for e in evidence] == ["x:root", "x:r7", "x:r29", "x:r0"]
    assert evidence[0].text.endswith("…") and len(evidence[0].text) == 40
    assert evidence[2].followers == 1_029


def test_evidence_text_reads_as_people_wrote_it() -> None:
    """Crawled text keeps literal escapes and HTML entities: evidence decodes them."""
    picker = EvidencePicker(size=2, chars=200)
    raw = "it\\u2019s the 2nd Acme charger to melt &amp; nobody\\u2019s   answering @acme"
    picker.offer(scored("root", 0, text=raw, label="negative"), is_root=True)
    (evidence,) = picker.pick()
    assert evidence.text == "it\u2019s the 2nd Acme charger to melt & nobody\u2019s answering @acme"


def test_complaint_cues_in_positive_posts_do_not_count() -> None:
    detector = Detector(DetectorConfig())
    praise = "honestly this acme speaker is fire, no refund needed"
    assert run(detector, [scored("fan", 0, text=praise, label="positive")]) == []
    decision = detector.evaluate("acme", "acme:x:fan")
    assert decision is not None and decision.heat.complaint_cues == ()
    # the same words in a negative post are a complaint: tier 1 on its own
    grumble = "my acme speaker caught fire, I want a refund"
    signals = run(detector, [scored("angry", 1, text=grumble, label="negative")])
    assert [(s.tier, s.spread) for s in signals] == [(1, 0)]
