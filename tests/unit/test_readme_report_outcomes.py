"""The README's description of the incident report names every deadline outcome the
report gives (``alerts.workflow.report``: the SLA's, ``alerts.workflow.tasks.outcome``:
the tasks')."""

from __future__ import annotations

import re
from pathlib import Path

from alerts.workflow.models import TASK_CANCELLED, TASK_SKIPPED

README = Path(__file__).resolve().parents[2] / "README.md"
OUTCOMES = ("met", "missed", "overdue", "pending", TASK_SKIPPED, TASK_CANCELLED, "not needed")


def report_bullet() -> str:
    bullet = r"^- \*\*Report\*\*:(.*?)(?:\n\n|\n- |\n```)"
    found = re.search(bullet, README.read_text(encoding="utf-8"), re.S | re.M)
    assert found is not None, "the README describes the incident report"
    return " ".join(found.group(1).split())


def test_the_readme_names_every_deadline_outcome_of_the_report() -> None:
    bullet = report_bullet()
    missing = [o for o in OUTCOMES if not re.search(rf"\b{o}\b", bullet)]
    assert not missing, f"the README's report description leaves out {missing}: {bullet!r}"
