"""A digest keeps each incident's keys: its page (PagerDuty ``dedup_key``), its action and
its delivery's idempotency key. PagerDuty, should a digest ever reach it, gets one event
per incident under that incident's own key (checked against a fake with the Events API v2
dedup semantics)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from alerts.messages import digest_message
from alerts.notifiers.base import AlertMessage
from core.clock import ManualClock
from tests.notifier_fakes import PagerDutyHarness


def _payload(incident_id: int, *, page: int = 0, action: str = "trigger") -> dict[str, Any]:
    return AlertMessage(
        incident_id=incident_id,
        tier=2,
        title=f"Acme #{incident_id}: local spread",
        explanation="41 negative posts in 10 min",
        watch_id="acme",
        brand="Acme",
        reason="new" if action == "trigger" else f"{action}d by alice",
        opened_at=datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
        idempotency_key=f"{incident_id}:2:pd:alert-{page}-{action}",
        action=action,
        page=page,
    ).model_dump(mode="json")


@pytest.fixture
async def pd() -> AsyncIterator[PagerDutyHarness]:
    harness = PagerDutyHarness(ManualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC)))
    yield harness
    await harness.close()


def test_a_digest_item_keeps_its_page_action_and_keys() -> None:
    digest = digest_message(
        [_payload(1), _payload(2, page=1), _payload(3, action="resolve")], "why", "digest:1,2,3"
    )
    assert [(i.incident_id, i.page, i.action) for i in digest.digest] == [
        (1, 0, "trigger"),
        (2, 1, "trigger"),
        (3, 0, "resolve"),
    ]
    assert [i.dedup_key for i in digest.digest] == [
        "crisiswatch-incident-1",
        "crisiswatch-incident-2-1",
        "crisiswatch-incident-3",
    ]
    assert [i.idempotency_key for i in digest.digest] == [
        "1:2:pd:alert-0-trigger",
        "2:2:pd:alert-1-trigger",
        "3:2:pd:alert-0-resolve",
    ]
    assert digest.idempotency_key == "digest:1,2,3"


def test_a_digest_of_one_incident_page_keeps_that_page() -> None:
    digest = digest_message([_payload(4, page=2), _payload(4, page=2)], "why", "digest:7,8")
    assert digest.dedup_key == "crisiswatch-incident-4-2"


async def test_pagerduty_sends_a_digest_as_one_event_per_incident(pd: PagerDutyHarness) -> None:
    """Incident 2 was paged and acknowledged, then an upgrade reopened it (page 1);
    incident 3 is resolved. Sent as one trigger under ``crisiswatch-incident-1``, the
    reopened incident paged nobody, and incident 3's alert stayed open for good."""
    notifier = pd.notifier()
    await notifier.send(AlertMessage.model_validate(_payload(2)))
    await notifier.send(AlertMessage.model_validate(_payload(2, action="acknowledge")))
    await notifier.send(AlertMessage.model_validate(_payload(3)))
    assert pd.open_alerts() == {
        "crisiswatch-incident-2": "acknowledged",
        "crisiswatch-incident-3": "triggered",
    }
    digest = digest_message(
        [_payload(1), _payload(2, page=1), _payload(3, action="resolve")], "why", "digest:1,2,3"
    )
    await notifier.send(digest)
    assert pd.problems == []
    assert pd.pages[-2:] == ["crisiswatch-incident-1", "crisiswatch-incident-2-1"]
    assert pd.alerts["crisiswatch-incident-3"] == "resolved"
    trigger = next(b for b in pd.bodies if b["dedup_key"] == "crisiswatch-incident-2-1")
    assert trigger["payload"]["custom_details"]["incident_id"] == 2
    assert "Acme #2" in trigger["payload"]["summary"]
