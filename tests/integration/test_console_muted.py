"""The incident console says why an incident's alerts are held (the API's ``muted``): on
its board card and in its detail, with a link to the inhibiting incident, and a silence's
end, author and reason (a person's words: inert text, isolated).

Before, the demo's Weibo incident (#2, inhibited while the tier-3 #1 is open) showed "no
deadline" and nothing else. Headless Chromium (the fixtures of ``test_console_browser``).
"""

from __future__ import annotations

import re
from datetime import time, timedelta
from typing import Any

import pytest

from alerts import silences
from alerts.config import Matchers, QuietHours
from api.runtime import Runtime
from core.clock import ManualClock
from core.db import unit_of_work
from tests.access_support import add_incident, make_signal, open_incident
from tests.integration import test_console_browser as browser
from tests.integration.test_console_browser import LiveServer
from tests.integration.test_console_review import _cards, _sign_in, _text, _wait, driver

live = browser.live  # the fixture: the app behind uvicorn on a free port
__all__ = ["driver", "live"]

REASON = '<img src=x onerror="window.__pwned=1"> \u202estorm over the datacenter'


async def _muted_world(runtime: Runtime, clock: ManualClock) -> tuple[int, int, int]:
    """A tier-3 incident of acme, a tier-2 one it inhibits, and a tier-2 one of beta that a
    silence mutes: their ids."""
    top = await open_incident(runtime, clock, tier=3, watch="acme")
    low = await open_incident(runtime, clock, tier=2, watch="acme")
    assert runtime.sessions is not None
    async with unit_of_work(runtime.sessions) as session:
        silences.create(
            session,
            matchers=Matchers(watch=["beta"]),
            ends_at=clock.now() + timedelta(hours=2),
            author="ann",
            reason=REASON,
            now=clock.now(),
        )
    hushed = await open_incident(runtime, clock, tier=2, watch="beta")
    return top, low, hushed


def _held(driver: Any, incident: int) -> dict[str, Any]:
    """The muted line of an incident's card: its text and its isolated parts."""
    found: dict[str, Any] = driver.execute_script(
        "const held = document.querySelector(`.card[data-incident='${arguments[0]}'] .held`);"
        "return held && {text: held.textContent,"
        " bdi: [...held.querySelectorAll('bdi')].map((b) => b.textContent)};",
        str(incident),
    )
    return found


@pytest.mark.browser
def test_the_board_and_the_detail_say_why_alerts_are_held(
    live: tuple[LiveServer, Runtime], clock: ManualClock, driver: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    server, runtime = live
    top, low, hushed = server.call(_muted_world(runtime, clock))
    _sign_in(driver, server)
    wait = _wait(driver)
    wait.until(lambda d: len(_cards(d)) == 3)

    inhibited = _held(driver, low)
    assert inhibited is not None, "the inhibited incident's card says nothing"
    assert inhibited["text"] == f"Muted while #{top} (tier 3) is open: alerts held, no deadline"
    silenced = _held(driver, hushed)
    assert silenced["text"] == (
        "Silenced until 2026-01-05 11:00:00Z (silence #1, by ann): alerts held, no deadline. "
        f"Reason: {REASON}"
    )
    assert silenced["bdi"] == ["ann", REASON]  # a person's words, isolated, shown as text
    assert _held(driver, top) is None  # nothing mutes the tier-3 incident
    assert driver.execute_script("return window.__pwned") is None
    assert driver.find_elements(By.CSS_SELECTOR, "#tiers img") == []

    driver.find_element(By.CSS_SELECTOR, f"button[data-incident='{low}']").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "detail-title"), f"#{low}"))
    assert _text(driver, "detail-muted") == (
        f"Muted while #{top} (tier 3) is open: alerts held, no deadline"
        " · since 2026-01-05 09:00:00Z"
    )
    # the link opens the incident that holds it back, which is not muted itself
    driver.find_element(By.ID, "muted-by").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "detail-title"), f"#{top}"))
    assert driver.find_elements(By.ID, "detail-muted") == []
    assert driver.switch_to.active_element.get_attribute("id") == "detail-title"

    driver.find_element(By.CSS_SELECTOR, f"button[data-incident='{hushed}']").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "detail-title"), f"#{hushed}"))
    assert "Reason: " + REASON in _text(driver, "detail-muted")
    assert driver.find_elements(By.ID, "muted-by") == []  # no incident to go to


@pytest.mark.browser
def test_an_alert_held_by_quiet_hours_says_until_when_and_keeps_its_deadline(
    live: tuple[LiveServer, Runtime], clock: ManualClock, driver: Any
) -> None:
    """An incident whose alert quiet hours hold showed a deadline hours away and nothing to
    say that nobody had been told yet: now its card and detail say until when, for whom."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    server, runtime = live
    quiet = QuietHours(start=time(8, 0), end=time(12, 0), timezone="UTC", tiers=[2])
    config = runtime.settings.alerts.model_copy(update={"quiet_hours": quiet})
    assert runtime.sessions is not None
    held = server.call(
        add_incident(runtime.sessions, make_signal(clock, tier=2, watch="acme"), config, clock)
    )
    _sign_in(driver, server)
    wait = _wait(driver)
    wait.until(lambda d: len(_cards(d)) == 1)

    line = (
        "Quiet hours until 2026-01-05 12:00:00Z: alerts for pr (pr-chat) held, sent then as "
        "one digest; the deadline counts from then"
    )
    found = _held(driver, held)
    assert found == {"text": line, "bdi": ["pr", "pr-chat"]}  # the names as isolated text
    # the deadline stands: the SLA counts from the end of the quiet hours (tier 2: 1 h)
    countdown = driver.find_element(By.CSS_SELECTOR, f".card[data-incident='{held}'] .countdown")
    assert countdown.get_attribute("data-due") == "2026-01-05T13:00:00Z"
    assert re.fullmatch(r"SLA \(responded\) [34]:\d\d:\d\d left", countdown.text)

    driver.find_element(By.CSS_SELECTOR, f"button[data-incident='{held}']").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "detail-title"), f"#{held}"))
    assert _text(driver, "detail-muted") == line + " · since 2026-01-05 09:00:00Z"
