"""The incident console, third review: right-to-left and bidi-control text from strangers,
and form controls a screen reader can name.

The bidi test drives headless Chromium (the fixtures of ``test_console_browser``); the
label test reads the page as served.
"""

from __future__ import annotations

import json
import re
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.runtime import Runtime
from core.clock import ManualClock
from core.events import Evidence
from tests.access_support import KEYS, key_headers, role_api
from tests.integration import test_console_browser as browser
from tests.integration.test_console_browser import LiveServer, tier2_incident
from tests.integration.test_console_review import (
    UNREACHABLE,
    _answer_with,
    _cards,
    _refresh,
    _seed,
    _sign_in,
    _text,
    _visible,
    _wait,
    driver,
)
from tests.integration.test_incident_detail_bounds import long_incident

live = browser.live  # the fixture: the app behind uvicorn on a free port
__all__ = ["driver", "live"]

# U+202E (right-to-left override) in a handle reverses everything after it on the line
# unless the handle is isolated: " · 12 followers · <time>" would read backwards.
SPOOF_AUTHOR = "\u202etroll"
ARABIC = "الهاتف احترق أثناء الشحن"  # an Arabic complaint: a right-to-left paragraph
CHINESE = "手机充电时起火了"


async def _bidi_incident(runtime: Runtime, clock: ManualClock) -> int:
    evidence = [
        Evidence(
            id="bluesky:rtl1",
            url="https://bsky.app/p/rtl1",
            text=ARABIC,
            author=SPOOF_AUTHOR,
            followers=12,
            created_at=clock.now(),
            label="negative",
        ),
        Evidence(
            id="bluesky:zh1",
            url="https://bsky.app/p/zh1",
            text=CHINESE,
            author="用户\u202e甲",
            followers=7,
            created_at=clock.now(),
            label="negative",
        ),
    ]
    return await tier2_incident(runtime, clock, "bidi", "40 negative posts", evidence)


@pytest.mark.browser
def test_right_to_left_text_and_bidi_controls_stay_in_their_place(
    live: tuple[LiveServer, Runtime], clock: ManualClock, driver: Any
) -> None:
    from selenium.webdriver.common.by import By

    server, runtime = live
    incident = server.call(_bidi_incident(runtime, clock))
    _sign_in(driver, server)
    wait = _wait(driver)
    card = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f"[data-incident='{incident}']"))
    card.click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#evidence .mention")) == 2)
    # each stranger's handle is a bidi isolate: its override ends with it, so the followers
    # and time after it read left to right; the text is shown as written
    found = driver.execute_script(
        """
        const out = [];
        for (const item of document.querySelectorAll('#evidence .evidence-item')) {
          const walker = document.createTreeWalker(item, NodeFilter.SHOW_TEXT);
          let node, author = null;
          while ((node = walker.nextNode())) {
            if (node.data.includes('\\u202e')) { author = node; break; }
          }
          const mention = item.querySelector('.mention');
          out.push({
            authorText: author && author.data,
            authorBidi: author && getComputedStyle(author.parentElement).unicodeBidi,
            mentionDirection: getComputedStyle(mention).direction,
            mentionBidi: getComputedStyle(mention).unicodeBidi,
            mentionText: mention.textContent,
          });
        }
        return out;
        """
    )
    by_text = {row["mentionText"]: row for row in found}
    assert set(by_text) == {ARABIC, CHINESE}
    for row in found:
        assert row["authorText"] in (SPOOF_AUTHOR, "用户\u202e甲")
        assert row["authorBidi"] == "isolate", row
    # the Arabic complaint is laid out right to left, the Chinese one left to right, each
    # isolated from what surrounds it
    assert by_text[ARABIC]["mentionDirection"] == "rtl"
    assert by_text[CHINESE]["mentionDirection"] == "ltr"
    assert by_text[ARABIC]["mentionBidi"] == "isolate"


