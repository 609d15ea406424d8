"""Hostile mention text in every channel's format: it can never ping everyone, link,
format or inject markup; the on-call person is still mentioned the platform's way."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from alerts.channels import ConsoleChannelConfig, DingTalkChannelConfig, WeComChannelConfig
from alerts.notifiers import dingtalk, escape, wecom
from alerts.notifiers.console import ConsoleNotifier
from core.clock import ManualClock
from tests.notifier_fakes import (
    ALL_KINDS,
    FORBIDDEN,
    HOSTILE,
    MARKUP,
    Harness,
    digest_alert,
    hostile_alert,
    make_harness,
)

# Formatting a hostile author must not get, per markup (raw forms of the HOSTILE text).
MARKDOWN_FORMATTING = (
    "*bold*",
    "**big**",
    "_it_",
    "~gone~",
    "`code`",
    "# heading",
    "&lt;",
    "[x](",
    "[click](",
)
FORMATTING = {
    "slack": ("*bold*", "_it_", "~gone~", "`code`", "[x](", "[click]("),
    "dingtalk": MARKDOWN_FORMATTING,
    "wecom": MARKDOWN_FORMATTING,
    "feishu": MARKDOWN_FORMATTING,
    "teams": MARKDOWN_FORMATTING,
}
# How each platform mentions the on-call person (from the sample Contact).
MENTIONS = {
    "slack": ("<@U0ONCALL>",),
    "dingtalk": ("@lilei", '"atUserIds":["lilei"]'),
    "wecom": ("<@LiLei>",),
    "feishu": ("<at id=ou_abc123></at>",),
    "teams": ("<at>Li Lei</at>", '"id":"lilei@acme.example"'),
}


@pytest.fixture(params=ALL_KINDS)
async def harness(request: pytest.FixtureRequest, clock: ManualClock) -> AsyncIterator[Harness]:
    made = await make_harness(request.param, clock)
    yield made
    await made.close()


@pytest.mark.parametrize("where", ["everywhere", "digest"])
async def test_hostile_text_is_neutralised(harness: Harness, where: str) -> None:
    alert = (
        digest_alert()
        if where == "digest"
        else hostile_alert(title=HOSTILE, brand=HOSTILE, reason=HOSTILE)
    )
    await harness.notifier().send(alert)
    text = harness.rendered_text()
    for raw in FORBIDDEN:
        assert raw not in text, f"{harness.kind}: {raw!r} survived"
    for raw in MARKUP:
        assert raw not in harness.markup_text(), f"{harness.kind}: {raw!r} survived"
    for raw in FORMATTING.get(harness.kind, ()):
        assert raw not in text, f"{harness.kind}: formatting {raw!r} survived"
    if where == "everywhere" and harness.kind not in ("pagerduty",):
        assert "https://social.example/p/1" in text  # the post's own, validated link stays


async def test_the_on_call_person_is_mentioned_the_platforms_way(harness: Harness) -> None:
    await harness.notifier().send(hostile_alert())
    text = harness.rendered_text()
    for expected in MENTIONS.get(harness.kind, ()):
        assert expected in text, f"{harness.kind}: {expected!r} missing"


@pytest.mark.parametrize(
    "chat_id", ["all", "@all", "<!channel>", "id=all", "x\nboom", "a b", "everyone"]
)
def test_hostile_ids_in_contacts_never_become_mentions(chat_id: str) -> None:
    contact = {"name": "<at id=all></at>", "phone": "@all", "chat_ids": {}}
    for kind in ("slack", "dingtalk", "wecom", "feishu", "teams"):
        contact["chat_ids"] = {kind: chat_id}  # type: ignore[assignment]
    alert = hostile_alert(mentions=(contact,))
    md = dingtalk.message(alert)
    assert md["at"] == {"atMobiles": [], "atUserIds": [], "isAtAll": False}
    text = wecom.message(alert, "text")["text"]
    assert text["mentioned_list"] == [] and text["mentioned_mobile_list"] == []


def test_dingtalk_action_card_and_wecom_text_modes_are_safe() -> None:
    alert = hostile_alert(title=HOSTILE)
    card = dingtalk.message(alert.model_copy(update={"mentions": ()}), "actionCard")["actionCard"]
    assert card["singleURL"] == "https://cw.example/ack/tok.123.sig"
    text = wecom.message(alert, "text")["text"]
    assert text["mentioned_mobile_list"] == ["+8613800001111"]
    for body in (card["title"], card["text"], text["content"]):
        for raw in FORBIDDEN:
            assert raw not in body, raw
    for raw in (*MARKUP, "*bold*", "[x]("):
        assert raw not in card["title"] + card["text"], raw


def test_configs_choose_the_modes() -> None:
    url = "https://oapi.dingtalk.com/robot/send?access_token=abcdefgh12345678"
    assert DingTalkChannelConfig(webhook_url=url, msgtype="actionCard").msgtype == "actionCard"  # type: ignore[arg-type]
    wecom_url = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abcdefgh12345678"
    assert WeComChannelConfig(webhook_url=wecom_url, msgtype="text").msgtype == "text"  # type: ignore[arg-type]


async def test_console_neutralises_hostile_text(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="alerts.console")
    await ConsoleNotifier("log", ConsoleChannelConfig()).send(hostile_alert(title=HOSTILE))
    for raw in FORBIDDEN:
        assert raw not in caplog.text, raw


@pytest.mark.parametrize(
    ("raw", "fn", "expected"),
    [
        ("[x](http://evil)", escape.markdown, "［x］(hxxp［:］//evil)"),
        ("<at id=all></at>", escape.markdown, "＜\u200bat id=all＞＜/at＞"),
        ("@all", escape.markdown, "＠\u200ball"),
        ("a\u200b@\u2060all", escape.markdown, "a＠\u200ball"),
        ("**b**\n# h\n- li", escape.markdown, "＊＊b＊＊ ＃ h - li"),
        ("&lt;!channel&gt;", escape.markdown, "＆lt;!channel＆gt;"),
        ("<b>&</b>", escape.html, "&lt;b&gt;&amp;&lt;/b&gt;"),
        ("*b* <!here>", escape.slack, "＊b＊ &lt;\u200b!here&gt;"),
    ],
)
def test_escape_functions(raw: str, fn: object, expected: str) -> None:
    assert callable(fn)
    assert fn(raw) == expected


def test_ids_and_phones_are_validated() -> None:
    assert escape.chat_id("U0ONCALL") == "U0ONCALL"
    assert escape.chat_id("lilei@acme.example") == "lilei@acme.example"
    for bad in ("all", "ALL", "@all", "a b", "<x>", "", None, "x" * 200):
        assert escape.chat_id(bad) is None
    assert escape.phone("+86 138-0000-1111") == "+8613800001111"
    for bad in ("@all", "12", "phone", None):
        assert escape.phone(bad) is None
    assert escape.markdown_url("https://x.example/a)b") == "https://x.example/a%29b"
