"""Spread heat in event time: windows, inherited sentiment, authors and reach, the watch's
baseline rate, the size extrapolation, complaint cues."""

from __future__ import annotations

import random
import unicodedata
from datetime import UTC, datetime, timedelta

import pytest

from core.events import Author, Label, Mention
from sentiment.detector.config import DetectorConfig
from sentiment.detector.cues import ComplaintCues
from sentiment.detector.heat import EventWindow, RateBaseline, StoryHeat, predict_final_size

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
CFG = DetectorConfig()
POWER_LAW = DetectorConfig(predictor="power_law")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def mention(
    native: str,
    minute: float = 0,
    *,
    text: str = "",
    author: str | None = "auto",
    followers: int | None = None,
    source: str = "x",
) -> Mention:
    return Mention(
        id=f"{source}:{native}",
        source=source,
        text=text,
        created_at=at(minute),
        author=Author(id=f"u-{native}" if author == "auto" else author, followers=followers),
    )


def add(heat: StoryHeat, m: Mention, label: Label = "neutral", *, root: bool = False) -> None:
    heat.add(m, label, is_root=root, now=m.created_at)


def test_event_window_counts_the_last_minutes_in_event_time() -> None:
    window = EventWindow(10)
    for minute in (0, 1, 5, 9.5):
        window.add(at(minute), at(minute))
    assert window.count(at(9.5)) == 4
    assert window.count(at(10.5)) == 3  # 0 left the window (<= now - 10 min)
    window.add(at(3), at(10.5))  # out of order, still inside
    window.add(at(0.2), at(10.5))  # late beyond the window: not counted
    assert window.count(at(10.5)) == 4
    assert window.count(at(15.01)) == 1
    assert window.count(at(30)) == 0


def test_reposts_carry_the_roots_label_once_it_is_known() -> None:
    heat = StoryHeat(CFG, T0)
    for i in range(3):
        add(heat, mention(f"rt{i}", i))  # no text, scored "neutral"
    assert heat.negative() == (0, 0.0)  # nothing known yet: not negative, not neutral
    add(heat, mention("root", text="my charger caught fire"), "negative", root=True)
    assert heat.negative() == (4, 1.0)
    add(heat, mention("reply", 4, text="works fine for me"), "positive")
    assert heat.negative() == (4, 0.8)


def test_a_repost_whose_text_shows_nothing_inherits_the_story_label() -> None:
    """A zero-width space, a bidi mark, a BOM or "&nbsp;" is no text of its own (the
    classifier reads such a text as blank): the repost carries the story's label, not its
    own neutral."""
    heat = StoryHeat(CFG, T0)
    add(heat, mention("root", text="my charger caught fire"), "negative", root=True)
    for i, nothing in enumerate(("\u200b", "\u200e ", "\u2060", " \ufeff", "&nbsp;")):
        add(heat, mention(f"rt{i}", i + 1, text=nothing))  # scored "neutral"
    assert heat.negative() == (6, 1.0)


def test_the_root_label_wins_over_the_first_text() -> None:
    heat = StoryHeat(CFG, T0)
    add(heat, mention("reply", text="lol"), "positive")
    add(heat, mention("rt"))
    assert heat.story_label == "positive"
    add(heat, mention("root", text="this is a scam"), "negative", root=True)
    assert heat.story_label == "negative"
    assert heat.negative() == (2, 2 / 3)


def test_a_known_label_carries_into_a_revived_story() -> None:
    heat = StoryHeat(CFG, T0, label="negative")
    add(heat, mention("rt"))
    assert heat.negative() == (1, 1.0)


def test_authors_reach_and_platforms() -> None:
    heat = StoryHeat(CFG, T0)
    add(heat, mention("1", author="alice", followers=1_000))
    add(heat, mention("2", author="alice", followers=1_000))  # same author: once
    add(heat, mention("3", author="bob", followers=None))
    add(heat, mention("4", author=None))  # unknown authors count one per mention
    add(heat, mention("5", author=None, followers=50_000))
    add(heat, mention("6", author="alice", source="bsky", followers=200))  # another platform
    snap = heat.snapshot(at(1), None)
    assert (snap.mentions, snap.authors, snap.reach, snap.platforms) == (6, 5, 51_200, 2)