class _Controls(HTMLParser):
    """The page's form controls and the ids its ``<label for>`` name."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[dict[str, str | None]] = []
        self.labelled: set[str] = set()
        self._in_label = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "label":
            self._in_label += 1
            if found.get("for"):
                self.labelled.add(str(found["for"]))
        if tag in ("input", "select", "textarea") and found.get("type") != "hidden":
            self.controls.append({**found, "_wrapped": "yes" if self._in_label else None})

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._in_label -= 1


async def test_every_form_control_of_the_page_has_an_accessible_name(
    tmp_path: Path, clock: ManualClock
) -> None:
    # a placeholder is not a name: a screen reader announces the note box and the template
    # picker as "edit text" and "combo box", and the placeholder is gone once typed in
    async with role_api(tmp_path, clock) as (client, _):
        page = (await client.get("/console/")).text
    parser = _Controls()
    parser.feed(page)
    assert parser.controls
    unnamed = [
        c.get("id")
        for c in parser.controls
        if not (
            c["_wrapped"]
            or (c.get("id") in parser.labelled)
            or (c.get("aria-label") or "").strip()
            or c.get("aria-labelledby")
        )
    ]
    assert unnamed == []
    assert not re.search(r"<pre id=\"rendered\"(?![^>]*dir=\"auto\")", page)


@pytest.mark.browser
def test_an_incident_that_fails_to_load_does_not_leave_another_one_actionable(
    live: tuple[LiveServer, Runtime], clock: ManualClock, driver: Any
) -> None:
    # Shown: #a. Picked: #b, whose request fails (the network blips). Before, #a stayed on
    # screen with its Acknowledge and template buttons live, acting on #b: a responder
    # acknowledged an incident they had never seen.
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    server, runtime = live
    a, b = server.call(_seed(runtime, clock))
    _sign_in(driver, server)
    wait = _wait(driver)
    wait.until(lambda d: len(_cards(d)) == 2)
    driver.find_element(By.CSS_SELECTOR, f"button[data-incident='{a}']").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "detail-title"), f"#{a}"))
    _answer_with(driver, f"String(url).includes('/incidents/{b}')", UNREACHABLE)
    driver.find_element(By.CSS_SELECTOR, f"button[data-incident='{b}']").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "message"), "could not be reached"))
    assert not _visible(driver, "detail")  # nothing shown that the buttons do not act on
    driver.execute_script("window.fetch = window.realFetch")
    driver.find_element(By.CSS_SELECTOR, f"button[data-incident='{b}']").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "detail-title"), f"#{b}"))
    assert _visible(driver, "detail")


@pytest.mark.browser
def test_forget_key_during_a_refresh_stays_signed_out_quietly(
    live: tuple[LiveServer, Runtime], clock: ManualClock, driver: Any
) -> None:
    # "Forget key" while a refresh was in flight: its next request went out as
    # "Bearer null", and the 401 replaced "Key forgotten." with "The key was refused …";
    # an answer arriving after the sign-out drew the board again
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server, runtime = live
    server.call(_seed(runtime, clock))
    _sign_in(driver, server)
    wait = _wait(driver)
    wait.until(lambda d: len(_cards(d)) == 2)
    driver.execute_script(
        "window.sent = []; const f = window.fetch; window.fetch = (url, init) => {"
        " window.sent.push(init.headers.Authorization);"
        " return new Promise((ok) => setTimeout(ok, 250)).then(() => f(url, init)); }"
    )
    _refresh(driver)
    driver.find_element(By.ID, "forget-key").click()
    time.sleep(1.0)  # every request the refresh had left would have been answered by now
    assert _text(driver, "message") == "Key forgotten."
    assert _cards(driver) == []
    assert _visible(driver, "key-form")
    assert "Bearer null" not in driver.execute_script("return window.sent")

    # a key pasted while the old session's refresh is still under way loads at once (not
    # on the timer, 30 s later)
    def paste_key() -> None:
        driver.find_element(By.ID, "key-input").send_keys(KEYS["responder"])
        driver.find_element(By.ID, "key-submit").click()

    paste_key()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#oncall li"))  # its refresh ended
    _refresh(driver)
    driver.find_element(By.ID, "forget-key").click()
    paste_key()
    WebDriverWait(driver, 8, poll_frequency=0.1).until(lambda d: len(_cards(d)) == 2)
    assert _text(driver, "message") == ""


@pytest.mark.browser
def test_a_long_timeline_shows_its_newest_events_first_and_the_rest_on_demand(
    live: tuple[LiveServer, Runtime], clock: ManualClock, driver: Any
) -> None:
    # a days-long tier-3 incident: thousands of events, all drawn (and redrawn on every
    # change) in one list the responder had to scroll to the end of for the latest
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec

    server, runtime = live
    (incident,) = server.call(_seed(runtime, clock, 1))
    body = httpx.get(f"{server.url}/incidents/{incident}", headers=key_headers("viewer")).json()
    at = body["timeline"][-1]["at"]
    body["timeline"] += [
        {"at": at, "kind": "note", "actor": "ann", "detail": {"text": f"note {i}"}}
        for i in range(1500)
    ]
    total = len(body["timeline"])
    reply = json.dumps(json.dumps(body))
    _sign_in(driver, server)
    wait = _wait(driver)
    _answer_with(
        driver,
        f"String(url).endsWith('/incidents/{incident}')",
        f"Promise.resolve(new Response({reply}, {{status: 200}}))",
    )
    wait.until(lambda d: len(_cards(d)) == 1)
    driver.find_element(By.CSS_SELECTOR, f"button[data-incident='{incident}']").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "detail-title"), f"#{incident}"))
    shown = driver.find_elements(By.CSS_SELECTOR, "#timeline li.event")
    assert len(shown) == 100
    assert shown[-1].text.endswith("text: note 1499")
    more = driver.find_element(By.ID, "timeline-earlier")
    assert more.text == f"Show the {total - 100} earlier event(s)"
    more.send_keys(Keys.ENTER)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#timeline li.event")) == total)


@pytest.mark.browser
def test_a_long_incident_shows_its_earlier_events_from_the_timeline_pages(
    live: tuple[LiveServer, Runtime], clock: ManualClock, driver: Any
) -> None:
    # the incident API sends the newest 100 events (and how many there are): the earlier
    # ones come from the paged timeline, 500 a click, and stay whole when new ones come;
    # the evidence and the deliveries say how many earlier ones are not shown
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    server, runtime = live
    incident = server.call(long_incident(runtime, clock, events=650))
    detail = httpx.get(f"{server.url}/incidents/{incident}", headers=key_headers("viewer")).json()
    total = detail["timeline_total"]
    _sign_in(driver, server)
    wait = _wait(driver)
    card = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f"[data-incident='{incident}']"))
    card.click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "detail-title"), f"#{incident}"))

    def shown() -> list[Any]:
        return list(driver.find_elements(By.CSS_SELECTOR, "#timeline li.event"))

    assert len(shown()) == 100
    assert shown()[-1].text.startswith("alert_delivered")
    more = driver.find_element(By.ID, "timeline-earlier")
    assert more.text == f"Show 500 of the {total - 100} earlier events"
    more.click()
    wait.until(lambda d: len(shown()) == 600)
    more = driver.find_element(By.ID, "timeline-earlier")
    assert more.text == f"Show the {total - 600} earlier event(s)"
    more.click()
    wait.until(lambda d: len(shown()) == total)
    assert not driver.find_elements(By.ID, "timeline-earlier")
    assert shown()[0].text.startswith("opened")
    # new events: the list stays whole, the newest last
    for text in ("first new note", "second new note"):
        r = httpx.post(
            f"{server.url}/incidents/{incident}/notes",
            headers=key_headers("responder"),
            json={"text": text},
        )
        assert r.status_code == 201, r.text
    _refresh(driver)
    wait.until(lambda d: len(shown()) == total + 2)
    assert shown()[-1].text.endswith("text: second new note")
    assert not driver.find_elements(By.ID, "timeline-earlier")

    mentions, sent = detail["evidence_total"], detail["deliveries_total"]
    assert f"the newest 100 of {mentions}" in _text(driver, "mix")
    assert f"{mentions - 100} earlier mention(s) not shown" in _text(driver, "evidence")
    assert f"{sent - 100} earlier deliveries not shown" in _text(driver, "deliveries")


@pytest.mark.browser
def test_a_key_pasted_with_a_stray_character_is_refused_at_once(
    live: tuple[LiveServer, Runtime], driver: Any
) -> None:
    # a zero-width space (copied from a chat) or a full-width letter (a Chinese input
    # method) cannot go in a header: fetch threw, and the page said "the API server could
    # not be reached" and retried every 30 s, for a key that was simply mistyped
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    server, _ = live
    driver.get(server.url + "/console/")
    wait = _wait(driver)
    for bad in (KEYS["responder"] + "\u200b", "ｒｅｓｐｏｎｄｅｒ-key-0123456789abcdef"):
        box = wait.until(ec.visibility_of_element_located((By.ID, "key-input")))
        driver.execute_script("arguments[0].value = arguments[1]", box, bad)
        driver.find_element(By.ID, "key-submit").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "message"), "cannot be part of"))
        assert "could not be reached" not in _text(driver, "message")
        assert _visible(driver, "key-form")
        assert driver.execute_script("return sessionStorage.length") == 0
