"""The classifier's child process when it hangs, or dies on a text (a poison text that
crashes ONNX Runtime or the tokenizer): the call ends, the child is replaced, the scorer
dead-letters only the poison and scores the rest once each, and a stop never waits on a
hung child. A fake classifier runs in the child (``tests.classifier_children``) except in
the test marked ``model``."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError as FutureCancelled
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest

from core.bus.memory import MemoryBus
from core.events import Mention, ScoredMention
from core.metrics import Metrics
from sentiment.config import ClassifierConfig, ScorerConfig
from sentiment.process import ClassifierCrashed, ClassifierProcessError, ProcessClassifier
from sentiment.scorer import ScorerService
from tests.classifier_children import load_fake

T = TypeVar("T")
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
GUARD_S = 120.0  # generous: the tests check that calls end, not how fast


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def in_thread(fn: Callable[[], T], kill_on_timeout: int | None = None) -> T | BaseException:
    """``fn()``'s result or exception, from a daemon thread; fails the test when it has not
    ended within ``GUARD_S`` (killing ``kill_on_timeout`` first, so nothing is left)."""
    box: list[T | BaseException] = []

    def run() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # handed to the test
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(GUARD_S)
    if thread.is_alive():
        if kill_on_timeout is not None:
            os.kill(kill_on_timeout, signal.SIGKILL)
        pytest.fail(f"still waiting after {GUARD_S:.0f} s")
    return box[0]


def fake_child(timeout_s: float = 300.0) -> tuple[ProcessClassifier, list[int]]:
    restarts: list[int] = []
    config = ScorerConfig(classifier=ClassifierConfig(process=True, timeout_s=timeout_s))
    child = ProcessClassifier(config, lambda: restarts.append(1), load=load_fake)
    return child, restarts


def test_a_hung_child_is_killed_and_replaced() -> None:
    # the timeout also covers a fresh child's start (spawn, imports): 2 s was too short
    # on a loaded CI box, where the fresh child that answers "great service" timed out too
    child, restarts = fake_child(timeout_s=6.0)
    try:
        first = child.pid
        assert first is not None
        failed = in_thread(lambda: child.classify(["it HANGs here"], ["en"]), first)
        assert isinstance(failed, ClassifierCrashed)  # hung twice: killed twice
        assert restarts == [1, 1]
        assert not alive(first)
        answer = child.classify(["great service"], ["en"])  # a fresh child answers
        assert answer[0].label == "positive"
        assert child.pid not in (None, first)
    finally:
        child.close()


def test_a_crashing_text_is_tried_twice_then_reported_as_a_crash() -> None:
    child, restarts = fake_child()
    try:
        failed = in_thread(lambda: child.classify(["CRASH it", "fine"], ["en", "en"]))
        assert isinstance(failed, ClassifierCrashed)
        assert restarts == [1, 1]
        assert child.classify(["fine"], ["en"])[0].label == "neutral"
    finally:
        child.close()


@pytest.mark.model
def test_close_does_not_wait_for_a_hung_child() -> None:
    """SIGTERM's stop closes the classifier after the bus gave up on the batch in flight:
    a child that never answers must not keep the process from exiting."""
    child = ProcessClassifier(ScorerConfig(classifier=ClassifierConfig(process=True)))
    pid = child.pid
    assert pid is not None
    try:
        os.kill(pid, signal.SIGSTOP)  # it never answers again
        outcome: list[BaseException] = []

        def call() -> None:
            try:
                child.classify(["hello"], ["en"])
            except BaseException as exc:  # handed to the test
                outcome.append(exc)

        caller = threading.Thread(target=call, daemon=True)
        caller.start()  # a call in flight, its batch abandoned
        assert in_thread(child.close, pid) is None
        assert not alive(pid)
        caller.join(GUARD_S)
        assert not caller.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], ClassifierProcessError)
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def mention(n: int, text: str) -> Mention:
    return Mention(id=f"test:{n}", source="test", text=text, lang="en", created_at=T0)


async def test_the_scorer_dead_letters_only_the_poison_and_never_halts(
    metrics: Metrics,
) -> None:
    """Twelve reposts of a text that kills the child, one other such text, and good texts
    in one batch: the good ones are scored once each, each poison mention is dead-lettered
    (not retried until the consumer halts: 10 failures in a row is the default limit), and
    the child dies only twice per distinct poison text and twice for the batch."""
    child, restarts = fake_child()
    bus = MemoryBus(metrics=metrics, max_failures_in_a_row=10, max_dead_letters_per_minute=100)
    scorer = ScorerService(bus, child, ScorerConfig(max_wait_ms=0, batch_size=64), metrics)
    scorer.register()
    out: list[ScoredMention] = []

    async def collect(events: list[ScoredMention]) -> None:
        out.extend(events)

    bus.subscribe("scored", "test", collect, max_batch=100)
    good = [mention(i, f"good text {i}, thanks") for i in range(5)]
    poison = [mention(100 + i, "this one will CRASH the model") for i in range(12)]
    other = mention(200, "another CRASH text")
    try:
        for m in [good[0], other, good[1], *poison, *good[2:]]:
            await bus.publish("mentions", m, key=m.id)
        await bus.start()
        await asyncio.wait_for(bus.join(), GUARD_S)
        await bus.stop()
    finally:
        await asyncio.to_thread(child.close)
    assert not bus.halted()
    assert sorted(s.mention.id for s in out) == sorted(m.id for m in good)
    dead = sorted(Mention.model_validate_json(letter.value).id for letter in bus.dead_letters)
    assert dead == sorted(m.id for m in [*poison, other])
    assert len(restarts) == 6


def test_a_call_close_cancels_before_it_reached_the_child_is_closed_not_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``close`` cancels a call still queued for the child (``cancel_futures``): its caller
    gets ClassifierProcessError like one whose child was killed, not the pool's bare
    CancelledError (a race seen in CI under load)."""
    child, _ = fake_child()
    try:

        def cancelled(*_: object) -> object:
            child.close()
            raise FutureCancelled()

        monkeypatch.setattr(child, "_answer", cancelled)
        failed = in_thread(lambda: child.classify(["fine"], ["en"]))
        assert isinstance(failed, ClassifierProcessError)
        assert "closed" in str(failed)
    finally:
        child.close()
