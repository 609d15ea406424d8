"""Alert messages in Chinese, per channel (``language: zh``): every notifier type says the
whole alert in Chinese (headline, reason, explanation from the heat, labels, buttons,
follow-ups, digests), within its platform's size limits counted in UTF-8 bytes, with
strangers' text escaped exactly as in English; English channels are unchanged."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from alerts.channels import (
    AnyChannelConfig,
    DingTalkChannelConfig,
    EmailChannelConfig,
    FeishuChannelConfig,
    PagerDutyChannelConfig,
    SlackChannelConfig,
    TeamsChannelConfig,
    WebhookChannelConfig,
    WeComChannelConfig,
)
from alerts.messages import digest_message
from alerts.notifiers import (
    console,
    dingtalk,
    email,
    escape,
    feishu,
    pagerduty,
    render,
    slack,
    teams,
    webhook,
    wecom,
)
from alerts.notifiers.base import (
    AlertHeat,
    AlertMessage,
    Contact,
    DigestItem,
    EvidenceSnippet,
    Link,
    Notifier,
)
from alerts.notifiers.i18n import zh_count, zh_explanation, zh_reason, zh_title
from alerts.notifiers.reasons import Reason
from alerts.notifiers.registry import build_notifier
from core.clock import ManualClock
from tests.notifier_fakes import (
    ALL_KINDS,
    CERTS,
    FORBIDDEN,
    HOSTILE,
    PD_KEY,
    SIGNING_SECRET,
    SMTP_PASSWORD,
    SMTP_USER,
    EmailHarness,
    Harness,
    HttpHarness,
    hostile_alert,
    make_harness,
)

HEAT = AlertHeat(
    mentions=230,
    mentions_window=41,
    window_minutes=10,
    unique_authors=37,
    reach=1_234_567,
    negative_share=0.88,
    rate_ratio=9.0,
    platforms=3,
    predicted_size=900,
)
ENGLISH = (
    "41 posts in the last 10 min (230 in all, 88% negative) from 37 authors, 9× the usual "
    "rate; reach 1.2 M followers; projected 900 posts; spreading on 3 platforms."
)
CHINESE = (
    "近 10 分钟 41 条帖子（累计 230 条，负面占 88%），来自 37 位作者，为平常的 9 倍；"
    "覆盖 123万 粉丝；预计将达 900 条；已扩散至 3 个平台。"
)
# English words of our own that a Chinese message must not show
ENGLISH_WORDS = (
    "Tier ",
    "Watch",
    "Teams:",
    "Acknowledge",
    "Open incident",
    "view post",
    "On call",
    "followers",
    "ESCALATION",
    "posts in the last",
    "and 3 more",
)


def alert(**overrides: Any) -> AlertMessage:
    data: dict[str, Any] = {
        "incident_id": 12,
        "tier": 3,
        "title": "Acme: network-wide crisis",
        "explanation": ENGLISH,
        "watch_id": "acme",
        "brand": "Acme",
        "reason": "ESCALATION level 2: not acknowledged within 15 min",
        "why": Reason(code="escalation", level=2, seconds=900),
        "heat": HEAT,
        "teams": ("pr", "legal"),
        "evidence": (
            EvidenceSnippet(
                author="小王爱吐槽",
                followers=128_000,
                text="Acme 的新品充电时冒烟了，客服一直不回复，大家千万别买！",
                url="https://weibo.example/p/1",
            ),
        ),
        "links": (Link(label="Open incident", url="https://cw.example/incidents/12"),),
        "ack_hint": "POST https://cw.example/incidents/12/ack",
        "ack_url": "https://cw.example/ack/tok.1.sig",
        "mentions": (
            Contact(
                name="王丽",
                phone="+86 138-0000-1111",
                chat_ids={
                    "slack": "U0ONCALL",
                    "dingtalk": "wangli",
                    "wecom": "WangLi",
                    "feishu": "ou_7d8a6e",
                    "teams": "wangli@acme.example",
                },
            ),
        ),
        "opened_at": datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
        "idempotency_key": "12:3:pr:escalation-2",
    }
    data.update(overrides)
    return AlertMessage.model_validate(data)


def zh_config(harness: Harness) -> AnyChannelConfig:
    """The harness's channel, set to Chinese."""
    if isinstance(harness, EmailHarness):
        return EmailChannelConfig(
            host="127.0.0.1",
            port=harness.port,
            username=SMTP_USER,
            password=SMTP_PASSWORD,
            ca_file=str(CERTS / "cert.pem"),
            sender="crisiswatch@acme.example",
            to=["pr@acme.example"],
            language="zh",
        )
    data: dict[str, Any] = {"webhook_url": harness.url, "language": "zh"}
    signed = data | {"secret": SIGNING_SECRET}
    kinds: dict[str, tuple[type[AnyChannelConfig], dict[str, Any]]] = {
        "slack": (SlackChannelConfig, data),
        "webhook": (WebhookChannelConfig, {"url": harness.url, **signed} | {"webhook_url": None}),
        "teams": (TeamsChannelConfig, data),
        "feishu": (FeishuChannelConfig, signed),
        "dingtalk": (DingTalkChannelConfig, signed),
        "wecom": (WeComChannelConfig, data),
        "pagerduty": (PagerDutyChannelConfig, {"routing_key": PD_KEY, "url": harness.url}),
    }
    model, fields = kinds[harness.kind]
    fields = {k: v for k, v in fields.items() if v is not None} | {"language": "zh"}
    return model.model_validate(fields)


