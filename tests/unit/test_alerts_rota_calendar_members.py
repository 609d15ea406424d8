"""A rota start at the edge of the calendar is refused (it made ``on_call`` raise
OverflowError: ``GET /oncall`` answered 500 and escalation steps failed), and
``check-config`` names a rota person who is not in the team's members."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from pydantic import ValidationError

from alerts.config import AlertsConfig, RotaConfig
from alerts.oncall import on_call, team_on_call
from api.checks import describe
from api.settings import load_settings

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


def _alerts(team: dict[str, Any]) -> dict[str, Any]:
    return {
        "channels": {"pr-console": {"type": "console"}},
        "people": {"alice": {}, "bob": {}, "carol": {}},
        "teams": {"pr": {"channels": ["pr-console"], **team}},
        "routes": {"teams": ["pr"]},
    }


@pytest.mark.parametrize(
    "rota",
    [
        {"start": "9999-12-30T09:00Z"},
        {"start": "9999-12-30T09:00Z", "rotation": "daily"},
        {"start": "9999-12-31T09:00-05:00", "timezone": "America/New_York"},
        {"start": "0001-01-01T00:30+01:00", "timezone": "Europe/Paris"},
    ],
)
def test_a_rota_start_at_the_edge_of_the_calendar_is_a_config_error_with_its_path(
    rota: dict[str, Any],
) -> None:
    with pytest.raises(ValidationError) as caught:
        AlertsConfig.model_validate(_alerts({"rota": {"people": ["alice"], **rota}}))
    text = str(caught.value)
    assert "teams.pr.rota.start" in text
    assert "too near the end of the calendar" in text


@pytest.mark.parametrize("rotation", ["daily", "weekly"])
@pytest.mark.parametrize(
    "zone", [None, "Pacific/Kiritimati", "Etc/GMT+12", "America/New_York", "Europe/Paris"]
)
def test_every_start_the_config_accepts_gives_an_on_call_answer(
    rotation: str, zone: str | None
) -> None:
    """``GET /oncall`` and the escalation steps call ``team_on_call`` with the time now:
    the latest and earliest starts accepted must give an answer, not an OverflowError."""
    period = timedelta(days=1 if rotation == "daily" else 7)
    edges = [
        datetime.max.replace(tzinfo=UTC) - period - timedelta(days=2),
        datetime.min.replace(tzinfo=UTC) + timedelta(days=2),
    ]
    checked = 0
    for edge in edges:
        for hours in range(-26, 27, 2):
            start = edge + timedelta(hours=hours)
            if zone is not None:
                start = start.astimezone(ZoneInfo(zone))
            try:
                rota = RotaConfig(rotation=rotation, start=start, people=["a", "b"], timezone=zone)
            except ValidationError:
                continue
            checked += 1
            for at in (NOW, start - timedelta(seconds=1), start, start + period / 2):
                person, until, _ = on_call(rota, at)
                assert person == "a" or at == NOW
                assert until > at
    assert checked > 0


def test_the_on_call_answer_of_a_rota_starting_at_the_latest_allowed_date() -> None:
    config = AlertsConfig.model_validate(
        _alerts({"rota": {"people": ["alice", "bob"], "start": "9999-12-22T00:00Z"}})
    )
    answer = team_on_call(config, "pr", NOW)
    assert answer.person == "alice"
    assert answer.until == datetime(9999, 12, 29, tzinfo=UTC)


def _describe(tmp_path: Path, team: dict[str, Any]) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"alerts": _alerts(team)}), encoding="utf-8")
    return describe(load_settings(path), path)


ROTA = {"start": "2026-01-05T09:00:00Z", "people": ["alice", "bob"]}
OVERRIDE = {
    "start": "2026-02-01T00:00:00Z",
    "end": "2026-02-02T00:00:00Z",
    "person": "carol",
    "reason": "swap",
}


def test_a_rota_person_outside_the_members_is_warned_about(tmp_path: Path) -> None:
    text = _describe(tmp_path, {"members": ["alice"], "rota": ROTA})
    warnings = [line for line in text.splitlines() if "not in its members" in line]
    assert len(warnings) == 1, text
    assert warnings[0].strip().startswith("warning: team pr: 'bob'")
    assert "alerts.teams.pr.rota.people" in warnings[0]


def test_an_override_person_outside_the_members_is_warned_about(tmp_path: Path) -> None:
    text = _describe(
        tmp_path, {"members": ["alice", "bob"], "rota": {**ROTA, "overrides": [OVERRIDE]}}
    )
    warnings = [line for line in text.splitlines() if "not in its members" in line]
    assert len(warnings) == 1, text
    assert "team pr: 'carol'" in warnings[0]
    assert "alerts.teams.pr.rota.overrides[0].person" in warnings[0]


@pytest.mark.parametrize(
    "team",
    [
        {"members": [], "rota": {**ROTA, "overrides": [OVERRIDE]}},  # members not tracked
        {"members": ["alice", "bob", "carol"], "rota": {**ROTA, "overrides": [OVERRIDE]}},
        {"members": ["alice"]},  # no rota
    ],
)
def test_no_membership_warning_when_members_cover_the_rota_or_are_not_tracked(
    tmp_path: Path, team: dict[str, Any]
) -> None:
    assert "not in its members" not in _describe(tmp_path, team)
