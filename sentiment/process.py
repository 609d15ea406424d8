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
* A child that dies (killed, out of memory) is replaced and the call is tried once more on a
  fresh one; a second death in the same call is an error for the caller (the scorer's batch
  then fails and the bus retries it).
* The child ignores SIGINT and SIGTERM (a Ctrl-C reaches the whole process group; the parent
  decides when it stops and closes it) and exits by itself when its parent is gone, even
  after a ``kill -9`` of the parent.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from core.events import Label, Sentiment
from sentiment.config import ScorerConfig

log = logging.getLogger(__name__)

T = TypeVar("T")
Answer = tuple[Label, dict[Label, float], str, str]
"""(label, probabilities, model, version): one Sentiment, as it travels between processes."""

_PARENT_POLL_S = 1.0
_classifier: Any = None  # the child's classifier, loaded by its first call


class ClassifierProcessError(RuntimeError):
    """The classifier's child process could not start, died twice in one call, or was
    closed."""


def _child_setup(parent: int) -> None:
    """In the child, before any call: leave stopping to the parent, and follow it out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_S)
        os._exit(0)  # the parent is gone (killed): nobody will ever ask for an answer

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _loaded(config_json: str) -> Any:
    global _classifier
    if _classifier is None:
        from sentiment.transformer import load_classifier

        config = ScorerConfig.model_validate_json(config_json)
        inner = config.classifier.model_copy(update={"process": False})
        _classifier = load_classifier(config.model_copy(update={"classifier": inner}))
    return _classifier


def _describe(config_json: str) -> tuple[int, tuple[str, str]]:
    classifier = _loaded(config_json)
    return os.getpid(), (str(classifier.name), str(classifier.version))


def _classify(
    config_json: str, texts: list[str], langs: list[str | None]
) -> tuple[int, list[Answer]]:
    answers = _loaded(config_json).classify(texts, langs)
    return os.getpid(), [(s.label, s.probs, s.model, s.version) for s in answers]


class ProcessClassifier:
    """A :class:`~sentiment.classifier.Classifier` whose models run in a child process.

    ``classify`` blocks until the child answers: call it from a worker thread (the scorer
    does), one call at a time or several (they queue in the child).
    """

    def __init__(self, config: ScorerConfig, on_restart: Callable[[], None] | None = None):
        self._config_json = config.model_dump_json()
        self._on_restart = on_restart
        self._lock = threading.Lock()
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
        for attempt in (1, 2):
            pool = self._new_pool()
            try:
                pid, answer = pool.submit(fn, self._config_json, *args).result()
                if pid != self._pid and self._answered:
                    log.info("sentiment classifier answering from child process %s", pid)
                self._pid = pid
                self._answered = True
                return answer
            except BrokenProcessPool as exc:
                replaced = self._replace(pool)
                if self._closed:
                    raise ClassifierProcessError("the classifier process was closed") from exc
                if not self._answered:
                    raise ClassifierProcessError(
                        "the sentiment classifier's child process could not start (see the "
                        "error above it). A script that starts crisiswatch itself must keep "
                        'its start code under `if __name__ == "__main__":`: the child process '
                        "imports the main module. Or set scorer.classifier.process: false"
                    ) from exc
                if replaced:
                    log.error("the sentiment classifier's child process died; starting anew")
                    if self._on_restart is not None:
                        self._on_restart()
                if attempt == 2:
                    raise ClassifierProcessError(
                        "the sentiment classifier's child process died twice on one batch "
                        "(killed, or out of memory?): the batch is left to the bus to retry"
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

    def close(self) -> None:
        """Stop the child (waits for a call in flight). Idempotent."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