def test_authors_beyond_the_cap_are_an_upper_bound() -> None:
    heat = StoryHeat(DetectorConfig(max_authors_per_story=3), T0)
    for i in range(5):
        add(heat, mention(str(i), author=f"a{i}"))
    add(heat, mention("again", author="a4"))
    assert heat.authors == 6


def test_snapshot_rates_windows_and_ratio() -> None:
    heat = StoryHeat(CFG, T0)
    for i in range(20):
        add(heat, mention(str(i), i * 0.25))  # 20 mentions in 5 minutes
    snap = heat.snapshot(at(5), baseline_per_minute=0.5)
    assert (snap.short_mentions, snap.long_mentions) == (20, 20)
    assert snap.rate_per_minute == pytest.approx(4.0)  # over the story's age, 5 min
    assert snap.rate_ratio == pytest.approx(8.0)
    assert heat.snapshot(at(5), None).rate_ratio is None
    later = heat.snapshot(at(30), 0.5)
    assert (later.short_mentions, later.long_mentions, later.rate_ratio) == (0, 20, 0.0)
    features = later.features()
    assert (features.mentions, features.mentions_window, features.window_minutes) == (20, 0, 10)


def test_predicted_size() -> None:
    assert predict_final_size(CFG.predict_min_mentions - 1, 10.0, 5.0, CFG) is None
    expected = 50 + 2.0 * (5.0 + CFG.predict_offset_minutes) / CFG.predict_theta
    assert predict_final_size(50, 2.0, 5.0, CFG) == pytest.approx(expected)
    capped = predict_final_size(50, 2.0, 10_000.0, CFG)
    horizon = CFG.predict_horizon_minutes + CFG.predict_offset_minutes
    assert capped == pytest.approx(50 + 2.0 * horizon / CFG.predict_theta)
    assert predict_final_size(50, 0.0, 30.0, CFG) == 50


def test_the_prediction_uses_the_lower_of_the_short_and_long_rates() -> None:
    heat = StoryHeat(POWER_LAW, T0)
    for i in range(60):
        add(heat, mention(f"a{i}", i * 0.5))  # 2 a minute for 30 minutes
    for i in range(40):
        add(heat, mention(f"b{i}", 59 + i * 0.02))  # a short burst at minute 59
    snap = heat.snapshot(at(59.8), None)
    assert snap.short_mentions == 40 and snap.long_mentions == 100
    sustained = 100 / 59.8  # the long window over the story's age (< 60 min)
    assert snap.rate_per_minute == pytest.approx(40 / 10)  # the short window's rate
    assert snap.predicted_size == pytest.approx(
        100 + sustained * (59.8 + POWER_LAW.predict_offset_minutes) / POWER_LAW.predict_theta
    )


def test_baseline_is_an_ewma_of_mentions_per_minute() -> None:
    baseline = RateBaseline(half_life_minutes=60, warmup_minutes=30, floor=0.1)
    assert baseline.per_minute() is None
    for minute in range(900):
        baseline.add(at(minute))
        baseline.add(at(minute + 0.5))  # 2 a minute
        if minute == 20:
            assert baseline.per_minute() is None  # still warming up
        if minute == 40:  # young: bias-corrected, not dragged towards zero
            assert baseline.per_minute() == pytest.approx(2.0)
    assert baseline.per_minute() == pytest.approx(2.0)
    baseline.add(at(960))  # an hour of silence: the usual rate halves
    rate = baseline.per_minute()
    assert rate is not None and rate == pytest.approx(1.0, rel=0.05)
    baseline.add(at(24 * 60))  # a day of silence: the floor
    assert baseline.per_minute() == 0.1