def zh_notifier(harness: Harness, clock: ManualClock) -> Notifier:
    client = harness.client if isinstance(harness, HttpHarness) else None
    return build_notifier("zh", zh_config(harness), client, clock)  # type: ignore[arg-type]


@pytest.fixture(params=ALL_KINDS)
async def harness(request: pytest.FixtureRequest, clock: ManualClock) -> AsyncIterator[Harness]:
    made = await make_harness(request.param, clock)
    yield made
    await made.close()


def delivered(harness: Harness) -> str:
    if isinstance(harness, HttpHarness):
        assert harness.problems == [], harness.problems
    return harness.rendered_text()


# -- every channel type --------------------------------------------------------------------


async def test_every_channel_type_says_the_alert_in_chinese(
    harness: Harness, clock: ManualClock
) -> None:
    await zh_notifier(harness, clock).send(alert())
    text = delivered(harness)
    assert "三级 #12：Acme：全网危机" in text
    if harness.kind == "pagerduty":  # the summary and the details
        assert "升级通知第 2 级：15 分钟内无人确认" in text
        assert CHINESE in text and '"class":"tier 3"' in text  # machine fields stay
        return
    assert "升级通知第 2 级：15 分钟内无人确认" in text
    if harness.kind == "webhook":
        body = json.loads(text)
        assert body["language"] == "zh" and body["explanation"] == CHINESE
        hooked = body["alert"]  # its texts for people in Chinese, its codes and numbers not
        assert hooked["explanation"] == CHINESE and hooked["title"] == "Acme：全网危机"
        assert hooked["reason"] == "升级通知第 2 级：15 分钟内无人确认"
        assert hooked["why"] == {"code": "escalation", "level": 2, "seconds": 900.0}
        assert hooked["heat"]["mentions"] == 230 and hooked["tier"] == 3
        texts = json.dumps([hooked[f] for f in ("title", "reason", "explanation", "links")])
        for word in ENGLISH_WORDS:
            assert word not in texts, f"webhook: English {word!r} in Chinese"
        return
    assert CHINESE in text
    assert "小王爱吐槽" in text and "粉丝 12.8万" in text
    for word in ENGLISH_WORDS:
        assert word not in text, f"{harness.kind}: English {word!r} in a Chinese message"


async def test_every_channel_type_says_follow_ups_in_chinese(
    harness: Harness, clock: ManualClock
) -> None:
    ack = alert(action="acknowledge", actor="alice", why=Reason(code="acknowledged", actor="alice"))
    ack = ack.model_copy(update={"reason": "acknowledged by alice"})
    await zh_notifier(harness, clock).send(ack)
    if harness.kind == "pagerduty":  # an acknowledge event has no text
        return
    text = delivered(harness)
    assert "已由 alice 确认" in text
    if harness.kind == "webhook":  # the reason text in Chinese, its code as it is
        body = json.loads(text)
        assert body["summary"] == "已由 alice 确认：三级 #12：Acme：全网危机"
        assert body["status"] == "已由 alice 确认"
        assert body["alert"]["reason"] == "已由 alice 确认"
        assert body["alert"]["why"] == {"code": "acknowledged", "actor": "alice"}
        assert body["alert"]["action"] == "acknowledge" and body["alert"]["actor"] == "alice"
        return
    assert "acknowledged" not in text.lower()


