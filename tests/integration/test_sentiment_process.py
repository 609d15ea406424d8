"""The shipped classifier in a child process of its own (``scorer.classifier.process``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from api.runtime import ALL_ROLES, Role, Runtime
from api.settings import Settings
from sentiment.config import ClassifierConfig, ScorerConfig
from sentiment.process import ClassifierProcessError, ProcessClassifier
from sentiment.transformer import ModelLoadError, load_classifier

pytestmark = pytest.mark.model

TEXTS = [
    "I love this phone, best purchase ever",
    "worst airline, they lost my bag and nobody answers",
    "the meeting is at 3pm",
    "这家公司太垃圾了 我要退款",
    "今天天气真好，心情愉快[哈哈]",
    "",
    "🙂🙂",
    "Das ist wirklich schlecht",
    "x" * 20_000,
]
LANGS: list[str | None] = ["en", "en", None, "zh", "zh", None, None, "de", "en"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def child() -> Iterator[ProcessClassifier]:
    restarts: list[int] = []
    classifier = load_classifier(
        ScorerConfig(classifier=ClassifierConfig(process=True)), lambda: restarts.append(1)
    )
    assert isinstance(classifier, ProcessClassifier)
    classifier.restarts = restarts  # type: ignore[attr-defined]
    yield classifier
    classifier.close()


def test_answers_equal_the_classifier_in_this_process(child: ProcessClassifier) -> None:
    here = load_classifier(ScorerConfig(classifier=ClassifierConfig(process=False)))
    assert not isinstance(here, ProcessClassifier)
    assert (child.name, child.version) == (here.name, here.version)
    theirs, ours = child.classify(TEXTS, LANGS), here.classify(TEXTS, LANGS)
    assert theirs == ours  # same code, same weights, one call each: bit for bit
    assert [s.model_dump_json() for s in theirs] == [s.model_dump_json() for s in ours]
    assert child.classify([], []) == []
    with pytest.raises(ValueError, match="2 texts but 1 languages"):
        child.classify(["a", "b"], ["en"])


def test_a_killed_child_is_replaced_and_the_call_answered(child: ProcessClassifier) -> None:
    first = child.pid
    assert first is not None and alive(first)
    before = child.classify(TEXTS[:3], LANGS[:3])
    os.kill(first, signal.SIGKILL)
    assert wait_gone(first)
    assert child.classify(TEXTS[:3], LANGS[:3]) == before
    assert child.pid not in (None, first)
    assert child.restarts == [1]  # type: ignore[attr-defined]


def test_close_stops_the_child_and_refuses_later_calls() -> None:
    classifier = ProcessClassifier(ScorerConfig())
    pid = classifier.pid
    assert pid is not None
    classifier.close()
    classifier.close()  # idempotent
    assert wait_gone(pid)
    with pytest.raises(ClassifierProcessError, match="closed"):
        classifier.classify(["hello"], ["en"])


def test_a_load_error_is_raised_here(tmp_path: Path) -> None:
    config = ScorerConfig(
        classifier=ClassifierConfig(process=True, model_dir=tmp_path / "no-such-folder")
    )
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_classifier(config)


def test_the_child_leaves_when_its_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, time
            from sentiment.config import ScorerConfig
            from sentiment.process import ProcessClassifier

            if __name__ == "__main__":
                classifier = ProcessClassifier(ScorerConfig())
                print(classifier.pid, flush=True)
                time.sleep(600)
            """
        )
    )
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    parent = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert alive(pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert wait_gone(pid), "the classifier's child outlived its killed parent"
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


def test_the_runtime_runs_it_in_a_child_only_beside_other_stages() -> None:
    def resolved(roles: frozenset[Role], process: bool | None = None) -> bool | None:
        settings = Settings(scorer=ScorerConfig(classifier=ClassifierConfig(process=process)))
        return Runtime(settings, roles=roles)._scorer_config().classifier.process

    assert resolved(ALL_ROLES) is True  # crisiswatch run: one GIL for every stage
    assert resolved(frozenset({Role.SCORER})) is False  # crisiswatch scorer
    assert resolved(frozenset({Role.SCORER, Role.API})) is False  # the API has no bus work
    assert resolved(ALL_ROLES, process=False) is False
    assert resolved(frozenset({Role.SCORER}), process=True) is True


def test_one_death_under_two_calls_in_flight_is_one_restart(child: ProcessClassifier) -> None:
    restarts: list[int] = child.restarts  # type: ignore[attr-defined]
    before = len(restarts)
    texts = [  # unsure for the word model: the transformer reads them, about a second
        f"so the {i}th update on order {i * 7919 % 10007} came in today, we will see"
        for i in range(2_000)
    ]
    langs = ["en"] * len(texts)
    expected = child.classify(texts[:50], langs[:50])
    answers: list[list[object]] = []
    with ThreadPoolExecutor(2) as pool:
        calls = [pool.submit(child.classify, texts, langs) for _ in range(2)]
        time.sleep(0.2)  # both sent: one being classified, one waiting in the child's queue
        assert not any(call.done() for call in calls)
        pid = child.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        answers = [call.result(timeout=60) for call in calls]
    assert all(a[:50] == expected for a in answers)  # both retried on the new child
    assert len(restarts) == before + 1  # one death, counted once


def test_a_script_without_a_main_guard_gets_a_clear_error(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from sentiment.config import ScorerConfig\n"
        "from sentiment.process import ProcessClassifier\n"
        "ProcessClassifier(ScorerConfig())\n"
    )
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode != 0
    assert "could not start" in done.stderr and '__name__ == "__main__"' in done.stderr
