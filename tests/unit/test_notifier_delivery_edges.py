"""What a message must be for its platform to take it, and to be read right: a drill inside
a digest with real alerts, DingTalk's actionCard and its button, an email's Message-ID on
a retry."""

from __future__ import annotations

from datetime import UTC, datetime

from alerts.channels import EmailChannelConfig
from alerts.messages import digest_message
from alerts.notifiers import dingtalk, email, slack, webhook
from alerts.notifiers.base import AlertMessage, Contact

OPENED = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def alert(**overrides: object) -> AlertMessage:
    data: dict[str, object] = {
        "incident_id": 1,
        "tier": 2,
        "title": "Acme: local spread",
        "explanation": "12 negative posts",
        "watch_id": "acme",
        "reason": "new",
        "opened_at": OPENED,
        "idempotency_key": "1:2:pr:alert",
    }
    data.update(overrides)
    return AlertMessage.model_validate(data)


def test_a_drill_merged_into_a_digest_with_a_real_alert_is_marked_as_a_drill() -> None:
    """A quarterly drill's alert and a real complaint's alert due on one channel at once
    (a rate limit, quiet hours) become one digest. The digest is not a drill as a whole,
    so its headline carries no [DRILL]; the drill's own line must, or the team reads the
    drill's fake product complaint as a real one (and the real one as part of the drill)."""
    real = alert(incident_id=1, title="Acme: local spread")
    drill = alert(
        incident_id=2, title="Acme: network-wide crisis", tier=3, drill=True,
        idempotency_key="2:3:pr:alert",
    )  # fmt: skip
    digest = digest_message(
        [real.model_dump(mode="json"), drill.model_dump(mode="json")], "rate limit", "digest:1,2"
    )
    assert not digest.drill
    items = {item.incident_id: item for item in digest.digest}
    assert "DRILL" not in items[1].title
    for rendered in (
        dingtalk.message(digest)["markdown"]["text"],
        str(slack.message(digest)["blocks"]),
        email.plain_body(digest),
    ):
        (line,) = [ln for ln in rendered.replace("\\n", "\n").split("\n") if "#2" in ln]
        assert "DRILL" in line, rendered
    hooked = webhook.payload(digest)["alert"]
    assert isinstance(hooked, dict)
    assert ["DRILL" in item["title"] for item in hooked["digest"]] == [False, True]


def test_a_dingtalk_action_card_is_sent_only_with_its_button() -> None:
    """DingTalk's actionCard needs ``singleTitle``/``singleURL`` (or ``btns``): a card
    without them is refused, a permanent error. With ``msgtype: actionCard`` that was
    every ack/resolve follow-up, every digest and, with ack links off (the default),
    every alert: they go as markdown (with their links in the text)."""
    cases = {
        "no ack link": alert(),
        "follow-up": alert(ack_url="https://cw.example/ack/t", action="acknowledge", actor="a"),
        "digest": digest_message(
            [alert().model_dump(mode="json"), alert(incident_id=2).model_dump(mode="json")],
            "rate limit",
            "digest:1,2",
        ),
    }
    for what, message in cases.items():
        body = dingtalk.message(message, "actionCard")
        if body["msgtype"] == "actionCard":
            card = body["actionCard"]
            assert card.get("singleURL") or card.get("btns"), what
        else:
            assert body["msgtype"] == "markdown", what
            assert body["markdown"]["text"], what
    plain = dingtalk.message(alert(ack_url="https://cw.example/ack/t"), "actionCard")
    assert plain["actionCard"]["singleURL"] == "https://cw.example/ack/t"


def test_a_dingtalk_alert_that_pings_someone_goes_as_markdown_even_as_an_action_card() -> None:
    """An actionCard has no ``at``: an escalation step's @-mention of the on-call person
    would ping nobody. Such an alert goes as markdown, the mention and the ack link in its
    text."""
    on_call = Contact(name="Li Lei", chat_ids={"dingtalk": "lilei01"})
    body = dingtalk.message(
        alert(ack_url="https://cw.example/ack/t", mentions=(on_call,)), "actionCard"
    )
    assert body["msgtype"] == "markdown"
    assert body["at"]["atUserIds"] == ["lilei01"]
    assert "@lilei01" in body["markdown"]["text"]
    assert "https://cw.example/ack/t" in body["markdown"]["text"]


def test_an_email_retried_after_a_lost_answer_keeps_its_message_id() -> None:
    """SMTP gives no idempotency: a timeout after the server took the message makes the
    outbox send it again. Every attempt of one delivery must carry the same Message-ID,
    so that mail servers and clients that drop a repeated Message-ID (Gmail does) show
    the alert once; different deliveries keep different ones."""
    config = EmailChannelConfig(
        host="smtp.acme.example", sender="alerts@acme.example", to=["legal@acme.example"]
    )
    first = alert(idempotency_key="1:2:legal-mail:alert")
    ids = [email.build_email(first, config, OPENED)["Message-ID"] for _ in range(2)]
    assert ids[0] == ids[1]
    other = email.build_email(alert(idempotency_key="1:2:legal-mail:escalation-1"), config, OPENED)
    assert other["Message-ID"] != ids[0]
    left = ids[0].strip("<>").partition("@")[0]
    assert left and ":" not in left and " " not in left  # a dot-atom (RFC 5322 msg-id)
