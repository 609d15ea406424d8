"""A server that sends its answer a trickle at a time is cut after ``READ_DEADLINE_S``.

The HTTP client's timeout bounds each read, not the whole body: a few bytes every few
seconds held a poll (and every target polled after it) for as long as the server liked.
Now the body read has a deadline of its own; past it the answer is ``SlowAnswer`` (an
outage, retried on the backoff), a feed's is that feed's ``TargetUnavailable`` (the other
feeds go on), and the message says where."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from listener import backoff
from listener.backoff import SlowAnswer, TargetUnavailable, get_at_most, read_at_most
from listener.sources.feeds import FeedClient, FeedState
from tests.unit.test_source_live import RecordingClock


class Trickle(httpx.AsyncByteStream):
    """A byte every ``every`` seconds, ``n`` of them."""

    def __init__(self, n: int = 1_000, every: float = 0.05) -> None:
        self.n, self.every, self.sent = n, every, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.n):
            await asyncio.sleep(self.every)
            self.sent += 1
            yield b"x"


def client(body: httpx.AsyncByteStream) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, stream=body))
    )


async def test_a_body_still_arriving_after_the_deadline_is_cut() -> None:
    trickle = Trickle()
    async with client(trickle) as http, http.stream("GET", "https://x.example/a") as response:
        with pytest.raises(SlowAnswer, match=r"still arriving after 0 s \(\d+ bytes\): cut"):
            await read_at_most(response, 1_000_000, deadline_s=0.3)
    assert trickle.sent < 20  # cut at the deadline, not read to its end (1,000 bytes)


async def test_a_body_within_the_deadline_is_read_whole() -> None:
    async with client(Trickle(n=3, every=0.01)) as http, http.stream("GET", "https://x/") as r:
        assert await read_at_most(r, 1_000, deadline_s=5) == b"xxx"


async def test_an_api_answer_names_what_was_slow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backoff, "READ_DEADLINE_S", 0.3)
    async with client(Trickle()) as http:
        with pytest.raises(SlowAnswer, match=r"^reddit r/acme: an answer still arriving"):
            await get_at_most(http, "https://x.example/r", what="reddit r/acme")


async def test_a_slow_feed_is_that_feed_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backoff, "READ_DEADLINE_S", 0.3)
    async with client(Trickle()) as http:
        feed = FeedClient(http, RecordingClock(), max_bytes=100_000)
        with pytest.raises(
            TargetUnavailable, match=r"news\.example\.com/feed\.xml: an answer still"
        ):
            await feed.fetch("https://news.example.com/feed.xml", FeedState())
