"""The template render pool: renders in worker threads, at most ``workers`` at a time, a
bounded wait for a slot, a slot held until its thread is done, the deadline kept."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from alerts.templates import render as renderer
from alerts.templates.pool import RETRY_AFTER_SECONDS, RenderBusy, RenderPool
from alerts.templates.render import RenderError

WAIT = 3.0  # how long a test waits for something that happens at once when all is well
VALUES: dict[str, Any] = {"brand": "Acme", "incident": {"title": "Late refunds", "tier": 2}}
BODY = "{{ brand }}: {{ incident.title }} ({% for k, v in incident|dictsort %}{{ k }} {% endfor %})"


class Gate:
    """A job that says it started, then waits for the test to open the gate."""

    def __init__(self) -> None:
        self.started = threading.Semaphore(0)
        self.open = threading.Event()

    def __call__(self, result: str) -> str:
        self.started.release()
        self.open.wait(WAIT)
        return result

    async def wait_started(self, count: int = 1) -> None:
        for _ in range(count):
            assert await asyncio.to_thread(self.started.acquire, True, WAIT), "never started"


async def test_renders_the_same_text_in_another_thread() -> None:
    pool = RenderPool()
    assert await pool.render(BODY, "text", VALUES) == renderer.render(BODY, "text", VALUES)
    assert await pool.run(threading.get_ident) != threading.get_ident()
    with pytest.raises(RenderError, match="could not be rendered"):
        await pool.render("{{ missing }}", "text", VALUES)


async def test_at_most_workers_run_and_one_more_is_refused_without_a_wait() -> None:
    pool, gate = RenderPool(workers=2, wait=0), Gate()
    running = [asyncio.create_task(pool.run(gate, str(n))) for n in range(2)]
    await gate.wait_started(2)
    with pytest.raises(RenderBusy, match="2 at a time") as caught:
        await pool.run(str, "third")
    assert caught.value.retry_after == RETRY_AFTER_SECONDS
    gate.open.set()
    assert await asyncio.gather(*running) == ["0", "1"]
    assert await pool.run(str, "after") == "after"


async def test_a_render_waits_for_a_slot_that_frees_within_the_wait() -> None:
    pool, gate = RenderPool(workers=1, wait=WAIT), Gate()
    first = asyncio.create_task(pool.run(gate, "first"))
    await gate.wait_started()
    second = asyncio.create_task(pool.run(str, "second"))
    for _ in range(10):
        await asyncio.sleep(0)
    assert not second.done()  # waiting for the slot
    gate.open.set()
    assert await first == "first"
    assert await second == "second"


async def test_a_cancelled_caller_keeps_its_slot_until_its_thread_is_done() -> None:
    """The request stopped waiting, but its render runs on to its end: it still counts,
    or a client disconnecting in a loop would run any number of renders at once."""
    pool, gate = RenderPool(workers=1, wait=0), Gate()
    first = asyncio.create_task(pool.run(gate, "first"))
    await gate.wait_started()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    with pytest.raises(RenderBusy):
        await pool.run(str, "meanwhile")
    gate.open.set()
    pool.wait = WAIT  # the slot comes back once the thread is done
    assert await pool.run(str, "after") == "after"


async def test_the_values_are_copied_when_the_render_is_asked_for() -> None:
    """The render sees its values as they were when it was asked for, whatever happens
    to the caller's objects while it waits for a slot or runs."""
    pool, gate = RenderPool(workers=1, wait=WAIT), Gate()
    first = asyncio.create_task(pool.run(gate, "first"))
    await gate.wait_started()
    values: dict[str, Any] = {"brand": "Acme", "incident": {"title": "Late refunds", "tier": 2}}
    rendering = asyncio.create_task(pool.render(BODY, "text", values))
    await asyncio.sleep(0)  # it has asked for a slot
    values["brand"] = "Changed"
    values["incident"]["title"] = "Changed"
    gate.open.set()
    await first
    assert await rendering == "Acme: Late refunds (tier title )"


async def test_the_deadline_holds_in_the_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """The heavy body of ``test_a_render_stops_at_its_time_limit``, through the pool."""
    monkeypatch.setattr(renderer, "RENDER_SECONDS", 0.2)
    heavy = " + ".join(["(l|unique|list|length)"] * 10)
    body = '{% set l = ("x" * 50000)|list %}{% for a in l[:1900] %}{{ "" if (' + heavy
    body += ") < 0 }}{% endfor %}done"
    started = time.monotonic()
    with pytest.raises(RenderError, match=r"took longer than 0\.2 s"):
        await RenderPool().render(body, "text", {})
    assert time.monotonic() - started < 2


def test_a_pool_needs_a_worker() -> None:
    with pytest.raises(ValueError, match="at least one worker"):
        RenderPool(workers=0)
