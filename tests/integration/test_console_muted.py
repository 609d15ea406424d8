"""The incident console says why an incident's alerts are held (the API's ``muted``): on
its board card and in its detail, with a link to the inhibiting incident, and a silence's
end, author and reason (a person's words: inert text, isolated).

Before, the demo's Weibo incident (#2, inhibited while the tier-3 #1 is open) showed "no
deadline" and nothing else. Headless Chromium (the fixtures of ``test_console_browser``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from alerts import silences
from alerts.config import Matchers
from api.runtime import Runtime
from core.clock import ManualClock
from core.db import unit_of_work
from tests.access_support import open_incident
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
