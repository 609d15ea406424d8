"""What a security review of the alert channels found, each pinned down: digests of alerts
that @-mention people, byte limits that must never cut the mention or the links, Slack's
Block Kit limits, post links labelled with their host, links and @-all pings next to CJK
text, one-line fields that stay on one line, control characters in the report, and limits
that hold after escaping."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from alerts.channels import ConsoleChannelConfig, PagerDutyChannelConfig
from alerts.messages import digest_message
from alerts.notifiers import email, escape, pagerduty, slack, webhook, wecom
from alerts.notifiers.base import AlertMessage, Contact, EvidenceSnippet, Link
from alerts.notifiers.console import ConsoleNotifier
from alerts.workflow import report
from core.clock import ManualClock
from tests.notifier_fakes import (
    ALL_KINDS,
    FORBIDDEN,
    PD_KEY,
    Harness,
    HttpHarness,
    hostile_alert,
    make_harness,
)

ON_CALL = Contact(
    name="Li Lei",
    phone="+86 138-0000-1111",
    chat_ids={"slack": "U0ONCALL", "dingtalk": "lilei", "wecom": "LiLei", "feishu": "ou_abc123"},
)


def _payload(i: int, *, mentions: tuple[Contact, ...] = (), title: str = "") -> dict[str, Any]:
    return AlertMessage(
        incident_id=1000 + i,
        tier=3,
        title=title or "Acme Airlines: network-wide crisis",
        explanation="41 posts in the last 10 min",
        watch_id="acme-airlines",
        brand="Acme Airlines",
        reason="escalation-2",
        links=(Link(label="Open incident", url=f"https://cw.example/incidents/{1000 + i}"),),
        opened_at=datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
        idempotency_key=f"{i}",
        mentions=mentions,
    ).model_dump(mode="json")


@pytest.fixture
async def harness_of(clock: ManualClock) -> AsyncIterator[Callable[[str], Any]]:
    made: list[Harness] = []

    async def make(kind: str) -> Harness:
        harness = await make_harness(kind, clock)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await harness.close()


# -- 1. a digest of alerts that @-mention the on-call person --------------------------------


def test_a_digest_of_alerts_that_mention_people_mentions_each_once() -> None:
    other = Contact(name="Han Meimei", chat_ids={"slack": "U0OTHER"})
    same = Contact.model_validate(ON_CALL.model_dump())  # equal, not the same object
    digest = digest_message(
        [
            _payload(1, mentions=(ON_CALL,)),
            _payload(2, mentions=(same, other)),
            _payload(3),
        ],
        "more alerts than the channel's rate limit allows",
        "digest:1,2,3",
    )
    assert [c.name for c in digest.mentions] == ["Li Lei", "Han Meimei"]
    assert len(digest.digest) == 3
    assert hash(ON_CALL) == hash(same) and len({ON_CALL, same, other}) == 2


async def test_a_digest_with_a_mention_reaches_slack(harness_of: Any) -> None:
    harness = await harness_of("slack")
    digest = digest_message(
        [_payload(i, mentions=(ON_CALL,)) for i in range(3)], "held, then sent together", "k"
    )
    await harness.notifier().send(digest)
    assert not harness.problems
    assert harness.rendered_text().count("<@U0ONCALL>") == 1


# -- 2. byte limits keep the mention and the links; the evidence gives way ------------------

CJK_POST = ("航班取消了还不退款太离谱了客服电话一直打不通" * 30)[:500]
FLOOD = "@" * 600  # every "@" becomes a 3-byte full-width "＠"


def _text_of(kind: str, body: dict[str, Any]) -> str:
    if kind == "wecom":
        return str(body["markdown"]["content"])
    if kind == "dingtalk":
        return str(body["markdown"]["text"])
    if kind == "feishu":
        return str(body["card"]["body"]["elements"][0]["content"])
    return str(body["attachments"][0]["content"]["body"][1]["text"])  # teams


LIMITS = {"wecom": 4096, "dingtalk": 18000, "feishu": 15000, "teams": 20000}
MENTION = {
    "wecom": "<@LiLei>",
    "dingtalk": "@lilei",
    "feishu": "<at id=ou_abc123></at>",
    "teams": "<at>Li Lei</at>",
}


@pytest.mark.parametrize("kind", ["wecom", "dingtalk", "feishu", "teams"])
@pytest.mark.parametrize("posts", [3, 10])
@pytest.mark.parametrize("text", [CJK_POST, FLOOD], ids=["cjk", "at-flood"])
async def test_long_posts_never_push_out_the_mention_or_the_links(
    harness_of: Any, kind: str, posts: int, text: str
) -> None:
    contact = ON_CALL.model_copy(
        update={"chat_ids": {**ON_CALL.chat_ids, "teams": "lilei@acme.example"}}
    )
    alert = hostile_alert(
        evidence=tuple(
            EvidenceSnippet(author="用户" * 50, text=text, url=f"https://weibo.com/u/{i}")
            for i in range(posts)
        ),
        mentions=(contact,),
    )
    harness = await harness_of(kind)
    await harness.notifier().send(alert)  # the fake refuses what the platform would
    assert isinstance(harness, HttpHarness) and not harness.problems
    shown = _text_of(kind, harness.bodies[-1])
    assert len(shown.encode()) <= LIMITS[kind]
    assert MENTION[kind] in shown
    assert "(https://cw.example/incidents/42)" in shown
    if kind in ("wecom", "dingtalk"):  # Feishu and Teams show the ack link as a button
        assert "(https://cw.example/ack/tok.123.sig)" in shown
    assert escape.markdown(text, 30)[:20] in shown  # the start of the first post is shown
    if kind == "wecom" or (posts == 10 and kind != "teams"):  # too long: the posts were cut
        assert "…" in shown


def test_wecom_digest_over_its_limit_counts_what_it_leaves_out() -> None:
    digest = digest_message([_payload(i) for i in range(50)], "held, then sent together", "k")
    digest = digest.model_copy(update={"mentions": (ON_CALL,)})
    content = wecom.message(digest)["markdown"]["content"]
    assert len(content.encode()) <= wecom.MARKDOWN_MAX_BYTES
    assert "<@LiLei>" in content
    shown = content.count("- Tier 3 #")
    assert 0 < shown < 50 and f"…and {50 - shown} more incidents" in content


def test_wecom_text_mode_keeps_its_links() -> None:
    alert = hostile_alert(explanation="＠" * 2000)
    content = wecom.message(alert, "text")["text"]["content"]
    assert len(content.encode()) <= wecom.TEXT_MAX_BYTES
    assert content.endswith("Open incident: https://cw.example/incidents/42")


# -- 3. Slack: no section over 3000 characters, whatever the digest -------------------------


@pytest.mark.parametrize("count", [25, 50, 200])
async def test_a_large_slack_digest_fits_block_kit(harness_of: Any, count: int) -> None:
    digest = digest_message(
        [_payload(i, title="Acme Airlines: " + "x" * 200) for i in range(count)],
        "more alerts than the channel's rate limit allows",
        "k",
    )
    harness = await harness_of("slack")
    await harness.notifier().send(digest)
    assert isinstance(harness, HttpHarness) and not harness.problems, harness.problems
    sections = [b["text"]["text"] for b in harness.bodies[-1]["blocks"] if b["type"] == "section"]
    assert len(sections) > 1 and all(len(text) <= slack.TEXT_MAX for text in sections)
    listed = sum(text.count("• Tier 3 #") for text in sections)
    if listed < count:
        assert f"…and {count - listed} more incidents" in sections[-1]
    assert listed >= min(count, 25)


def test_slack_pack_never_overflows_the_last_section() -> None:
    lines = ["y" * 2990, "z" * 2990, "w" * 10]
    sections = slack.pack("first", lines, 2)
    assert len(sections) == 2 and all(len(text) <= slack.TEXT_MAX for text in sections)
    assert sections[-1].endswith("…and 2 more incidents")


# -- 4. a post's link says where it leads ---------------------------------------------------


def _undefanged(text: str) -> str:
    return text.replace("［.］", ".").replace("[.]", ".")


@pytest.mark.parametrize("kind", ["slack", "teams", "feishu", "dingtalk", "wecom", "email"])
async def test_a_post_link_is_labelled_with_its_host(harness_of: Any, kind: str) -> None:
    url = "https://acme.example@acme-sso.example-login.net/okta/verify?next=incident-42"
    alert = hostile_alert(
        evidence=(EvidenceSnippet(author="alice", text="terrible service", url=url),)
    )
    harness = await harness_of(kind)
    await harness.notifier().send(alert)
    text = harness.markup_text()
    assert "view post on acme-sso.example-login.net" in _undefanged(text)
    assert "view post on acme-sso.example-login.net" not in text  # defanged, as outside text
    assert "view post<" not in text and "view post]" not in text and "view post>" not in text


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://Mastodon.Evil.example/@x/1", "mastodon.evil.example"),
        ("https://acme.example@evil.example/", "evil.example"),
        ("https://аcme.example/", "xn--cme-5cd.example"),  # Cyrillic а
        ("https://ｅｖｉｌ.example/", "evil.example"),
        ("https://evil%2Eexample/", "evil.example"),
        ("https://evil。example/", "evil.example"),
        ("https://" + "a" * 100 + ".evil.example/", "…" + ("a" * 100 + ".evil.example")[-79:]),
        ("javascript:alert(1)", None),
        ("https://x.example/\n", None),
    ],
)
def test_host_is_what_a_browser_resolves(url: str, host: str | None) -> None:
    assert escape.host(url) == host


# -- 5. links and @-all pings next to CJK text ----------------------------------------------

CJK_HOSTILE = (
    "退款请看https://evil.example中 或 官网evil.example客服 @all群 @channel通知 "
    "1https://evil.example2 看www.evil.example吧 看http://3232235777/login "
    "＜at id=all＞ <at id=all>群 evil.example2"
)


@pytest.mark.parametrize("kind", ALL_KINDS)
async def test_links_and_pings_next_to_cjk_are_defanged(harness_of: Any, kind: str) -> None:
    alert = hostile_alert(
        title=CJK_HOSTILE,
        brand=CJK_HOSTILE,
        reason=CJK_HOSTILE,
        explanation=CJK_HOSTILE,
        evidence=(
            EvidenceSnippet(author=CJK_HOSTILE, text=CJK_HOSTILE, url="https://weibo.com/1/2"),
        ),
    )
    harness = await harness_of(kind)
    await harness.notifier().send(alert)
    text = harness.rendered_text()
    for raw in (*FORBIDDEN, "http://3232235777", "www.evil"):
        assert raw not in text, f"{kind}: {raw!r} survived"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("退款请看https://evil.example中", "退款请看hxxps[:]//evil[.]example中"),
        ("官网evil.example客服", "官网evil[.]example客服"),
        ("@all群", "@\u200ball群"),
        ("<at id=all>群", "<\u200bat id=all>群"),
        ("evil.example2", "evil[.]example2"),
        ("evil.xn--p1ai", "evil[.]xn--p1ai"),
        ("e.g. 1.5M posts, @allison", "e.g. 1.5M posts, @allison"),
    ],
)
def test_defuse_needs_no_word_boundary(raw: str, expected: str) -> None:
    assert escape.plain(raw) == expected


# -- 6. one-line fields stay on one line ----------------------------------------------------

FORGED = "m\n2026-01-05 09:00:01,000 INFO api: incident 42 resolved by alice\u2028x\r\n"


async def test_console_author_cannot_forge_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="alerts.console")
    alert = hostile_alert(
        title=FORGED,
        evidence=(EvidenceSnippet(author=FORGED, text=FORGED, url="https://x.example/p/1"),),
        mentions=(Contact(name=FORGED),),
    )
    await ConsoleNotifier("log", ConsoleChannelConfig()).send(alert)
    lines = caplog.records[-1].getMessage().splitlines()
    assert not [line for line in lines if line.startswith("2026-")], lines
    assert all(line.startswith(("[log]", "TIER 3 ALERT #42", "  ")) for line in lines), lines


def test_one_line_fields_elsewhere() -> None:
    alert = hostile_alert(
        title=FORGED,
        evidence=(EvidenceSnippet(author=FORGED, text="ok", url="https://x.example/p/1"),),
    )
    body = email.plain_body(alert)
    assert not [line for line in body.splitlines() if line.startswith("2026-")]
    data = webhook.payload(alert)
    assert "\n" not in str(data["summary"]) and "\n" not in data["alert"]["title"]  # type: ignore[index]
    assert "\n" not in data["alert"]["evidence"][0]["author"]  # type: ignore[index]
    assert "\n" not in slack.message(alert)["blocks"][0]["text"]["text"]


# -- 7. the report drops control and format characters -------------------------------------


def test_report_markdown_drops_terminal_escapes_and_bidi_overrides() -> None:
    text = "refund \x1bc\x1b]8;;https://evil.example\x1b\\click\x1b[2J\x1b[31mFAKE\u202eevil\u2066x\x85"
    out = report.md(text) + report.md("mallory\u202eevil\u202c")
    for bad in ("\x1b", "\u202e", "\u202c", "\u2066", "\x85"):
        assert bad not in out
    assert "FAKE" in out and "mallory" in out


# -- 8. exact checks and hard limits --------------------------------------------------------


def test_validators_refuse_a_trailing_line_break() -> None:
    assert escape.safe_url("https://x.example/p/1\n") is None
    assert escape.markdown_url("https://x.example/p/1\n") is None
    assert escape.chat_id("U0ONCALL\n") is None
    assert escape.phone("+86 138-0000-1111\n") is None
    assert escape.phone("+86 138-0000-1111") == "+8613800001111"


@pytest.mark.parametrize(
    "fn",
    [escape.plain, escape.line, escape.slack, escape.slack_line, escape.markdown, escape.html],
)
@pytest.mark.parametrize("limit", [1, 2, 10, 300, 1024])
@pytest.mark.parametrize(
    "text", ["Acme.com " * 200, "&<>\"'" * 400, "@all " * 300, "https://x.example " * 100]
)
def test_limits_hold_after_escaping(fn: Callable[[str, int], str], limit: int, text: str) -> None:
    assert len(fn(text, limit)) <= limit


async def test_pagerduty_summary_stays_within_1024(harness_of: Any) -> None:
    alert = hostile_alert(title="Acme.com " * 200)  # every dot becomes "[.]"
    config = PagerDutyChannelConfig.model_validate({"routing_key": PD_KEY})
    assert len(pagerduty.event(alert, config)["payload"]["summary"]) <= pagerduty.SUMMARY_MAX
    harness = await harness_of("pagerduty")
    await harness.notifier().send(alert)
    assert isinstance(harness, HttpHarness) and not harness.problems