async def test_a_drill_says_so_in_chinese(harness: Harness, clock: ManualClock) -> None:
    await zh_notifier(harness, clock).send(alert(drill=True))
    assert "【演练】三级 #12" in delivered(harness)


async def test_strangers_text_is_escaped_in_chinese_as_in_english(
    harness: Harness, clock: ManualClock
) -> None:
    await zh_notifier(harness, clock).send(hostile_alert(why=Reason(code="new"), heat=HEAT))
    text = delivered(harness)
    rendered = harness.markup_text() if harness.kind not in ("webhook", "pagerduty") else text
    for raw in FORBIDDEN:
        assert raw not in rendered, f"{harness.kind}: {raw!r} survived in Chinese"
    assert "新事件" in text


def alert_part(body: dict[str, object]) -> dict[str, Any]:
    """A webhook body's ``alert`` object (JSON: read as such)."""
    part = body["alert"]
    assert isinstance(part, dict)
    return part


def test_the_webhooks_structured_reason_and_heat_are_cleaned() -> None:
    why = Reason(code="task_due", title=HOSTILE, role=HOSTILE, seconds=1200)
    heat = HEAT.model_copy(update={"complaint_cues": (HOSTILE,)})
    for language in ("en", "zh"):
        text = json.dumps(webhook.payload(hostile_alert(why=why, heat=heat), language))
        for raw in FORBIDDEN:
            assert raw not in text, f"{language}: {raw!r} survived in the webhook"
        hooked = alert_part(webhook.payload(hostile_alert(why=why, heat=heat), language))
        assert hooked["why"]["code"] == "task_due" and hooked["why"]["seconds"] == 1200


# -- what each part says -----------------------------------------------------------------------


def test_the_markdown_body_in_chinese() -> None:
    body = render.markdown(alert(), mention=wecom._mention, language="zh")
    assert body == (
        "**三级 #12：Acme：全网危机**\n\n**升级通知第 2 级：15 分钟内无人确认**\n\n"
        f"{CHINESE}\n\n监测项：Acme · 团队：pr, legal\n"
        "- **小王爱吐槽**（粉丝 12.8万）：“Acme 的新品充电时冒烟了，客服一直不回复，大家千万别买！”"
        " [查看原帖（weibo［.］example）](https://weibo.example/p/1)\n\n值班：<@WangLi>\n\n"
        "[确认](https://cw.example/ack/tok.1.sig) · [打开事件](https://cw.example/incidents/12)"
    )


def test_english_channels_ignore_the_structured_reason_and_heat() -> None:
    with_both = alert()
    without = alert(why=None, heat=None)
    renderers: list[Callable[[AlertMessage], str]] = [
        lambda a: render.markdown(a, mention=wecom._mention),
        lambda a: console.render_text(a),
        lambda a: json.dumps(slack.message(a, with_buttons=True)),
        lambda a: email.plain_body(a) + email.html_body(a),
        lambda a: json.dumps(
            {k: v for k, v in alert_part(webhook.payload(a)).items() if k not in ("why", "heat")}
        ),
    ]
    for render_one in renderers:
        assert render_one(with_both) == render_one(without)
    assert "Tier 3 #12: Acme: network-wide crisis" in render.markdown(with_both)
    assert ENGLISH in render.markdown(with_both)


def test_without_heat_or_structured_reason_chinese_shows_the_stored_english() -> None:
    """An alert queued before this change: its explanation and reason as they were."""
    old = alert(why=None, heat=None)
    body = render.markdown(old, language="zh")
    assert ENGLISH in body
    assert "ESCALATION level 2: not acknowledged within 15 min" in body
    assert body.startswith("**三级 #12：Acme：全网危机**")  # our own words still Chinese


