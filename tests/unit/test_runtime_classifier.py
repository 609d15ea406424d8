"""How the runtime places the classifier: a child process where auto chose one and it can
start, this process otherwise; the warning when the bus leaves no room to prefetch; and a
stop that goes on past a stage that fails to stop (the classifier, HTTP client, engine)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import api.runtime as runtime_module
from api.runtime import ALL_ROLES, Role, Runtime
from api.settings import Settings
from core.settings import BusConfig, DatabaseConfig
from sentiment.classifier import Classifier
from sentiment.config import ClassifierConfig, ScorerConfig
from sentiment.process import ClassifierProcessError
from tests.fakes import FakeClassifier


def loader(fail: BaseException, asked: list[bool | None]) -> object:
    def load(config: ScorerConfig, on_restart: object = None) -> Classifier:
        asked.append(config.classifier.process)
        if config.classifier.process:
            raise fail
        return FakeClassifier()

    return load


@pytest.mark.parametrize(
    "fail", [OSError("no /dev/shm"), ClassifierProcessError("could not start")]
)
async def test_auto_falls_back_to_this_process_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fail: BaseException
) -> None:
    asked: list[bool | None] = []
    monkeypatch.setattr(runtime_module, "load_classifier", loader(fail, asked))
    with caplog.at_level(logging.WARNING, "api.runtime"):
        classifier = await Runtime(Settings(), roles=ALL_ROLES)._load_classifier()
    assert isinstance(classifier, FakeClassifier)
    assert asked == [True, False]
    assert "cannot run in a process of its own" in caplog.text


async def test_an_explicit_child_process_that_fails_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[bool | None] = []
    monkeypatch.setattr(runtime_module, "load_classifier", loader(OSError("no"), asked))
    settings = Settings(scorer=ScorerConfig(classifier=ClassifierConfig(process=True)))
    with pytest.raises(OSError):
        await Runtime(settings, roles=frozenset({Role.SCORER}))._load_classifier()
    assert asked == [True]


@pytest.mark.parametrize(("capacity", "warned"), [(1000, True), (2048, False)])
async def test_a_bus_without_room_for_two_batches_is_reported(
    caplog: pytest.LogCaptureFixture, capacity: int, warned: bool
) -> None:
    settings = Settings(bus=BusConfig(capacity=capacity, journal="off"))
    runtime = Runtime(settings, roles=frozenset({Role.SCORER}), classifier=FakeClassifier())
    with caplog.at_level(logging.WARNING, "api.runtime"):
        await runtime.start()
        await runtime.stop()
    assert ("cannot classify its next batch" in caplog.text) is warned


async def test_a_stage_that_fails_to_stop_does_not_leave_the_rest_running(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The alerter's stop raised: the runtime used to stop there, leaving the HTTP client
    and every database connection open (and a classifier child process running). Now the
    other steps run, the failure is logged and raised at the end."""
    settings = Settings(
        database=DatabaseConfig(url=f"sqlite+aiosqlite:///{tmp_path / 'stop.db'}"),
        bus=BusConfig(journal="off"),
    )
    runtime = Runtime(settings, classifier=FakeClassifier(), migrate=True)
    await runtime.start()
    assert runtime.alerter is not None and runtime.engine is not None
    assert runtime.http is not None
    pool = runtime.engine.sync_engine.pool  # dispose() replaces it

    async def broken() -> None:
        raise RuntimeError("alerter stop failed")

    runtime.alerter.stop = broken  # type: ignore[method-assign]
    http = runtime.http
    with caplog.at_level(logging.ERROR, "api.runtime"), pytest.raises(RuntimeError):
        await runtime.stop()
    assert runtime.engine.sync_engine.pool is not pool
    assert http.is_closed
    assert "stopping: the alerter failed" in caplog.text
