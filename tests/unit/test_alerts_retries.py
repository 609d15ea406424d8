"""``escalation.Retries``, the alerter's per-item backoff, stays bounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerts.escalation import RETRY_FIRST, RETRY_FORGET, RETRY_MAX, Retries

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_an_item_still_failing_keeps_its_backoff() -> None:
    retries = Retries()
    at = T0
    for _ in range(12):  # retried when due, failing each time: over an hour
        at = retries.failed(("escalate", 1), at)
    assert retries.failures(("escalate", 1)) == 12
    assert retries.waiting(("escalate", 1), at - timedelta(seconds=1))
    assert at - T0 > RETRY_FORGET


def test_an_item_no_one_retries_is_forgotten() -> None:
    """Its incident ended (in this process or another): it is never tried again."""
    retries = Retries()
    retries.failed(("check_slas", 1), T0)
    retries.failed(("check_slas", 2), T0 + RETRY_MAX)
    assert retries.held("check_slas", T0 + RETRY_MAX + RETRY_FIRST / 2) == {2}
    assert retries.held("check_slas", T0 + RETRY_FORGET) == set()
    assert retries.failures(("check_slas", 1)) == 0, "forgotten"
    assert retries.failures(("check_slas", 2)) == 1, "failed 10 min ago: kept"
    assert not retries.waiting(("release_silences", "silence 1"), T0 + RETRY_MAX + RETRY_FORGET)
    assert retries.remembered == 0


def test_a_success_forgets_the_item() -> None:
    retries = Retries()
    retries.failed(("remind_tasks", 7), T0)
    retries.succeeded(("remind_tasks", 7))
    assert retries.remembered == 0 and retries.failures(("remind_tasks", 7)) == 0


def test_at_most_limit_items_are_remembered() -> None:
    retries = Retries(limit=3)
    for item in range(5):
        retries.failed(("escalate", item), T0 + timedelta(seconds=item))
    retries.failed(("escalate", 2), T0 + timedelta(seconds=9))  # failed again: kept longest
    retries.failed(("escalate", 5), T0 + timedelta(seconds=10))
    assert retries.remembered == 3
    assert {i for i in range(6) if retries.failures(("escalate", i))} == {2, 4, 5}
    assert retries.failures(("escalate", 2)) == 2
