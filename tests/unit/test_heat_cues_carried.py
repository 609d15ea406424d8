"""The Signal's heat names the complaint cues, high-reach accounts and burst windows the
detector's English explanation names, so a channel in another language can say them too."""

from __future__ import annotations

from dataclasses import replace

from alerts.notifiers.base import AlertHeat
from alerts.notifiers.i18n import zh_explanation
from core.events import CUE_CHARS, HeatFeatures
from sentiment.detector.heat import HeatSnapshot
from sentiment.detector.policy import explain

SNAP = HeatSnapshot(
    mentions=230,
    short_mentions=41,
    short_minutes=10,
    long_mentions=120,
    long_minutes=60,
    authors=37,
    reach=1_200_000,
    negative_mentions=202,
    negative_share=0.88,
    platforms=3,
    age_minutes=40.0,
    rate_per_minute=5.75,
    rate_ratio=9.0,
    predicted_size=900.0,
    complaint_cues=("refund", "退款"),
    burst_windows=(5, 15),
    high_reach_authors=2,
)


def test_features_carry_cues_high_reach_accounts_and_burst_windows() -> None:
    features = SNAP.features()
    assert features.complaint_cues == ("refund", "退款")
    assert features.high_reach_authors == 2
    assert features.burst_windows == (5, 15)
    long = replace(SNAP, complaint_cues=("x" * (CUE_CHARS + 50),)).features()
    assert long.complaint_cues == ("x" * CUE_CHARS,)


def test_a_heat_sent_before_these_fields_still_reads() -> None:
    old = {
        "mentions": 3,
        "mentions_window": 3,
        "window_minutes": 10,
        "unique_authors": 3,
        "reach": 0,
        "negative_share": 0.5,
    }
    heat = HeatFeatures.model_validate(old)
    assert (heat.complaint_cues, heat.high_reach_authors, heat.burst_windows) == ((), 0, ())


def test_the_chinese_paragraph_says_what_the_english_one_says_in_its_order() -> None:
    english = explain(SNAP)
    assert english.index("high-reach") < english.index("bursting") < english.index("cues")
    heat = AlertHeat.model_validate(SNAP.features().model_dump())
    assert zh_explanation(heat) == (
        "近 10 分钟 41 条帖子（累计 230 条，负面占 88%），来自 37 位作者，为平常的 9 倍；"
        "覆盖 120万 粉丝；2 个高影响力账号参与；声量远超平常（5、15 分钟窗口）；"
        "预计将达 900 条；已扩散至 3 个平台；投诉线索：refund、退款。"
    )
