"""The link in an alert opens the incident console on its incident: ``/console/#incident=N``.

Before, the link was the JSON API's ``/incidents/N``, which a browser gets as 401 ("missing
API key"), and the console could not be opened on one incident. Now the console selects
the incident its URL names once the key is pasted and the board has loaded, says so
clearly when it does not exist or the key may not see it, writes the incident picked into
the URL (replaced: Back is not flooded) and follows the URL when it is edited.
Headless Chromium (the fixtures of ``test_console_browser``).
"""

from __future__ import annotations

from typing import Any

import pytest

from alerts.config import AlertsConfig
from api.runtime import Runtime
from core.clock import ManualClock
from tests.access_support import KEYS, open_incident
from tests.integration import test_console_browser as browser
from tests.integration.test_console_browser import SCOPED_KEY, LiveServer
from tests.integration.test_console_review import _cards, _sign_in, _text, _visible, _wait, driver

pytestmark = pytest.mark.browser
live = browser.live  # the fixture: the app behind uvicorn on a free port
__all__ = ["driver", "live"]


async def _seed(runtime: Runtime, clock: ManualClock) -> tuple[int, int, int]:
    """Two incidents of acme (tier 3 and 2) and one of a watch the scoped key may not see."""
    first = await open_incident(runtime, clock, tier=3)
    second = await open_incident(runtime, clock, tier=2)
    hidden = await open_incident(runtime, clock, tier=2, watch="gamma")
    return first, second, hidden


def _hash(driver: Any) -> str:
    return str(driver.execute_script("return location.hash"))


def _selected(driver: Any) -> list[str]:
    return list(
        driver.execute_script(
            "return [...document.querySelectorAll('button.card.selected')]"
            ".map(c => c.dataset.incident)"
        )
    )


def _enter_key(driver: Any, key: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    box = _wait(driver).until(ec.visibility_of_element_located((By.ID, "key-input")))
    box.send_keys(key)
    driver.find_element(By.ID, "key-submit").click()


def _asked(driver: Any) -> list[str]:
    return list(driver.execute_script("return window.asked"))


def _refreshed_twice(driver: Any) -> None:
    """Two whole refreshes ran: the second asked who is on call, which it does only after
    the first has ended (a refresh asked for while one runs is skipped)."""

    def twice(d: Any) -> bool:
        d.execute_script("document.getElementById('refresh').click()")
        return sum("/oncall" in url for url in _asked(d)) >= 2

    _wait(driver).until(twice)


def _shows(driver: Any, incident: int) -> None:
    """Waits until the detail shows ``incident``, its card selected."""
    _wait(driver).until(
        lambda d: (
            _visible(d, "detail")
            and _text(d, "detail-title").startswith(f"#{incident} ")
            and _selected(d) == [str(incident)]
        )
    )


def test_the_alert_link_opens_its_incident_once_the_key_is_given(
    live: tuple[LiveServer, Runtime], clock: ManualClock, driver: Any
) -> None:
    from selenium.webdriver.common.by import By

    server, runtime = live
    first, second, _ = server.call(_seed(runtime, clock))
    # the link an alert carries (alerts.incident_path's default under public_url)
    link = server.url + AlertsConfig().incident_path.format(id=second)
    assert link == f"{server.url}/console/#incident={second}"

    driver.get(link)
    _wait(driver).until(lambda d: "open incident #" + str(second) in _text(d, "message"))
    assert _text(driver, "message") == f"Paste an API key to open incident #{second}."
    assert not _visible(driver, "detail")
    _enter_key(driver, KEYS["responder"])
    _shows(driver, second)
    assert _hash(driver) == f"#incident={second}"
    assert KEYS["responder"] not in driver.current_url
    assert _text(driver, "message") == ""
    length = driver.execute_script("return history.length")

    # picking another incident writes it into the URL, replacing the entry
    driver.find_element(By.CSS_SELECTOR, f"button.card[data-incident='{first}']").click()
    _shows(driver, first)
    assert _hash(driver) == f"#incident={first}"
    assert driver.execute_script("return history.length") == length

    # the URL edited: the incident it names is shown
    driver.execute_script("location.hash = arguments[0]", f"#incident={second}")
    _shows(driver, second)

    # a reload (the key is in sessionStorage): straight to the incident the URL names
    driver.refresh()
    _shows(driver, second)
    assert set(_cards(driver)) >= {str(first), str(second)}


def test_an_unknown_or_hidden_incident_says_so(
    live: tuple[LiveServer, Runtime], clock: ManualClock, driver: Any
) -> None:
    server, runtime = live
    first, _, hidden = server.call(_seed(runtime, clock))

    # a key that may see acme and beta only: gamma's incident is refused (403)
    driver.get(f"{server.url}/console/#incident={hidden}")
    _enter_key(driver, SCOPED_KEY)
    _wait(driver).until(lambda d: "cannot be opened" in _text(d, "message"))
    said = _text(driver, "message")
    assert said.startswith(f"The link's incident #{hidden} cannot be opened: ")
    assert "not scoped" in said and "(HTTP 403)" in said
    assert driver.execute_script("return document.getElementById('message').className") == "error"
    assert not _visible(driver, "detail") and _selected(driver) == []

    # one that does not exist (a responder sees every watch: 404)
    driver.execute_script("document.getElementById('forget-key').click()")
    driver.execute_script("location.hash = '#incident=99999'")
    _wait(driver).until(lambda d: "open incident #99999" in _text(d, "message"))
    _enter_key(driver, KEYS["responder"])
    _wait(driver).until(lambda d: "#99999 cannot be opened" in _text(d, "message"))
    assert "does not exist" in _text(driver, "message")
    assert not _visible(driver, "detail") and _selected(driver) == []
    # the next refresh neither asks again nor replaces what was said
    driver.execute_script(
        "window.asked = []; window.realFetch = window.realFetch || window.fetch;"
        "window.fetch = (url, init) => { window.asked.push(String(url));"
        " return window.realFetch(url, init); }"
    )
    _refreshed_twice(driver)
    assert not [url for url in _asked(driver) if "/incidents/99999" in url]
    assert "#99999 cannot be opened" in _text(driver, "message")

    # a fragment that is no incident number: said, its words not echoed
    driver.execute_script("location.hash = '#incident=Your%20key%20expired'")
    _wait(driver).until(lambda d: "names no incident" in _text(d, "message"))
    assert "expired" not in _text(driver, "message")

    # and a good one after it still opens
    driver.execute_script("location.hash = arguments[0]", f"#incident={first}")
    _shows(driver, first)
    assert _text(driver, "message") == ""


def test_a_link_followed_while_signed_in_opens_it(
    live: tuple[LiveServer, Runtime], clock: ManualClock, driver: Any
) -> None:
    server, runtime = live
    first, second, _ = server.call(_seed(runtime, clock))
    _sign_in(driver, server)
    assert _hash(driver) == ""
    assert not _visible(driver, "detail")
    driver.get(f"{server.url}/console/#incident={first}")  # same page: a hashchange
    _shows(driver, first)
    driver.back()  # the entry the link added: nothing named, what is shown stays
    assert _hash(driver) == ""
    driver.forward()
    _shows(driver, first)
    # a link to the incident already shown changes nothing; another one is followed
    driver.get(f"{server.url}/console/#incident={second}")
    _shows(driver, second)