def test_console_in_chinese() -> None:
    text = console.render_text(alert(), "zh")
    assert text.splitlines()[0] == "三级告警 #12：Acme：全网危机"
    assert "  说明：" + CHINESE in text and "  值班：王丽" in text
    assert "  确认：https://cw.example/ack/tok.1.sig" in text
    assert "  确认接口：POST https://cw.example/incidents/12/ack" in text


def test_slack_buttons_and_labels_in_chinese() -> None:
    body = slack.message(alert(), with_buttons=True, language="zh")
    assert body["blocks"][0]["text"]["text"] == "三级 #12：Acme：全网危机"
    actions = body["blocks"][-1]["elements"]
    assert [a["text"]["text"] for a in actions] == ["确认", "解决"]
    assert actions[1]["confirm"]["title"]["text"] == "确认解决此事件？"
    assert "*监测项：* Acme" in json.dumps(body, ensure_ascii=False)


def test_feishu_card_and_dingtalk_action_card_buttons_in_chinese() -> None:
    card = feishu.card(alert(), language="zh")
    buttons = [e for e in card["body"]["elements"] if e["tag"] == "button"]
    assert [(b["text"]["content"], b["type"]) for b in buttons] == [
        ("确认", "primary"),
        ("打开事件", "default"),
    ]
    body = dingtalk.message(alert(mentions=()), "actionCard", "zh")
    assert body["actionCard"]["singleTitle"] == "确认"
    assert body["actionCard"]["title"] == "三级 #12：Acme：全网危机"


def test_email_subject_and_bodies_in_chinese() -> None:
    config = EmailChannelConfig(
        host="smtp.example", sender="a@acme.example", to=["b@acme.example"], language="zh"
    )
    msg = email.build_email(alert(), config, datetime(2026, 1, 5, tzinfo=UTC))
    assert msg["Subject"] == "[crisiswatch] 三级 #12：Acme：全网危机"
    assert msg["Content-Language"] == "zh-CN"
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and html is not None
    assert CHINESE in plain.get_content() and "监测项：Acme" in plain.get_content()
    assert '<html lang="zh-CN">' in html.get_content()


def test_pagerduty_summary_in_chinese_machine_fields_unchanged() -> None:
    config = PagerDutyChannelConfig.model_validate({"routing_key": PD_KEY, "language": "zh"})
    event = pagerduty.event(alert(), config)
    assert event["payload"]["summary"] == "三级 #12：Acme：全网危机"
    assert event["payload"]["class"] == "tier 3" and event["payload"]["severity"] == "critical"
    assert event["payload"]["custom_details"]["explanation"] == CHINESE
    assert event["links"][1]["text"] == "打开事件"


WEBHOOK_TEXTS = ("title", "reason", "explanation", "links")
"""The webhook's ``alert`` fields meant for people (``links``: their labels)."""


def test_webhook_texts_follow_the_language_and_its_machine_fields_do_not() -> None:
    en = webhook.payload(alert())
    zh = webhook.payload(alert(), "zh")
    assert set(zh) == set(en) and en["language"] == "en"
    en_alert, zh_alert = en["alert"], zh["alert"]
    assert isinstance(en_alert, dict) and isinstance(zh_alert, dict)
    assert set(zh_alert) == set(en_alert)
    for field in set(en_alert) - set(WEBHOOK_TEXTS):  # codes, numbers, names, URLs
        assert zh_alert[field] == en_alert[field], field
    assert zh_alert["why"] == {"code": "escalation", "level": 2, "seconds": 900.0}
    assert zh_alert["heat"] == HEAT.model_dump(mode="json")
    assert [zh_alert[f] for f in WEBHOOK_TEXTS] == [
        "Acme：全网危机",
        "升级通知第 2 级：15 分钟内无人确认",
        CHINESE,
        [{"label": "打开事件", "url": "https://cw.example/incidents/12"}],
    ]
    assert [en_alert[f] for f in WEBHOOK_TEXTS] == [  # as English channels always had them
        "Acme: network-wide crisis",
        "ESCALATION level 2: not acknowledged within 15 min",
        ENGLISH,
        [{"label": "Open incident", "url": "https://cw.example/incidents/12"}],
    ]
    assert zh["summary"] == "三级 #12：Acme：全网危机"
    assert en["summary"] == "Tier 3 #12: Acme: network-wide crisis"
    assert zh["status"] == "升级通知第 2 级：15 分钟内无人确认"
    assert en["explanation"] == ENGLISH and zh["explanation"] == CHINESE


