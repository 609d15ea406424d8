"""The incident console in headless Chromium against a real uvicorn server.

On-call staff paste a key, see the open incidents by tier with their deadlines counting
down, open one (timeline, evidence: hostile mention text stays inert text), acknowledge it
and render an approved template. Needs Debian's ``chromium`` and ``chromium-driver``
(``/usr/bin/chromium``, ``/usr/bin/chromedriver``) and ``selenium``; without them the test
fails, unless ``CRISISWATCH_SKIP_BROWSER=1``. ``CRISISWATCH_CONSOLE_SCREENSHOT=path.png``
saves a screenshot of the console.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn

from alerts.config import AlertsConfig
from alerts.incidents import apply_signal
from api.app import create_app
from api.runtime import Role, Runtime
from api.settings import ApiConfig, ApiKeyConfig, Settings
from core.clock import ManualClock
from core.db import unit_of_work
from core.events import Evidence, HeatFeatures, Signal, WatchMatch
from core.settings import DatabaseConfig
from tests.access_support import KEYS, key_headers, make_template, open_incident
from tests.fakes import FakeClassifier

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CRISISWATCH_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CRISISWATCH_CHROMEDRIVER", "/usr/bin/chromedriver")
SCOPED_KEY = "acme-and-beta-key-0123456789"  # a responder scoped to two watches
HOSTILE = '<img src=x onerror="window.__pwned=1"> @all <script>window.__pwned=2</script>'
HOSTILE_WHY = '<b onmouseover="window.__pwned=3">40</b> negative posts @everyone'
WAIT_S = 30
T = TypeVar("T")


def _need_browser() -> None:
    problems = [f"{path} is missing" for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        problems.append("the selenium package is not installed (pip install '.[dev]')")
    if not problems:
        return
    message = (
        "the incident console test needs headless Chromium: "
        + "; ".join(problems)
        + ". Install it with 'apt-get install -y chromium chromium-driver', "
        "or set CRISISWATCH_SKIP_BROWSER=1 to skip this test."
    )
    if os.environ.get("CRISISWATCH_SKIP_BROWSER") == "1":
        pytest.skip(message)
    pytest.fail(message)


class LiveServer:
    """uvicorn serving an app on a free port, its event loop in a thread of its own."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", ws="none", lifespan="on")
        self.server = uvicorn.Server(config)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="console-server", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.serve(sockets=[self.sock]))
        except BaseException as exc:
            self.error = exc
        finally:
            self.loop.close()

    def start(self) -> None:
        self.thread.start()
        ready = threading.Event()
        while not self.server.started and self.thread.is_alive():
            ready.wait(0.05)
        if not self.server.started:
            raise RuntimeError(f"the console server did not start: {self.error!r}")

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the server's loop (where the runtime's engine lives)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=WAIT_S)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(WAIT_S)
        self.sock.close()


@pytest.fixture
def live(tmp_path: Path, clock: ManualClock) -> Iterator[tuple[LiveServer, Runtime]]:
    _need_browser()
    settings = Settings(
        database=DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'console.db'}"),
        api=ApiConfig(
            keys=[
                *(ApiKeyConfig(name=r, key=k, role=r) for r, k in KEYS.items()),
                ApiKeyConfig(
                    name="acme-beta", key=SCOPED_KEY, role="responder", watches=["acme", "beta"]
                ),
            ]
        ),
        alerts=AlertsConfig.model_validate(
            {
                "channels": {"pr-chat": {"type": "console"}, "legal-chat": {"type": "console"}},
                "people": {"ann": {}, "bo": {}},
                "teams": {
                    "pr": {
                        "channels": ["pr-chat"],
                        "rota": {"start": "2026-01-01T09:00:00Z", "people": ["ann", "bo"]},
                    },
                    "legal": {"channels": ["legal-chat"]},  # no rota
                },
                # every alert reaches PR; tier 3 legal as well
                "routes": {
                    "teams": ["pr"],
                    "routes": [{"match": {"tier": [3]}, "teams": ["pr", "legal"]}],
                },
            }
        ),
    )
    runtime = Runtime(
        settings,
        roles=frozenset({Role.API}),
        clock=clock,
        classifier=FakeClassifier(),
        migrate=True,
    )
    server = LiveServer(create_app(runtime))
    server.start()
    try:
        yield server, runtime
    finally:
        server.stop()
    assert server.error is None, server.error


