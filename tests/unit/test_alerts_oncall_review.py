"""Who gets paged, reviewed: overlapping overrides, people named by an escalation step,
handoffs across DST in several zones, and the on-call answer vs a step's targets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from alerts.config import AlertsConfig, RotaConfig, RotaOverride, StepTargets
from alerts.oncall import on_call, team_on_call
from alerts.targets import step_targets


def utc(day: int, hour: int) -> datetime:
    return datetime(2026, 3, day, hour, 0, tzinfo=UTC)


def rota_with(*overrides: RotaOverride) -> RotaConfig:
    return RotaConfig(
        rotation="weekly", start=utc(2, 9), people=["ann", "bo"], overrides=list(overrides)
    )


def test_an_override_ends_when_an_earlier_listed_overlapping_one_takes_over() -> None:
    """The first listed override wins where two overlap: the one on call until 20:00 by
    its own end is replaced at 15:00, when the earlier-listed swap starts."""
    swap = RotaOverride(start=utc(4, 15), end=utc(4, 22), person="cy", reason="swap")
    holiday = RotaOverride(start=utc(4, 10), end=utc(4, 20), person="dee", reason="holiday")
    rota = rota_with(swap, holiday)
    assert on_call(rota, utc(4, 12)) == ("dee", swap.start, "holiday")
    assert on_call(rota, utc(4, 15)) == ("cy", swap.end, "swap")


def test_an_override_inside_a_longer_later_listed_one_cuts_it_short() -> None:
    short = RotaOverride(start=utc(4, 10), end=utc(4, 20), person="dee", reason="swap")
    long = RotaOverride(start=utc(4, 5), end=utc(4, 23), person="cy", reason="holiday")
    rota = rota_with(short, long)
    assert on_call(rota, utc(4, 7)) == ("cy", short.start, "holiday")
    assert on_call(rota, utc(4, 10)) == ("dee", short.end, "swap")
    assert on_call(rota, utc(4, 20)) == ("cy", long.end, "holiday")


def config(**changes: Any) -> AlertsConfig:
    data: dict[str, Any] = {
        "channels": {
            "pr-room": {"type": "console"},
            "legal-room": {"type": "console"},
            "ceo-pager": {"type": "console"},
        },
        "people": {"chen": {"name": "Chen Yu"}, "ceo": {"channels": ["ceo-pager"]}},
        "teams": {
            "pr": {"channels": ["pr-room"], "members": ["chen"]},
            "legal": {"channels": ["legal-room"]},
        },
        "routes": {1: ["pr"], 2: ["pr"], 3: ["pr"]},
    }
    data.update(changes)
    return AlertsConfig.model_validate(data)


def test_a_step_naming_a_person_without_channels_mentions_them_on_their_teams_channels() -> None:
    """README: "A person without channels is @-mentioned on their team's channels". A
    step ``notify: {people: [chen]}`` reached nobody at all."""
    cfg = config()
    targets, _ = step_targets(cfg, StepTargets(people=["chen", "ceo"]), ["legal"], utc(4, 12))
    assert set(targets) == {"pr-room", "ceo-pager"}
    assert [c.name for c in targets["pr-room"].mentions] == ["Chen Yu"]
    assert targets["pr-room"].teams == ["pr"]


def test_a_rota_counts_as_the_persons_team_for_a_step_naming_them() -> None:
    teams = {
        "pr": {"channels": ["pr-room"]},
        "legal": {
            "channels": ["legal-room"],
            "rota": {"start": "2026-01-05T09:00:00+00:00", "people": ["chen"]},
        },
    }
    targets, _ = step_targets(config(teams=teams), StepTargets(people=["chen"]), [], utc(4, 12))
    assert list(targets) == ["legal-room"]


def test_a_step_naming_a_person_nothing_can_reach_is_a_config_error() -> None:
    policies = {"p": {"steps": [{"after": "PT5M", "notify": {"people": ["ceo", "dana"]}}]}}
    with pytest.raises(ValidationError) as info:
        config(
            people={"chen": {}, "dana": {}, "ceo": {"channels": ["ceo-pager"]}},
            escalation_policies=policies,
        )
    assert (
        "escalation_policies.p.steps[0].notify.people: 'dana' has no channels and is in no "
        "team's members or rota"
    ) in str(info.value)


@pytest.mark.parametrize(
    ("zone", "spring", "fall"),
    [
        # 2026 transition days (local dates)
        ("Europe/Berlin", datetime(2026, 3, 29), datetime(2026, 10, 25)),
        ("America/New_York", datetime(2026, 3, 8), datetime(2026, 11, 1)),
        ("Australia/Sydney", datetime(2026, 10, 4), datetime(2026, 4, 5)),
    ],
)
@pytest.mark.parametrize(("hour", "minute"), [(2, 30), (1, 30)])
def test_one_handoff_a_day_across_dst_and_until_is_the_real_one(
    zone: str, spring: datetime, fall: datetime, hour: int, minute: int
) -> None:
    """Scanning every 10 minutes over the days around each change: the person changes
    exactly at ``until`` (not an hour off), once per local day."""
    tz = ZoneInfo(zone)
    start = datetime(2026, 1, 5, hour, minute, tzinfo=tz)
    start = datetime.fromisoformat(start.isoformat())  # a fixed offset, as config gives
    rota = RotaConfig(rotation="daily", start=start, people=["a", "b", "c"], timezone=zone)
    for day in (spring, fall):
        at = (day - timedelta(days=2)).replace(tzinfo=tz).astimezone(UTC)
        end = at + timedelta(days=4)
        handoffs: list[datetime] = []
        while at < end:
            person, until, _ = on_call(rota, at)
            assert at < until <= at + timedelta(hours=25)
            assert on_call(rota, until - timedelta(seconds=1))[0] == person
            assert on_call(rota, until)[0] != person
            if until not in handoffs:
                handoffs.append(until)
            at += timedelta(minutes=10)
        local_days = [h.astimezone(tz).date() for h in handoffs]
        assert len(local_days) == len(set(local_days)) == len(handoffs)
        assert all(b - a == timedelta(days=1) for a, b in pairwise(local_days))


def test_the_on_call_answer_and_the_steps_target_agree_at_a_handoff() -> None:
    rota = {
        "start": "2026-03-02T09:00:00+01:00",
        "timezone": "Europe/Berlin",
        "rotation": "daily",
        "people": ["ann", "bo"],
        "overrides": [
            {
                "start": "2026-03-29T09:00:00+02:00",
                "end": "2026-03-29T12:00:00+02:00",
                "person": "cy",
            }
        ],
    }
    cfg = config(
        channels={f"{p}-chat": {"type": "console"} for p in ("ann", "bo", "cy", "pr")},
        people={p: {"channels": [f"{p}-chat"]} for p in ("ann", "bo", "cy")},
        teams={"pr": {"channels": ["pr-chat"], "rota": rota}},
    )
    berlin = ZoneInfo("Europe/Berlin")
    for at in (
        datetime(2026, 3, 29, 8, 59, tzinfo=berlin),
        datetime(2026, 3, 29, 9, 0, tzinfo=berlin),
        datetime(2026, 3, 29, 12, 0, tzinfo=berlin),
        datetime(2026, 3, 30, 9, 0, tzinfo=berlin),
    ):
        shown = team_on_call(cfg, "pr", at).person
        targets, described = step_targets(cfg, "on_call", ["pr"], at)
        assert described == {"on_call": {"pr": shown}}
        assert list(targets) == [f"{shown}-chat"]