# -- digests and reasons ---------------------------------------------------------------------


def _payload(incident_id: int, why: Reason, tier: int = 1, **more: Any) -> dict[str, Any]:
    names = {1: "minor complaint", 2: "local spread", 3: "network-wide crisis"}
    return alert(
        incident_id=incident_id,
        tier=tier,
        title=f"Acme: {names[tier]}",
        reason=why.english(),
        why=why,
        links=(Link(label="Open incident", url=f"https://cw.example/incidents/{incident_id}"),),
        idempotency_key=f"{incident_id}:{tier}:pr:alert",
        **more,
    ).model_dump(mode="json")


def test_a_digest_in_chinese() -> None:
    digest = digest_message(
        [
            _payload(7, Reason(code="new")),
            _payload(8, Reason(code="upgrade", tier=2, from_tier=1), tier=2),
            _payload(9, Reason(code="acknowledged", actor="alice"), action="acknowledge"),
        ],
        Reason(code="digest_rate"),
        "digest:7,8,9",
    )
    body = render.markdown(digest, language="zh")
    assert body.splitlines()[0] == "**合并通知：3 起事件（最高二级）**"
    assert "**合并通知：告警数超出渠道频率上限，合并发送**" in body
    assert "- 一级 #7：Acme：轻微投诉（新事件） [打开](https://cw.example/incidents/7)" in body
    assert "- 二级 #8：Acme：局部扩散（升级为二级（原为一级））" in body
    assert "- 一级 #9：Acme：轻微投诉（已由 alice 确认）" in body
    assert digest.reason == "digest: more alerts than the channel's rate limit allows"
    assert webhook.payload(digest, "zh")["explanation"] == (
        "3 条告警合并为一条消息：合并通知：告警数超出渠道频率上限，合并发送"
    )
    zh_items = alert_part(webhook.payload(digest, "zh"))["digest"]
    en_items = alert_part(webhook.payload(digest))["digest"]
    assert [(i["title"], i["reason"]) for i in zh_items] == [
        ("Acme：轻微投诉", "新事件"),
        ("Acme：局部扩散", "升级为二级（原为一级）"),
        ("Acme：轻微投诉", "已由 alice 确认"),
    ]
    assert [(i["title"], i["reason"]) for i in en_items] == [
        ("Acme: minor complaint", "new"),
        ("Acme: local spread", "upgraded to tier 2 (was tier 1)"),
        ("Acme: minor complaint", "acknowledged by alice (acknowledge)"),
    ]
    assert [i["why"]["code"] for i in zh_items] == ["new", "upgrade", "acknowledged"]
    for zh_item, en_item in zip(zh_items, en_items, strict=True):
        assert {k: v for k, v in zh_item.items() if k not in ("title", "reason")} == {
            k: v for k, v in en_item.items() if k not in ("title", "reason")
        }
    assert "- 二级 #8" in console.render_text(digest, "zh")


def test_a_drill_item_among_real_alerts_says_so_in_chinese() -> None:
    digest = digest_message(
        [_payload(7, Reason(code="new")), _payload(8, Reason(code="new"), drill=True)],
        Reason(code="digest_held"),
        "digest:7,8",
    )
    assert "- 一级 #8：【演练】Acme：轻微投诉（新事件）" in render.markdown(digest, language="zh")


