"""The review workflow of a template version, as data.

``draft`` -> (submit) -> ``in_review`` -> (approve) -> ``approved`` -> (retire) -> ``retired``;
``reject`` sends a version in review back to ``draft``. Only approved versions can be used;
approving a version retires the template's previously approved one. Editing a draft changes
it in place; editing an approved or retired version makes a new draft (the approved text
stays in use until the new one is approved); a version in review cannot be edited.
"""

from __future__ import annotations

from typing import Final

from alerts.templates.models import APPROVED, DRAFT, IN_REVIEW, RETIRED

# action -> (statuses it starts from, the status it leads to)
TRANSITIONS: Final[dict[str, tuple[frozenset[str], str]]] = {
    "submit": (frozenset({DRAFT}), IN_REVIEW),
    "approve": (frozenset({IN_REVIEW}), APPROVED),
    "reject": (frozenset({IN_REVIEW}), DRAFT),
    "retire": (frozenset({APPROVED}), RETIRED),
}
EDIT_IN_PLACE: Final = frozenset({DRAFT})
EDIT_AS_NEW_DRAFT: Final = frozenset({APPROVED, RETIRED})


class TransitionRefused(ValueError):
    """The version's status does not allow the action (the API answers 409)."""


def next_status(action: str, current: str, number: int) -> str:
    sources, target = TRANSITIONS[action]
    if current not in sources:
        allowed = " or ".join(sorted(sources))
        raise TransitionRefused(
            f"cannot {action} version {number}: it is {current}, {action} needs {allowed}"
        )
    return target