def test_complaint_cues() -> None:
    cues = ComplaintCues(
        {
            "en": ["fire", "Caught Fire", "refund", "is this true"],
            "zh": ["退款", "爆炸"],
            "x": ["315"],
        }
    )
    assert cues.find("My charger CAUGHT FIRE, I want a REFUND") == ("caught fire", "refund")
    assert cues.find("firefox is slow; refunding now") == ()
    assert cues.find("Is  this true??") == ("is this true",)
    assert cues.find("充电宝爆炸了，要求退款！") == ("爆炸", "退款")
    assert cues.find("315晚会曝光") == ("315",)
    assert cues.find("退款refund") == ("退款", "refund")
    assert ComplaintCues({}).find("refund") == ()


def test_complaint_cues_keep_recent_answers_within_a_bound() -> None:
    """A repeated text (reposts) is answered from the kept answers, the same answer; the
    kept answers never exceed ``RECENT_TEXTS`` texts, and a forgotten text is answered
    afresh, the same again."""
    from sentiment.detector.cues import RECENT_TEXT_CHARS, RECENT_TEXTS

    cues = ComplaintCues({"en": ["refund"], "zh": ["退款"]})
    first = cues.find("转发微博。要求退款")
    assert first == ("退款",)
    assert cues.find("转发微博。要求退款") is first  # kept
    for i in range(RECENT_TEXTS + 10):
        assert cues.find(f"post {i} refund") == ("refund",)
        assert len(cues._recent) <= RECENT_TEXTS
    assert "转发微博。要求退款" not in cues._recent  # forgotten ...
    assert cues.find("转发微博。要求退款") == ("退款",)  # ... and answered afresh
    assert cues.find("") == () and "" not in cues._recent
    long = "refund " + "x" * RECENT_TEXT_CHARS  # an article body: answered, not kept
    assert cues.find(long) == ("refund",) and long not in cues._recent


@pytest.mark.parametrize(
    "lexicons",
    [
        {"en": ["fire", "caught fire", "rip-off", "c++", "wi-fi", "is this true"], "x": ["315"]},
        {"en": ["refund", "!!!"]},  # a cue without letters or digits: never screened out
        {"en": ["refund"], "zh": ["退款", "真的吗"]},
    ],
)
def test_complaint_cue_screen_never_changes_the_answer(lexicons: dict[str, list[str]]) -> None:
    """The screen before the pattern (a text whose runs of letters and digits hold no
    cue's last run) answers exactly what the pattern alone answers."""
    cues = ComplaintCues(lexicons)
    pattern = cues._pattern
    assert pattern is not None
    texts = [
        "misfire, then it CAUGHT FIRE!!!",
        "xcaught fire here",
        "firefox fire. rip-off ripoff rip off",
        "c++ is fine; wi-fi down; wifi",
        "Is this true? is this truely",
        "315晚会 a315b 315",
        "退款refund 真的吗？",
        "refunds refund_ refund9 9refund",
        "",
        "   ",
        "no cue at all in this one",
        "Ｒｅｆｕｎｄ (full-width)",
    ]
    for text in texts:
        assert cues.find(text) == _pattern_answer(cues, text), text


_PIECES = [
    *("fire", "caught fire", "rip-off", "c++", "315", "!!!", "refund", "退款", "真的吗"),
    *("straße", "ﬁre", "Ｒｅｆｕｎｄ", "İade", "naïve", "e\u0301t", "100%", "-fire", "½off"),
    *("ß", "ﬁ", "Ｒ", "１", "İ", "ı", "\u0307", "é", "Σ", "ς", "²", "™", "😀", "’", "'"),
    *(" ", "  ", "\u00a0", "\u3000", "\u200b", "-", "_", "+", "!", "?", ".", "a", "z", "0", "9"),
]


def _pattern_answer(cues: ComplaintCues, text: str) -> tuple[str, ...]:
    """What the cue pattern alone finds in ``text`` (folded as ``find`` folds it)."""
    assert cues._pattern is not None
    folded = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return tuple(dict.fromkeys(m.group(0) for m in cues._pattern.finditer(folded)))