REASONS = [
    (Reason(code="new"), "new", "新事件"),
    (
        Reason(code="upgrade", tier=3, from_tier=1),
        "upgraded to tier 3 (was tier 1)",
        "升级为三级（原为一级）",
    ),
    (Reason(code="silence_ended"), "silence ended", "静默期已结束"),
    (
        Reason(code="inhibition_ended", incident=7, status="resolved"),
        "inhibition ended (incident 7 resolved)",
        "抑制已解除（事件 #7 已解决）",
    ),
    (
        Reason(code="inhibition_ended", incident=7, status="closed", merged_into=9),
        "inhibition ended (incident 7 merged into incident 9)",
        "抑制已解除（事件 #7 已并入事件 #9）",
    ),
    (
        Reason(code="escalation", level=2, seconds=900),
        "ESCALATION level 2: not acknowledged within 15 min",
        "升级通知第 2 级：15 分钟内无人确认",
    ),
    (
        Reason(code="reminder", seconds=9000),
        "REMINDER: still not acknowledged after 2.5 h",
        "提醒：已过 2.5 小时，仍无人确认",
    ),
    (
        Reason(code="sla_missed", tier=3),
        "SLA deadline of tier 3 missed",
        "三级响应时限（SLA）已超时",
    ),
    (
        Reason(code="task_due", title="Publish a statement", seconds=1200, role="comms"),
        "TASK REMINDER: 'Publish a statement' is due in 20 min (owner: comms)",
        "任务提醒：「Publish a statement」将在 20 分钟后到期（负责角色：comms）",
    ),
    (
        Reason(code="task_overdue", title="发布声明", seconds=300),
        "TASK OVERDUE: '发布声明' was due 5 min ago",
        "任务逾期：「发布声明」已逾期 5 分钟",
    ),
    (Reason(code="acknowledged", actor="alice"), "acknowledged by alice", "已由 alice 确认"),
    (Reason(code="resolved", actor="bob"), "resolved by bob", "已由 bob 解决"),
    (
        Reason(code="superseded", tier=3),
        "superseded by a new page (tier 3)",
        "已被新一轮告警取代（三级）",
    ),
    (Reason(code="digest_held"), "held, then sent together", "合并通知：暂缓后一并发送"),
]


@pytest.mark.parametrize(("why", "english", "chinese"), REASONS)
def test_every_reason_in_english_as_before_and_in_chinese(
    why: Reason, english: str, chinese: str
) -> None:
    assert why.english() == english
    assert zh_reason(why) == chinese


def test_every_reason_code_has_a_case() -> None:
    from typing import get_args

    from alerts.notifiers.reasons import ReasonCode

    covered = {why.code for why, _, _ in REASONS} | {"digest_rate"}
    assert covered == set(get_args(ReasonCode))


# -- numbers, titles, explanation -------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0"),
        (950, "950"),
        (9999, "9999"),
        (9999.6, "1万"),
        (12_345, "1.2万"),
        (99_999, "10万"),
        (123_456, "12.3万"),
        (1_234_567, "123万"),
        (99_999_999, "1亿"),
        (350_000_000, "3.5亿"),
        (12_000_000_000, "120亿"),
    ],
)
def test_chinese_counts(n: float, text: str) -> None:
    assert zh_count(n) == text


def test_titles_of_ours_are_translated_others_kept() -> None:
    assert zh_title("Acme: minor complaint") == "Acme：轻微投诉"
    assert zh_title("Acme: local spread") == "Acme：局部扩散"
    assert zh_title("[DRILL] Acme: network-wide crisis") == "【演练】Acme：全网危机"
    assert zh_title("3 alerts (digest)") == "3 alerts (digest)"
    assert zh_title("a brand: local spread: network-wide crisis") == (
        "a brand: local spread：全网危机"
    )


def test_explanation_parts_follow_the_heat() -> None:
    quiet = HEAT.model_copy(
        update={
            "mentions": 41,
            "negative_share": 0.0,
            "rate_ratio": 1.2,
            "reach": 0,
            "platforms": 1,
            "predicted_size": 41.5,
        }
    )
    assert zh_explanation(quiet) == "近 10 分钟 41 条帖子，来自 37 位作者。"
    ratio = HEAT.model_copy(update={"rate_ratio": 2.5, "platforms": 1, "predicted_size": None})
    assert "为平常的 2.5 倍；覆盖 123万 粉丝。" in zh_explanation(ratio)
    surge = AlertHeat(
        mentions=120,
        mentions_window=120,
        window_minutes=30,
        unique_authors=0,
        reach=0,
        negative_share=0.0,
        kind="surge",
    )
    assert zh_explanation(surge) == "全品牌声量激增：近 30 分钟 120 条帖子，分散在多个话题中。"


# -- size limits hold in UTF-8 bytes ----------------------------------------------------------

LONG_ZH = "这款产品质量太差了，客服态度恶劣，退款迟迟不到账，大家一定要小心！" * 40


