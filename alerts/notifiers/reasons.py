"""Why an alert was sent, structured (``Reason``), so that each channel can say it in its
own language (``alerts.notifiers.i18n``).

The alerter builds one ``Reason`` where it queues a delivery and stores it in the outbox
payload (``AlertMessage.why``) next to its English text (``AlertMessage.reason``, which
``english`` gives and which stays what the webhook and PagerDuty carry). A payload stored
before reasons were structured has no ``why``: its English text is shown as is.

Codes and their English text:

* ``new``: "new"; ``upgrade``: "upgraded to tier 3 (was tier 1)";
* ``silence_ended``: "silence ended"; ``inhibition_ended``: "inhibition ended (incident 7
  resolved)" (or "... merged into incident 9");
* ``escalation``: "ESCALATION level 2: not acknowledged within 15 min"; ``reminder``:
  "REMINDER: still not acknowledged after 2.5 h"; ``sla_missed``: "SLA deadline of tier 3
  missed";
* ``task_due`` / ``task_overdue``: "TASK REMINDER: 'Publish a statement' is due in 20 min
  (owner: comms)" / "TASK OVERDUE: ... was due 5 min ago";
* ``acknowledged`` / ``resolved``: "acknowledged by alice"; ``superseded``: "superseded by a
  new page (tier 3)";
* ``digest_held`` / ``digest_rate``: "held, then sent together" / "more alerts than the
  channel's rate limit allows" (a digest's reason is "digest: " and that).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

ReasonCode = Literal[
    "new",
    "upgrade",
    "silence_ended",
    "inhibition_ended",
    "escalation",
    "reminder",
    "sla_missed",
    "task_due",
    "task_overdue",
    "acknowledged",
    "resolved",
    "superseded",
    "digest_held",
    "digest_rate",
]


def describe(delta: timedelta) -> str:
    """A duration as "12 min" (under two hours) or "2.5 h"."""
    minutes = round(delta.total_seconds() / 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes / 60:.1f} h"


class Reason(BaseModel):
    """One reason, with what its text names (only the fields its ``code`` uses are set)."""

    model_config = ConfigDict(frozen=True)

    code: ReasonCode
    tier: int | None = None
    """upgrade: the new tier; sla_missed, superseded: the incident's tier."""
    from_tier: int | None = None
    level: int | None = None
    """escalation: the step's level."""
    seconds: float | None = None
    """escalation, reminder: unacknowledged for; task_due: due in; task_overdue: overdue by."""
    incident: int | None = None
    """inhibition_ended: the incident whose end released this one."""
    status: str | None = None
    """inhibition_ended: how it ended (resolved, closed)."""
    merged_into: int | None = None
    """inhibition_ended: the incident it was merged into (it ended by a merge)."""
    title: str | None = None
    """task_due, task_overdue: the task's title."""
    role: str | None = None
    """task_due, task_overdue: the role that owns the task."""
    actor: str | None = None
    """acknowledged, resolved: who."""

    def duration(self) -> timedelta:
        return timedelta(seconds=self.seconds or 0)

    def english(self) -> str:
        """The English text (``AlertMessage.reason``)."""
        code = self.code
        if code == "upgrade":
            return f"upgraded to tier {self.tier} (was tier {self.from_tier})"
        if code == "inhibition_ended":
            how = f"merged into incident {self.merged_into}" if self.merged_into else self.status
            return f"inhibition ended (incident {self.incident} {how})"
        if code == "escalation":
            return f"ESCALATION level {self.level}: not acknowledged within {self._waited()}"
        if code == "reminder":
            return f"REMINDER: still not acknowledged after {self._waited()}"
        if code == "sla_missed":
            return f"SLA deadline of tier {self.tier} missed"
        if code in ("task_due", "task_overdue"):
            owner = f" (owner: {self.role})" if self.role else ""
            if code == "task_overdue":
                return f"TASK OVERDUE: {self.title!r} was due {self._waited()} ago{owner}"
            return f"TASK REMINDER: {self.title!r} is due in {self._waited()}{owner}"
        if code in ("acknowledged", "resolved"):
            return f"{code} by {self.actor}"
        if code == "superseded":
            return f"superseded by a new page (tier {self.tier})"
        if code in DIGEST_WHY:
            return DIGEST_WHY[code]
        return ENGLISH[code]

    def _waited(self) -> str:
        return describe(self.duration())


ENGLISH: dict[str, str] = {"new": "new", "silence_ended": "silence ended"}
DIGEST_WHY: dict[str, str] = {
    "digest_held": "held, then sent together",
    "digest_rate": "more alerts than the channel's rate limit allows",
}