def test_complaint_cue_screen_agrees_with_the_pattern_on_random_texts() -> None:
    """Random cue lists and texts built from cue pieces and characters that NFKC and
    case folding change (ligatures, full-width letters, dotted I, sharp s, combining
    marks, odd spaces): the screen never changes the answer (a fixed seed)."""
    rng = random.Random(20261128)
    compared = found = 0
    for _ in range(300):
        words = rng.sample(_PIECES[:18], rng.randint(1, 5))
        words += ["".join(rng.choices(_PIECES, k=rng.randint(1, 4))) for _ in range(2)]
        cues = ComplaintCues({"x": [w for w in words if w.strip()] or ["refund"]})
        pieces = [*words, *(w.upper() for w in words), *(w.title() for w in words), *_PIECES]
        for _ in range(40):
            text = "".join(rng.choices(pieces, k=rng.randint(0, 10)))
            if not text:
                continue
            expected = _pattern_answer(cues, text)
            assert cues.find(text) == expected, (words, text)
            compared += 1
            found += bool(expected)
    assert compared > 10_000 and compared / 4 < found < compared  # both answers tested


def test_config_rejects_inconsistent_settings() -> None:
    with pytest.raises(ValueError, match="long_window_minutes"):
        DetectorConfig(short_window_minutes=30, long_window_minutes=10)
    with pytest.raises(ValueError, match="multiple of minhash_bands"):
        DetectorConfig(minhash_permutations=100, minhash_bands=32)
    with pytest.raises(ValueError, match="empty cue"):
        DetectorConfig(complaint_cues={"en": ["refund", " "]})
    with pytest.raises(ValueError, match="Extra inputs"):
        DetectorConfig.model_validate({"spread_threshold": 3})


def test_the_predictors_hawkes_power_law_and_their_consensus() -> None:
    predictions = {}
    for predictor in ("hawkes", "power_law", "consensus"):
        heat = StoryHeat(DetectorConfig(predictor=predictor), T0)  # type: ignore[arg-type]
        add(heat, mention("root", 0), root=True)
        for i in range(40):
            add(heat, mention(f"r{i}", 0.5 + i * 0.25))  # 40 reposts in 10 minutes
        predictions[predictor] = heat.snapshot(at(10.5), None).predicted_size
    hawkes, power_law, consensus = predictions.values()
    assert hawkes is not None and power_law is not None
    assert hawkes > 41 and power_law > 41  # both expect more to come
    assert consensus == min(hawkes, power_law)


@pytest.mark.parametrize("predictor", ["consensus", "hawkes", "power_law"])
def test_the_live_view_decides_as_the_full_snapshot(predictor: str) -> None:
    """The detector decides on ``StoryHeat.live`` and reports ``snapshot``: the same
    levels and the same answer to "predicted at least x" at every step of a growing story."""
    from sentiment.detector.policy import spread_level

    cfg = DetectorConfig(predictor=predictor, spread3_authors=10, spread3_predicted_size=60)
    heat = StoryHeat(cfg, T0)
    levels = set()
    for i in range(120):
        m = mention(f"{i}", i * 0.4, author=f"a{i % 40}")
        now = m.created_at
        heat.add(m, "negative", is_root=i == 0, now=now, expected_per_minute=0.2)
        full = heat.snapshot(now, 0.2)
        live = heat.live(now, 0.2, now.timestamp() / 60)
        assert spread_level(live, cfg) == spread_level(full, cfg)
        assert live.negative_share == full.negative_share
        assert live.bursting() == bool(full.burst_windows)
        for threshold in (20.0, 60.0, 150.0):
            assert live.predicted_at_least(threshold) == full.predicted_at_least(threshold)
            assert full.predicted_at_least(threshold) == (
                full.predicted_size is not None and full.predicted_size >= threshold
            )
        levels.add(spread_level(full, cfg))
    assert levels >= {1, 2, 3}  # the story went through every level it can reach here