def crowded(count: int = 12) -> AlertMessage:
    evidence = tuple(
        EvidenceSnippet(
            author="长名字的微博用户" * 10,
            followers=10**6 + i,
            text=LONG_ZH,
            url=f"https://weibo.example/p/{i}",
        )
        for i in range(count)
    )
    return alert(explanation="英文说明" * 600, heat=None, evidence=evidence)


def test_wecom_markdown_stays_within_4096_bytes_in_chinese() -> None:
    body = wecom.message(crowded(), "markdown", "zh")["markdown"]["content"]
    assert len(body.encode()) <= wecom.MARKDOWN_MAX_BYTES
    assert len(body) < wecom.MARKDOWN_MAX_BYTES // 2  # Chinese: ~3 bytes a character
    assert "<@WangLi>" in body and "[确认](https://cw.example/ack/tok.1.sig)" in body
    assert "…另有" in body and "条帖子" in body


def test_wecom_text_stays_within_2048_bytes_in_chinese() -> None:
    body = wecom.message(crowded(), "text", "zh")["text"]["content"]
    assert len(body.encode()) <= wecom.TEXT_MAX_BYTES
    assert body.endswith("打开事件：https://cw.example/incidents/12")


def test_feishu_dingtalk_teams_bodies_stay_within_their_limits_in_chinese() -> None:
    clock = ManualClock()
    config = FeishuChannelConfig(
        webhook_url="https://open.feishu.cn/open-apis/bot/v2/hook/x",
        secret=SIGNING_SECRET,
        language="zh",
    )
    note = feishu.FeishuNotifier("f", config, None, clock)  # type: ignore[arg-type]
    big = crowded(60)
    body = json.dumps(note.payload(big), ensure_ascii=False, separators=(",", ":")).encode()
    assert len(body) <= feishu.BODY_MAX_BYTES
    ding = dingtalk.message(big, "markdown", "zh")
    encoded = json.dumps(ding, ensure_ascii=False, separators=(",", ":")).encode()
    assert len(encoded) <= dingtalk.BODY_MAX_BYTES and "@wangli" in ding["markdown"]["text"]
    card = teams.card(big, "zh")
    assert len(card["body"][1]["text"].encode()) <= teams.TEXT_MAX_BYTES


def test_a_long_chinese_digest_is_counted_where_it_stops() -> None:
    payloads = [
        _payload(i, Reason(code="task_due", title=LONG_ZH[:150], seconds=600))
        for i in range(1, 400)
    ]
    digest = digest_message(payloads, Reason(code="digest_rate"), "digest:many")
    body = wecom.message(digest, "markdown", "zh")["markdown"]["content"]
    assert len(body.encode()) <= wecom.MARKDOWN_MAX_BYTES
    counted = [line for line in body.splitlines() if line.startswith("…另有 ")]
    assert len(counted) == 1 and counted[0].endswith(" 起事件")
    assert body.endswith("值班：<@WangLi>")  # the mention is never cut
    blocks = slack.message(digest, language="zh")["blocks"]
    assert all(len(b["text"]["text"]) <= slack.TEXT_MAX for b in blocks if b["type"] == "section")
    assert len(blocks) <= 50


def test_a_digest_item_title_from_strangers_stays_escaped_in_chinese() -> None:
    digest = AlertMessage.model_validate(
        alert(
            digest=(DigestItem(incident_id=8, tier=1, title="Acme @all <!channel>", reason="new"),)
        ).model_dump()
    )
    for language in ("en", "zh"):
        body = render.markdown(digest, language=language)
        assert "@all" not in body and "<!channel>" not in body
        assert escape.markdown("Acme @all <!channel>", 200) in body


def test_an_unreadable_reason_or_heat_leaves_the_english_text() -> None:
    """A payload from a newer release (an unknown reason code, a heat it cannot read) is
    still a valid alert: its English reason and explanation are shown."""
    stored = alert().model_dump(mode="json")
    stored["why"] = {"code": "from_a_newer_release"}
    stored["heat"] = {"reach": "lots"}
    stored["digest"] = []
    message = AlertMessage.model_validate(stored)
    assert message.why is None and message.heat is None
    body = render.markdown(message, language="zh")
    assert "ESCALATION level 2: not acknowledged within 15 min" in body and ENGLISH in body
    item = DigestItem.model_validate({"incident_id": 1, "tier": 1, "title": "t", "why": {}})
    assert item.why is None