async def tier2_incident(
    runtime: Runtime, clock: ManualClock, name: str, explanation: str, evidence: list[Evidence]
) -> int:
    """A tier-2 incident of acme's story ``name`` (40 posts, 80 % negative): its id."""
    signal = Signal(
        id=f"acme:{name}#1",
        story_id=f"acme:{name}",
        story_root=f"bluesky:{name}",
        watch=WatchMatch(id="acme", brand="Acme"),
        tier=2,
        previous_tier=0,
        spread=2,
        heat=HeatFeatures(
            mentions=40,
            mentions_window=30,
            window_minutes=10,
            unique_authors=25,
            reach=50_000,
            negative_share=0.8,
        ),
        explanation=explanation,
        evidence=tuple(evidence),
        at=clock.now(),
    )
    assert runtime.sessions is not None
    async with unit_of_work(runtime.sessions) as session:
        incident = await apply_signal(session, signal, runtime.settings.alerts, clock)
        assert incident is not None
        return incident.id


async def _hostile_incident(runtime: Runtime, clock: ManualClock) -> int:
    evidence = [
        Evidence(
            id="bluesky:m1",
            url="javascript:window.__pwned=4",
            text=HOSTILE,
            author="<i>troll</i>",
            followers=12,
            created_at=clock.now(),
            label="negative",
        ),
        Evidence(
            id="bluesky:m2",
            url="https://bsky.app/p/2",
            text="the X2 phone caught fire",
            author="ann",
            followers=5000,
            created_at=clock.now(),
            label="negative",
        ),
    ]
    return await tier2_incident(runtime, clock, "hostile", HOSTILE_WHY, evidence)


async def _seed(runtime: Runtime, clock: ManualClock) -> dict[str, int]:
    ids = {"tier1": await open_incident(runtime, clock, tier=1, watch="beta")}
    clock.advance(3 * 3600)  # the tier-1 SLA (2 h) is now an hour overdue
    await asyncio.sleep(0)
    ids["tier2"] = await _hostile_incident(runtime, clock)
    ids["tier3"] = await open_incident(runtime, clock, tier=3)
    ids["drill"] = await open_incident(runtime, clock, tier=3, drill=True)
    ids["approved"] = await make_template(runtime, clock, until="approved", tiers=(1, 3))
    ids["draft"] = await make_template(runtime, clock, until="draft", tiers=(1, 3))
    clock.advance(5 * 60)  # tier 3 (10 min) has 5 min left, tier 2 (1 h) 55 min
    return ids


def _chrome() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--no-first-run", "--disable-extensions"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


def hold_requests(driver: Any, matches: str) -> None:
    """The page's requests whose ``url`` the JS expression ``matches`` wait until
    ``release_requests`` (a slow server, so a race shows every time); ``held`` counts them."""
    driver.execute_script(
        "window.realFetch = window.realFetch || window.fetch; window.held = [];"
        "window.fetch = (url, init) => (" + matches + ")"
        " ? new Promise((ok) => window.held.push(ok)).then(() => window.realFetch(url, init))"
        " : window.realFetch(url, init);"
    )


def held(driver: Any) -> int:
    """Requests ``hold_requests`` holds now."""
    return int(driver.execute_script("return (window.held || []).length"))


def release_requests(driver: Any) -> None:
    """The held requests go on to the server; later ones are no longer held."""
    driver.execute_script(
        "window.fetch = window.realFetch; (window.held || []).splice(0).forEach((ok) => ok());"
    )


