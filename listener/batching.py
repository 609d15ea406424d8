"""Turn a source's stream into small batches without adding latency.

A pump task reads the stream into a bounded queue; the consumer takes whatever has
accumulated (up to ``max_batch``) each time it is ready. A slow, paced stream gives
batches of one, as soon as each mention arrives; a fast replay gives full batches; a slow
consumer holds the pump back (back-pressure, the queue is bounded).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass

from core.events import Mention

log = logging.getLogger(__name__)


class SourceFailed(Exception):
    """The stream raised; the original exception is ``__cause__``."""


@dataclass(frozen=True)
class _End:
    error: Exception | None = None


async def batched(
    open_stream: Callable[[], AsyncIterator[Mention]], max_batch: int
) -> AsyncGenerator[list[Mention], None]:
    """Batches of the stream ``open_stream()`` returns; raises ``SourceFailed`` when the
    stream raised (after yielding what came before). Use with ``contextlib.aclosing``."""
    queue: asyncio.Queue[Mention | _End] = asyncio.Queue(maxsize=max_batch)

    async def pump() -> None:
        stream: AsyncIterator[Mention] | None = None
        try:
            stream = open_stream()
            async for mention in stream:
                await queue.put(mention)
        except Exception as exc:
            await queue.put(_End(exc))
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the consumer is done with us
            # raised from inside the stream (an inner task or future it awaited was
            # cancelled): a failure of the stream, not ours, or the consumer waits for ever
            error = RuntimeError("the stream raised CancelledError without being cancelled")
            error.__cause__ = exc
            await queue.put(_End(error))
        else:
            await queue.put(_End())
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:
                    log.exception("closing a source's stream failed")

    task = asyncio.create_task(pump(), name="listener:pump")
    try:
        end: _End | None = None
        while end is None:
            batch: list[Mention] = []
            item = await queue.get()
            while True:
                if isinstance(item, _End):
                    end = item
                    break
                batch.append(item)
                if len(batch) >= max_batch or queue.empty():
                    break
                item = queue.get_nowait()
            if batch:
                yield batch
        if end.error is not None:
            raise SourceFailed(str(end.error)) from end.error
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():  # we are being cancelled ourselves
                raise
