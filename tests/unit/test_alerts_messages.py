"""``alerts.messages``: what one outbox delivery sends."""

from __future__ import annotations

from datetime import UTC, datetime

from alerts.messages import digest_message
from alerts.notifiers.base import AlertMessage, Contact

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _payload(incident_id: int, *mentions: Contact) -> dict[str, object]:
    return AlertMessage(
        incident_id=incident_id,
        tier=2,
        title=f"incident {incident_id}",
        explanation="e",
        watch_id="acme",
        reason="ESCALATION level 1",
        opened_at=AT,
        idempotency_key=f"{incident_id}:2:pr:escalation-1",
        mentions=mentions,
    ).model_dump(mode="json")


def test_a_digest_that_mentions_someone_keeps_its_own_idempotency_key() -> None:
    # Receivers dedupe on the key (the email Message-ID, the webhook's header): a digest
    # keyed by the mentioned person's JSON made every later digest mentioning them (the
    # same on-call person, all night) a duplicate of the first, dropped as such.
    lilei = Contact(name="Li Lei", chat_ids={"slack": "U0ONCALL"})
    first = digest_message([_payload(1, lilei), _payload(2, lilei)], "why", "digest:1,2")
    second = digest_message([_payload(3, lilei), _payload(4, lilei)], "why", "digest:3,4")
    assert (first.idempotency_key, second.idempotency_key) == ("digest:1,2", "digest:3,4")
    assert [c.name for c in first.mentions] == ["Li Lei"]