def test_console_end_to_end(live: tuple[LiveServer, Runtime], clock: ManualClock) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    server, runtime = live
    ids = server.call(_seed(runtime, clock))
    driver = _chrome()
    try:
        wait = WebDriverWait(driver, WAIT_S, poll_frequency=0.1)

        def text(css: str) -> str:
            # the console re-renders a panel when a refresh lands: read the element anew
            for _ in range(50):
                try:
                    return str(driver.find_element(By.CSS_SELECTOR, css).text)
                except StaleElementReferenceException:
                    time.sleep(0.02)
            return str(driver.find_element(By.CSS_SELECTOR, css).text)

        def attrs(css: str, name: str) -> list[str | None]:
            return [e.get_attribute(name) for e in driver.find_elements(By.CSS_SELECTOR, css)]

        def enter_key(key: str) -> None:
            box = wait.until(ec.visibility_of_element_located((By.ID, "key-input")))
            box.send_keys(key)
            driver.find_element(By.ID, "key-submit").click()

        driver.get(server.url + "/console")
        assert driver.current_url == server.url + "/console/"

        # a wrong key is refused with the server's reason and the form comes back
        enter_key("not-a-key-at-all-0123456789")
        wait.until(ec.text_to_be_present_in_element((By.ID, "message"), "unknown API key"))
        assert driver.execute_script("return sessionStorage.length") == 0

        # a viewer sees the board but may not acknowledge: the API's 403 is shown, and
        # stays when the incident's template suggestions arrive after it (held until then)
        enter_key(KEYS["viewer"])
        hold_requests(driver, "String(url).includes('template-suggestions')")
        card = (By.CSS_SELECTOR, f"button[data-incident='{ids['tier3']}']")
        wait.until(ec.element_to_be_clickable(card)).click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "detail-title"), f"#{ids['tier3']}"))
        wait.until(lambda d: held(d) >= 1)  # the suggestions were asked for
        driver.find_element(By.ID, "ack").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "message"), "'responder' role"))
        release_requests(driver)
        wait.until(lambda d: d.find_element(By.ID, "template-select").text.count("\n") >= 1)
        assert "'responder' role" in text("#message")
        assert "error" in str(driver.find_element(By.ID, "message").get_attribute("class"))
        assert text("#detail-status") == "open"
        driver.find_element(By.ID, "forget-key").click()
        assert driver.execute_script("return sessionStorage.length") == 0
        assert not driver.find_element(By.ID, "detail").is_displayed()

        enter_key(KEYS["responder"])
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "section.tier")))
        assert driver.execute_script("return sessionStorage.length") == 1
        assert KEYS["responder"] not in driver.current_url
        # real incidents by tier, highest first; the drill apart, after them
        assert attrs("section.tier", "data-tier") == ["3", "2", "1", "3"]
        assert attrs("section.tier", "data-drill") == ["false", "false", "false", "true"]
        assert "DRILL" in text(f"button[data-incident='{ids['drill']}']")

        def countdown(tier: int) -> str:
            return text(f"section.tier-{tier}:not(.drill) .countdown")

        assert re.fullmatch(r"SLA \(acknowledged\) 0:0[0-5]:\d\d left", countdown(3)), countdown(3)
        assert re.fullmatch(r"SLA \(responded\) 0:5[0-5]:\d\d left", countdown(2)), countdown(2)
        assert re.fullmatch(r"SLA \(responded\) overdue by 1:0[5-9]:\d\d", countdown(1))
        assert "overdue" in str(
            driver.find_element(By.CSS_SELECTOR, "section.tier-1 .countdown").get_attribute("class")
        )
        first = countdown(3)
        wait.until(lambda d: countdown(3) != first)  # it counts down
        assert countdown(3) < first

        # who is on call: every team on the board; for an incident, its watch and tier's
        handoff = r"until \d{4}-\d\d-\d\d 09:00:00Z"
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#oncall li[data-team]")))
        assert attrs("#oncall li", "data-team") == ["legal", "pr"]
        assert text("#oncall li[data-team='legal']") == "legal: no rota"
        assert re.fullmatch(r"pr: (ann|bo) " + handoff, text("#oncall li[data-team='pr']"))
        driver.find_element(By.CSS_SELECTOR, f"button[data-incident='{ids['tier3']}']").click()
        # (the URL still names the incident the viewer picked: the new key's first refresh
        # opens it too, and may draw the detail again just after the click: "…" meanwhile)
        tier3_on_call = r"legal: no rota; pr: (ann|bo) " + handoff
        wait.until(lambda d: re.fullmatch(tier3_on_call, text("#detail-oncall")))

        # open the tier-2 incident: facts, evidence (hostile text inert), timeline
        driver.find_element(By.CSS_SELECTOR, f"button[data-incident='{ids['tier2']}']").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "detail-title"), f"#{ids['tier2']}"))
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#evidence .mention")))
        wait.until(ec.text_to_be_present_in_element((By.ID, "detail-oncall"), "pr: "))
        assert re.fullmatch(r"pr: (ann|bo) " + handoff, text("#detail-oncall"))  # not legal
        mentions = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#evidence .mention")]
        assert HOSTILE in mentions
        assert "the X2 phone caught fire" in mentions
        assert HOSTILE_WHY in text("#facts")
        assert "<i>troll</i>" in text("#evidence")
        assert "(2 negative)" in text("#mix")
        inserted = driver.find_elements(
            By.CSS_SELECTOR, "#detail img, #detail script, #detail b, #detail i, main img"
        )
        assert inserted == []
        assert attrs("#evidence a", "href") == [
            "https://bsky.app/p/2"
        ]  # the javascript: URL is not a link
        assert driver.execute_script("return window.__pwned === undefined")
        assert "opened" in text("#timeline")
        assert text("#detail-status") == "open"

        # acknowledge it
        driver.find_element(By.ID, "ack-note").send_keys("on it")
        driver.find_element(By.ID, "ack").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "detail-status"), "acknowledged"))
        assert not driver.find_element(By.ID, "ack").is_enabled()
        assert "acknowledged" in text("#timeline")
        assert "note: on it" in text("#timeline")
        assert "acknowledged" in text(f"button[data-incident='{ids['tier2']}']")

        # pick the approved template (the draft is not offered) and render it
        picker = Select(driver.find_element(By.ID, "template-select"))
        wait.until(lambda d: len(picker.options) > 1)
        assert len(picker.options) == 2
        picker.select_by_index(1)
        assert attrs("#variables input", "data-variable") == ["product"]
        product = driver.find_element(By.CSS_SELECTOR, "#variables input")
        product.send_keys("X2 <b>phone</b>")
        driver.find_element(By.ID, "preview").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "rendered-note"), "not recorded"))
        rendered = text("#rendered")
        assert rendered.startswith("Acme is looking into posts about X2")
        assert "<b>" not in rendered  # the text format escapes it; the page shows it as text
        driver.find_element(By.ID, "use").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "rendered-note"), "Recorded: use #"))
        assert "by responder" in text("#rendered-note")
        assert text("#rendered") == rendered
        assert driver.execute_script("return window.__pwned === undefined")

        # an acknowledge still in flight when another incident is selected reports the
        # incident it acknowledged (the POST held until then), not the one on screen
        card3 = f"button[data-incident='{ids['tier3']}']"
        driver.find_element(By.CSS_SELECTOR, card3).click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "detail-title"), f"#{ids['tier3']}"))
        hold_requests(driver, "String(url).endsWith('/ack')")
        driver.find_element(By.ID, "ack").click()
        wait.until(lambda d: held(d) == 1)  # the acknowledge is in flight
        driver.find_element(By.CSS_SELECTOR, f"button[data-incident='{ids['tier1']}']").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "detail-title"), f"#{ids['tier1']}"))
        release_requests(driver)
        wait.until(ec.text_to_be_present_in_element((By.ID, "message"), "acknowledged."))
        assert text("#message") == f"Incident #{ids['tier3']} acknowledged."
        assert text("#detail-status") == "open"  # the one on screen was not acknowledged
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, card3), "acknowledged"))

        shot = os.environ.get("CRISISWATCH_CONSOLE_SCREENSHOT")
        if shot:
            driver.save_screenshot(shot)

        problems = [
            entry["message"]
            for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]
        ]
        assert problems == []  # no CSP violation, no Trusted Types error, no script error
    finally:
        driver.quit()

    used = httpx.get(
        f"{server.url}/incidents/{ids['tier2']}/responses", headers=key_headers("viewer")
    ).json()
    assert [(u["template_id"], u["used_by"]) for u in used["items"]] == [
        (ids["approved"], "responder")
    ]


