"""On-call rotas: daily and weekly turns, handoff times, holiday overrides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from alerts.config import RotaConfig, RotaOverride
from alerts.oncall import on_call

CST = timezone(timedelta(hours=8))
START = datetime(2026, 1, 5, 9, 0, tzinfo=CST)  # a Monday, 09:00 in Beijing


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
