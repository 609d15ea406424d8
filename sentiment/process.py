"""The classifier in a child process of its own (``scorer.classifier.process: true``).

In one process the classifier's own Python steps (routing, text normalisation, the word and
character n-gram models, tokenisation glue, building the answers) take the GIL from the
listener, the bus, the detector and the alerter, and they from it: measured, neither side
then uses the cores it has (``bench/pipeline_throughput.py``). :class:`ProcessClassifier`
keeps the same :class:`~sentiment.classifier.Classifier` contract but runs the models in a
child process (``spawn``: nothing of the parent's threads or sockets is inherited), so the
classifier has a GIL of its own.

* The models load once, in the child; a load error (a missing model folder) is raised in
  the parent, as from :func:`sentiment.transformer.load_classifier`.
* Each ``classify`` call sends its texts and gets back, per text, the label, the
  probabilities, the model and the version; answers equal the in-process classifier's, bit
  for bit (same code, same weights; floats travel as they are).
* Calls run one at a time (the child answers one at a time anyway), so a death is the death
  of the one call in flight: its texts killed the child, or something outside did.
* A child that dies (killed, out of memory, a text that crashes ONNX Runtime or the
  tokenizer) or does not answer within ``scorer.classifier.timeout_s`` (hung: it is killed)
  is replaced and the call is tried once more on a fresh one; a second death in the same
  call raises :class:`ClassifierCrashed` (the scorer then has the batch's mentions handled
  one by one, and dead-letters a text that kills the child alone).
* The child ignores SIGINT and SIGTERM (a Ctrl-C reaches the whole process group; the parent
  decides when it stops and closes it) and exits by itself when its parent is gone, even
  after a ``kill -9`` of the parent. ``close`` gives a call in flight ``_CLOSE_GRACE_S``,
  then kills the child: a hung child never holds up a shutdown.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError as FutureCancelled
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from core.events import Label, Sentiment
from sentiment.classifier import Classifier
from sentiment.config import ScorerConfig

log = logging.getLogger(__name__)

T = TypeVar("T")
Answer = tuple[Label, dict[Label, float], str, str]
"""(label, probabilities, model, version): one Sentiment, as it travels between processes."""

_PARENT_POLL_S = 1.0
_CLOSE_GRACE_S = 5.0  # for a call in flight at ``close``, before the child is killed
_classifier: Any = None  # the child's classifier, loaded by its first call

Loader = Callable[[ScorerConfig], Classifier]
"""Loads the classifier in the child (a module-level function: it travels by name)."""


class ClassifierProcessError(RuntimeError):
    """The classifier's child process could not start, died twice in one call, or was
    closed."""


class ClassifierCrashed(ClassifierProcessError):
    """The child died (or hung and was killed) twice in one call: on its texts, most likely."""


class _Hung(BrokenProcessPool):
    """The child did not answer within the timeout and was killed."""


def _child_setup(parent: int) -> None:
    """In the child, before any call: leave stopping to the parent, and follow it out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_S)
        os._exit(0)  # the parent is gone (killed): nobody will ever ask for an answer

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def load_in_process(config: ScorerConfig) -> Classifier:
    """The shipped classifier, in the process that calls it (the child's default loader)."""
    from sentiment.transformer import load_classifier

    inner = config.classifier.model_copy(update={"process": False})
    return load_classifier(config.model_copy(update={"classifier": inner}))


def _loaded(config_json: str, load: Loader) -> Any:
    global _classifier
    if _classifier is None:
        _classifier = load(ScorerConfig.model_validate_json(config_json))
    return _classifier


def _describe(config_json: str, load: Loader) -> tuple[int, tuple[str, str]]:
    classifier = _loaded(config_json, load)
    return os.getpid(), (str(classifier.name), str(classifier.version))


def _classify(
    config_json: str, load: Loader, texts: list[str], langs: list[str | None]
) -> tuple[int, list[Answer]]:
    answers = _loaded(config_json, load).classify(texts, langs)
    return os.getpid(), [(s.label, s.probs, s.model, s.version) for s in answers]


def _children(pool: ProcessPoolExecutor) -> list[multiprocessing.process.BaseProcess]:
    """The pool's child processes (none once it was shut down)."""
    return list((pool._processes or {}).values())