async def _seed_watches(runtime: Runtime, clock: ManualClock) -> dict[str, int]:
    return {
        watch: await open_incident(runtime, clock, tier=tier, watch=watch)
        for watch, tier in (("acme", 3), ("beta", 1), ("gamma", 2))
    }


def test_console_for_a_key_scoped_to_several_watches(
    live: tuple[LiveServer, Runtime], clock: ManualClock
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    server, runtime = live
    ids = server.call(_seed_watches(runtime, clock))
    driver = _chrome()
    try:
        wait = WebDriverWait(driver, WAIT_S, poll_frequency=0.1)
        driver.get(server.url + "/console/")
        box = wait.until(ec.visibility_of_element_located((By.ID, "key-input")))
        box.send_keys(SCOPED_KEY)
        driver.find_element(By.ID, "key-submit").click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "section.tier")))
        # the board shows both of the key's watches (not a 403 asking for ?watch=) and
        # nothing of the others
        cards = driver.find_elements(By.CSS_SELECTOR, "button[data-incident]")
        shown = sorted(int(str(c.get_attribute("data-incident"))) for c in cards)
        assert shown == sorted([ids["acme"], ids["beta"]])
        tiers = [
            e.get_attribute("data-tier")
            for e in driver.find_elements(By.CSS_SELECTOR, "section.tier")
        ]
        assert tiers == ["3", "1"]
        message = driver.find_element(By.ID, "message")
        assert "error" not in str(message.get_attribute("class")), message.text
        assert "several watches" not in message.text
        # and works them: acknowledge the acme incident
        driver.find_element(By.CSS_SELECTOR, f"button[data-incident='{ids['acme']}']").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "detail-title"), f"#{ids['acme']}"))
        driver.find_element(By.ID, "ack").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "detail-status"), "acknowledged"))
    finally:
        driver.quit()
