"""The report's one-line summaries of timeline events read as English, not Python."""

from __future__ import annotations

from alerts.workflow import report


def test_a_follow_up_queued_on_several_channels_names_them_plainly() -> None:
    # an ack or resolve follow-up is one event for every channel it goes to: the report
    # said "alert queued for ['legal-console', 'pr-console']" (a Python list)
    line = report.summarize(
        "alert_queued",
        {"reason": "ack", "channels": ["legal-console", "pr-console"], "actor": "rita"},
    )
    assert line == "ack follow-up queued for legal-console, pr-console"
    line = report.summarize("alert_queued", {"reason": "resolve", "channels": ["pr-console"]})
    assert line == "resolve follow-up queued for pr-console"


def test_an_alert_queued_on_one_channel_is_unchanged() -> None:
    line = report.summarize("alert_queued", {"channel": "pr-console", "reason": "tier"})
    assert line == "alert queued for pr-console"


def test_a_template_use_names_who_approved_the_text() -> None:
    used = {"name": "holding-en", "version": 2, "approved_by": "legal-anna"}
    line = report.summarize("template_used", used | {"approved_at": "2026-11-29T10:00:00+00:00"})
    assert line == "template 'holding-en' v2 (approved by legal-anna) used"
    # a use recorded before approvers were kept on the event reads as it did
    line = report.summarize("template_used", {"name": "holding-en", "version": 1})
    assert line == "template 'holding-en' v1 used"


def test_alerts_held_by_quiet_hours_say_until_when() -> None:
    line = report.summarize("held", {"until": "2026-11-30T09:00:00+08:00"})
    assert line == "alerts held by quiet hours until 2026-11-30T09:00:00+08:00"
