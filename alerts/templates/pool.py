"""Template renders run off the event loop, a few at a time.

A render (``render.render``) may run up to its deadline (``RENDER_SECONDS``). In the
request's event loop that stalled every request of the process for as long (acks, ingest
webhooks, ``/healthz``, whose timeout gets the pod restarted) and, in the embedded
process, the whole pipeline. So a render runs in a worker thread of its own small
executor, with plain values computed on the loop beforehand (no database session, no ORM
object crosses over), and its deadline is measured in that thread from its start.

Rendering is pure Python: it holds the interpreter lock (GIL) while it computes, and
gives it up every switch interval (``sys.getswitchinterval()``, 5 ms) and between C calls,
the longest of which the sandbox's limits keep to milliseconds. More threads give no
more throughput, they only keep a quick render from queueing behind a slow one, and each
one more running render takes a share of the CPU from the loop. Hence:

* ``RENDER_WORKERS`` (2) renders run at a time, in a dedicated ``ThreadPoolExecutor`` of
  that many threads: not the loop's default executor, which the alerter's job store, DNS
  lookups and other ``asyncio.to_thread`` calls share (a burst of renders must not take
  their threads);
* a render beyond those waits for a free one at most ``RENDER_WAIT_SECONDS`` (two
  deadlines: the renders ahead of it end by then), then is refused with ``RenderBusy``
  (the API answers ``503`` with ``Retry-After``: the server is at capacity, whoever asks;
  not ``429``, which says that this client sent too much);
* a slot is given back when the render's thread is done, not when its caller stops
  waiting: a request cancelled mid-render leaves its thread running up to the deadline,
  and that thread still counts.

The wait for a slot is per event loop (an ``asyncio.Semaphore`` belongs to one loop); the
executor, one per process, bounds the renders running in the process whatever the loop.
A service process has one loop, so the two are the same there.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final, TypeVar
from weakref import WeakKeyDictionary

from alerts.templates import render as renderer

RENDER_WORKERS: Final = 2  # renders running at a time, per process
RENDER_WAIT_SECONDS: Final = 2 * renderer.RENDER_SECONDS  # the longest wait for a slot
RETRY_AFTER_SECONDS: Final = 2  # what a refused caller is told to wait

T = TypeVar("T")


class RenderBusy(RuntimeError):
    """Every render slot stayed taken for the whole wait; nothing was rendered or recorded
    (the API answers ``503`` with ``Retry-After``)."""

    def __init__(self, workers: int, waited: float) -> None:
        self.retry_after = RETRY_AFTER_SECONDS
        super().__init__(
            f"too many templates are being rendered: {workers} at a time, and none finished "
            f"within {waited:g} s; retry in {RETRY_AFTER_SECONDS} s"
        )


def _on_loop(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop has closed: its slots went with it
        loop.call_soon_threadsafe(callback)


class RenderPool:
    """At most ``workers`` renders at a time, each in a worker thread; a caller waits for
    a free slot at most ``wait`` seconds, then ``RenderBusy``."""

    def __init__(self, workers: int = RENDER_WORKERS, wait: float = RENDER_WAIT_SECONDS) -> None:
        if workers < 1 or wait < 0:
            raise ValueError("a render pool needs at least one worker and a wait of 0 s or more")
        self.workers = workers
        self.wait = wait
        # threads start on the first render, never at construction
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="template-render")
        self._slots: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def _slots_of(self, loop: asyncio.AbstractEventLoop) -> asyncio.Semaphore:
        with self._lock:
            slots = self._slots.get(loop)
            if slots is None:
                slots = self._slots[loop] = asyncio.Semaphore(self.workers)
            return slots

    async def run(self, fn: Callable[..., T], /, *args: Any) -> T:
        """``fn(*args)`` in a worker thread once a slot is free (``RenderBusy`` when none
        frees within the wait); its result or exception."""
        loop = asyncio.get_running_loop()
        slots = self._slots_of(loop)
        try:
            async with asyncio.timeout(self.wait):
                await slots.acquire()
        except TimeoutError:
            raise RenderBusy(self.workers, self.wait) from None
        try:
            job: Future[T] = self._executor.submit(fn, *args)
        except BaseException:
            slots.release()
            raise
        # given back when the thread is done (or the job cancelled before it started),
        # even if this caller was cancelled while it ran
        job.add_done_callback(lambda _: _on_loop(loop, slots.release))
        return await asyncio.wrap_future(job)

    async def render(self, body: str, fmt: str, values: Mapping[str, Any]) -> str:
        """``render.render`` in a worker thread. ``values`` must be plain data computed on
        the loop (texts, numbers, dicts of them): it is copied here, before the thread
        starts, so the render sees them as they were when it was asked for."""
        return await self.run(renderer.render, body, fmt, _snapshot(values))


def _snapshot(values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``values`` whose dicts, lists and tuples are copies too."""

    def copy(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: copy(v) for k, v in value.items()}
        if isinstance(value, list):
            return [copy(v) for v in value]
        if isinstance(value, tuple):
            return tuple(copy(v) for v in value)
        return value

    return {k: copy(v) for k, v in values.items()}


_pool: RenderPool | None = None


def shared() -> RenderPool:
    """The process's render pool, made on first use (nothing is made at import)."""
    global _pool
    if _pool is None:
        _pool = RenderPool()
    return _pool
