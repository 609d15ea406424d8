"""On-call rotas: daily and weekly turns, handoff times, holiday overrides."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from alerts.config import AlertsConfig, RotaConfig, RotaOverride
from alerts.oncall import on_call, team_on_call
from api.routers.alerting import OnCallOut

CST = timezone(timedelta(hours=8))
START = datetime(2026, 1, 5, 9, 0, tzinfo=CST)  # a Monday, 09:00 in Beijing

NY = ZoneInfo("America/New_York")  # 2026: EDT from Sun 8 March 02:00, EST from Sun 1 Nov 02:00
EST, EDT = timezone(timedelta(hours=-5)), timezone(timedelta(hours=-4))
NY_START = datetime(2026, 1, 5, 9, 0, tzinfo=EST)  # a Monday, 09:00 in New York (winter)
PEOPLE = ["ann", "bo", "cy"]


def ny(month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=NY)


def test_weekly_rotation_hands_over_at_the_start_time() -> None:
    rota = RotaConfig(rotation="weekly", start=START, people=["ann", "bo", "cy"])
    assert on_call(rota, START)[0] == "ann"
    assert on_call(rota, START + timedelta(days=6, hours=23, minutes=59))[0] == "ann"
    person, until, reason = on_call(rota, START + timedelta(weeks=1))
    assert (person, until, reason) == ("bo", START + timedelta(weeks=2), None)
    assert on_call(rota, START + timedelta(weeks=3))[0] == "ann"  # round again
    assert on_call(rota, START - timedelta(days=3))[0] == "ann"  # before the first turn


def test_daily_rotation_in_utc_terms() -> None:
    rota = RotaConfig(rotation="daily", start=START, people=["ann", "bo"])
    # 02:00 UTC on Jan 6 is 10:00 in Beijing: the second day's turn
    assert on_call(rota, datetime(2026, 1, 6, 2, 0, tzinfo=UTC))[0] == "bo"
    assert on_call(rota, datetime(2026, 1, 6, 0, 59, tzinfo=UTC))[0] == "ann"


def test_a_holiday_override_wins_and_ends() -> None:
    holiday = RotaOverride(
        start=datetime(2026, 2, 16, 0, 0, tzinfo=CST),
        end=datetime(2026, 2, 23, 0, 0, tzinfo=CST),
        person="cy",
        reason="Spring Festival",
    )
    rota = RotaConfig(rotation="weekly", start=START, people=["ann", "bo"], overrides=[holiday])
    inside = datetime(2026, 2, 18, 12, 0, tzinfo=CST)
    assert on_call(rota, inside) == ("cy", holiday.end, "Spring Festival")
    assert on_call(rota, holiday.end)[0] in {"ann", "bo"}
    # the turn before the holiday ends when the holiday starts
    before = holiday.start - timedelta(hours=1)
    assert on_call(rota, before)[1] == holiday.start


def test_without_a_timezone_the_handoff_keeps_the_start_offset() -> None:
    # unchanged: a -05:00 start hands off at 09:00 EST, which is 10:00 EDT in summer
    rota = RotaConfig(rotation="daily", start=NY_START, people=PEOPLE)
    assert rota.timezone is None
    assert on_call(rota, ny(3, 9, 9, 1)) == ("cy", datetime(2026, 3, 9, 10, 0, tzinfo=EDT), None)
    assert on_call(rota, ny(3, 9, 10, 1))[0] == "ann"
    assert on_call(rota, ny(3, 9, 10, 1))[1] == NY_START + timedelta(days=64)


@pytest.mark.parametrize(
    ("at", "person"),
    [
        # spring forward (Sun 8 March): 09:00 local every day, EST then EDT
        (ny(3, 7, 8, 59), "ann"),
        (ny(3, 7, 9, 1), "bo"),
        (ny(3, 8, 8, 59), "bo"),
        (ny(3, 8, 9, 1), "cy"),
        (ny(3, 9, 8, 59), "cy"),
        (ny(3, 9, 9, 1), "ann"),
        # fall back (Sun 1 November)
        (ny(10, 31, 8, 59), "bo"),
        (ny(10, 31, 9, 1), "cy"),
        (ny(11, 1, 8, 59), "cy"),
        (ny(11, 1, 9, 1), "ann"),
        (ny(11, 2, 8, 59), "ann"),
        (ny(11, 2, 9, 1), "bo"),
    ],
)
def test_a_daily_rota_in_new_york_follows_the_wall_clock_across_dst(
    at: datetime, person: str
) -> None:
    rota = RotaConfig(rotation="daily", start=NY_START, people=PEOPLE, timezone="America/New_York")
    who, until, reason = on_call(rota, at)
    assert (who, reason) == (person, None)
    handoff_day = at.date() + timedelta(days=1 if at.hour >= 9 else 0)
    assert until == datetime.combine(handoff_day, NY_START.time(), tzinfo=NY)
    assert until.utcoffset() == until.astimezone(NY).utcoffset()  # shown at the local offset


@pytest.mark.parametrize(
    ("at", "person", "until"),
    [
        # the week across spring forward is 167 h long, the one across fall back 169 h
        (ny(3, 2, 8, 59), "bo", datetime(2026, 3, 2, 9, 0, tzinfo=EST)),
        (ny(3, 2, 9, 1), "cy", datetime(2026, 3, 9, 9, 0, tzinfo=EDT)),
        (ny(3, 9, 8, 59), "cy", datetime(2026, 3, 9, 9, 0, tzinfo=EDT)),
        (ny(3, 9, 9, 1), "ann", datetime(2026, 3, 16, 9, 0, tzinfo=EDT)),
        (ny(10, 26, 8, 59), "cy", datetime(2026, 10, 26, 9, 0, tzinfo=EDT)),
        (ny(10, 26, 9, 1), "ann", datetime(2026, 11, 2, 9, 0, tzinfo=EST)),
        (ny(11, 2, 8, 59), "ann", datetime(2026, 11, 2, 9, 0, tzinfo=EST)),
        (ny(11, 2, 9, 1), "bo", datetime(2026, 11, 9, 9, 0, tzinfo=EST)),
    ],
)
def test_a_weekly_rota_in_new_york_hands_off_monday_0900_local_all_year(
    at: datetime, person: str, until: datetime
) -> None:
    rota = RotaConfig(rotation="weekly", start=NY_START, people=PEOPLE, timezone="America/New_York")
    assert on_call(rota, at) == (person, until, None)
    assert on_call(rota, at.astimezone(UTC)) == (person, until, None)  # any zone for `at`


def test_a_handoff_time_the_clocks_skip_is_read_with_the_offset_before_the_jump() -> None:
    # 02:30 does not exist on 8 March: the handoff is 02:30 EST = 07:30 UTC = 03:30 EDT
    start = datetime(2026, 3, 1, 2, 30, tzinfo=EST)
    rota = RotaConfig(rotation="daily", start=start, people=["ann", "bo"], timezone="US/Eastern")
    jump = datetime(2026, 3, 8, 3, 30, tzinfo=EDT)
    assert on_call(rota, ny(3, 7, 2, 29)) == ("bo", datetime(2026, 3, 7, 2, 30, tzinfo=EST), None)
    assert on_call(rota, jump - timedelta(minutes=1)) == ("ann", jump, None)
    assert on_call(rota, jump)[0] == "bo"
    # the next day is back to 02:30 local, now EDT
    assert on_call(rota, jump)[1] == datetime(2026, 3, 9, 2, 30, tzinfo=EDT)


def test_a_handoff_time_the_clocks_repeat_is_its_first_occurrence() -> None:
    # 01:30 happens twice on 1 November: the handoff is the first one (EDT), once
    start = datetime(2026, 10, 25, 1, 30, tzinfo=EDT)
    rota = RotaConfig(
        rotation="daily", start=start, people=["ann", "bo"], timezone="America/New_York"
    )
    first = datetime(2026, 11, 1, 1, 30, tzinfo=EDT)
    second = datetime(2026, 11, 1, 1, 30, tzinfo=EST)
    assert on_call(rota, first - timedelta(minutes=1)) == ("ann", first, None)
    assert on_call(rota, first) == ("bo", second + timedelta(days=1), None)
    assert on_call(rota, second)[0] == "bo"  # no second handoff an hour later
    assert on_call(rota, second + timedelta(days=1))[0] == "ann"


def test_overrides_still_win_on_a_zoned_rota() -> None:
    swap = RotaOverride(
        start=datetime(2026, 3, 8, 12, 0, tzinfo=EDT),
        end=datetime(2026, 3, 8, 18, 0, tzinfo=EDT),
        person="dee",
        reason="swap",
    )
    rota = RotaConfig(
        rotation="daily",
        start=NY_START,
        people=PEOPLE,
        overrides=[swap],
        timezone="America/New_York",
    )
    assert on_call(rota, ny(3, 8, 9, 1)) == ("cy", swap.start, None)
    assert on_call(rota, ny(3, 8, 13, 0)) == ("dee", swap.end, "swap")
    assert on_call(rota, swap.end) == ("cy", datetime(2026, 3, 9, 9, 0, tzinfo=EDT), None)


def test_get_oncall_shows_the_local_handoff_of_a_zoned_rota() -> None:
    config = AlertsConfig.model_validate(
        {
            "people": {name: {} for name in PEOPLE},
            "teams": {
                "pr": {
                    "channels": ["pr-console"],
                    "rota": {
                        "start": "2026-01-05T09:00:00-05:00",
                        "timezone": "America/New_York",
                        "people": PEOPLE,
                    },
                }
            },
            "routes": {1: ["pr"], 2: ["pr"], 3: ["pr"]},
        }
    )
    shown = OnCallOut(**vars(team_on_call(config, "pr", ny(3, 8, 9, 1)))).model_dump(mode="json")
    assert shown == {
        "team": "pr",
        "person": "cy",
        "until": "2026-03-09T09:00:00-04:00",
        "override_reason": None,
    }


def test_an_unknown_rota_timezone_is_refused_with_its_path() -> None:
    with pytest.raises(ValidationError) as info:
        AlertsConfig.model_validate(
            {
                "people": {"ann": {}},
                "teams": {
                    "pr": {
                        "channels": ["pr-console"],
                        "rota": {
                            "start": "2026-01-05T09:00:00-05:00",
                            "timezone": "America/New_Yrok",
                            "people": ["ann"],
                        },
                    }
                },
                "routes": {1: ["pr"], 2: ["pr"], 3: ["pr"]},
            }
        )
    assert "teams.pr.rota.timezone" in str(info.value)
    assert "unknown timezone 'America/New_Yrok'" in str(info.value)


def test_zones_resolve_without_the_systems_zone_files() -> None:
    """A slim container image has no /usr/share/zoneinfo: the zones come from the tzdata
    package (a dependency), or every rota and quiet hours with a timezone is refused."""
    zoneinfo.reset_tzpath(to=())
    ZoneInfo.clear_cache()
    try:
        rota = RotaConfig(
            rotation="daily",
            start=datetime(2026, 3, 1, 9, 0, tzinfo=timezone(timedelta(hours=-5))),
            timezone="America/New_York",
            people=["a", "b"],
        )
        assert on_call(rota, datetime(2026, 3, 9, 13, 30, tzinfo=UTC))[0] in {"a", "b"}
    finally:
        zoneinfo.reset_tzpath()
        ZoneInfo.clear_cache()


def test_a_start_not_written_in_the_rotas_timezone_is_refused() -> None:
    """09:00+08:00 with America/New_York would hand off at 20:00 in New York: refused,
    naming the local time that start is there."""
    with pytest.raises(
        ValidationError, match=r"not in America/New_York.*2026-01-04T20:00:00-05:00"
    ):
        RotaConfig(
            start=datetime(2026, 1, 5, 9, 0, tzinfo=timezone(timedelta(hours=8))),
            timezone="America/New_York",
            people=["a"],
        )
    summer = datetime(2026, 7, 6, 9, 0, tzinfo=timezone(timedelta(hours=-4)))  # EDT
    assert RotaConfig(start=summer, timezone="America/New_York", people=["a"]).start == summer