class ProcessClassifier:
    """A :class:`~sentiment.classifier.Classifier` whose models run in a child process.

    ``classify`` blocks until the child answers: call it from a worker thread (the scorer
    does), one call at a time or several (they take turns). ``load`` builds the classifier
    in the child (tests give a fake).
    """

    def __init__(
        self,
        config: ScorerConfig,
        on_restart: Callable[[], None] | None = None,
        *,
        load: Loader = load_in_process,
    ):
        self._config_json = config.model_dump_json()
        self._timeout = config.classifier.timeout_s
        self._load = load
        self._on_restart = on_restart
        self._lock = threading.Lock()
        self._turn = threading.Lock()  # one call at a time: a death is that call's
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False
        self._answered = False  # a child ever answered: a death after that is a restart
        self._pid: int | None = None  # of the child that answered last
        started = time.perf_counter()
        try:
            self.name, self.version = self._call(_describe)
        except BaseException:
            self.close()
            raise
        log.info(
            "sentiment classifier running in child process %s (loaded in %.1f s)",
            self.pid, time.perf_counter() - started,
        )  # fmt: skip

    @property
    def pid(self) -> int | None:
        """The process id of the child that answered last (None after ``close``)."""
        return None if self._closed else self._pid

    def _new_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._closed:
                raise ClassifierProcessError("the classifier process was closed")
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_child_setup,
                    initargs=(os.getpid(),),
                )
            return self._pool

    def _replace(self, broken: ProcessPoolExecutor) -> bool:
        """Forget a broken pool; True for the one caller that did (several calls in flight
        see the same death: it is logged and counted once)."""
        with self._lock:
            replaced = self._pool is broken and not self._closed
            if self._pool is broken:
                self._pool = None
        broken.shutdown(wait=False, cancel_futures=True)
        return replaced

    def _call(self, fn: Callable[..., tuple[int, T]], *args: Any) -> T:
        with self._turn:
            return self._attempts(fn, *args)

    def _answer(self, pool: ProcessPoolExecutor, fn: Callable[..., T], *args: Any) -> T:
        """``fn``'s answer from the child; BrokenProcessPool when it died or, past the
        timeout, was killed as hung."""
        future = pool.submit(fn, self._config_json, self._load, *args)
        try:
            return future.result(timeout=self._timeout)
        except FutureTimeout:
            log.error(
                "the sentiment classifier's child process has not answered in %.0f s "
                "(scorer.classifier.timeout_s): killing it as hung",
                self._timeout,
            )
            for child in _children(pool):
                child.kill()  # the pool breaks: the future fails, the pool is replaced
            raise _Hung("the child process hung and was killed") from None

    def _attempts(self, fn: Callable[..., tuple[int, T]], *args: Any) -> T:
        for attempt in (1, 2):
            pool = self._new_pool()
            try:
                pid, answer = self._answer(pool, fn, *args)
                if pid != self._pid and self._answered:
                    log.info("sentiment classifier answering from child process %s", pid)
                self._pid = pid
                self._answered = True
                return answer
            except FutureCancelled as exc:
                # close() cancelled the call before it reached the child (cancel_futures)
                raise ClassifierProcessError("the classifier process was closed") from exc
            except BrokenProcessPool as exc:
                replaced = self._replace(pool)
                if self._closed:
                    raise ClassifierProcessError("the classifier process was closed") from exc
                if not self._answered and isinstance(exc, _Hung):
                    raise ClassifierProcessError(
                        "the sentiment classifier's child process did not load the models "
                        f"within {self._timeout:.0f} s (scorer.classifier.timeout_s)"
                    ) from exc
                if not self._answered:
                    raise ClassifierProcessError(
                        "the sentiment classifier's child process could not start (see the "
                        "error above it). A script that starts crisiswatch itself must keep "
                        'its start code under `if __name__ == "__main__":`: the child process '
                        "imports the main module. Or set scorer.classifier.process: false"
                    ) from exc
                if replaced:
                    log.error(
                        "the sentiment classifier's child process %s; starting anew",
                        "hung" if isinstance(exc, _Hung) else "died",
                    )
                    if self._on_restart is not None:
                        self._on_restart()
                if attempt == 2:
                    raise ClassifierCrashed(
                        "the sentiment classifier's child process died twice on one batch "
                        "(a text that crashes or hangs the model? killed, or out of memory?)"
                    ) from exc
        raise AssertionError("unreachable")

    def classify(self, texts: Sequence[str], langs: Sequence[str | None]) -> list[Sentiment]:
        if len(texts) != len(langs):
            raise ValueError(f"{len(texts)} texts but {len(langs)} languages")
        if not texts:
            return []
        answers = self._call(_classify, list(texts), list(langs))
        # built without validation: the child built these same Sentiments, validated
        return [
            Sentiment.model_construct(label=label, probs=probs, model=model, version=version)
            for label, probs, model, version in answers
        ]

    def close(self, grace_s: float = _CLOSE_GRACE_S) -> None:
        """Stop the child: a call in flight has ``grace_s`` to end (its caller then gets
        ClassifierProcessError), then the child is killed; 0: killed at once, for a caller
        that wants no answer any more (a command stopped by Ctrl-C). Idempotent."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is None:
            return
        children = _children(pool)
        pool.shutdown(wait=False, cancel_futures=True)  # the child exits after its call
        deadline = time.monotonic() + grace_s
        for child in children:
            if grace_s > 0:
                child.join(max(0.0, deadline - time.monotonic()))
            if child.is_alive():
                if grace_s > 0:
                    log.warning(
                        "the sentiment classifier's child process %s was still busy %.0f s "
                        "after the stop: killed", child.pid, grace_s,
                    )  # fmt: skip
                child.kill()
                child.join()
