"""aiokafka's log during a broker outage (review of the Kafka mode, finding 3).

While the broker is down, aiokafka logs the same few errors ("Unable connect to node with
id 1", "Unable to update metadata from [1]") about 75 times a second per process: the log
drowned what else happened. The CLI's logging setup now puts a ``RepeatFilter`` on
aiokafka's loggers: one line of a kind per ``CLIENT_LOG_INTERVAL``, the next one saying
how many were held back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from api.cli import _setup_logging
from core.bus.kafka import CLIENT_LOG_INTERVAL, RepeatFilter

CLIENT = logging.getLogger("aiokafka")  # aiokafka.client logs under this name
CONN = logging.getLogger("aiokafka.conn")


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.levelname} {record.getMessage()}")


@pytest.fixture(autouse=True)
def no_filters_from_earlier_tests() -> Iterator[None]:
    """Every test here starts with aiokafka's loggers unfiltered and at their default
    level: a command run in this process earlier (``api.cli.main`` in another test) put its
    ``RepeatFilter`` there, and with the real clock it held back every repeated line of
    these tests; ``dead-letters`` sets aiokafka's level to CRITICAL (its failures are said
    in one line), which dropped every line of these tests."""
    kafka = [
        logging.getLogger(n)
        for n in ["aiokafka", *list(logging.root.manager.loggerDict)]
        if n.split(".")[0] == "aiokafka"
    ]
    saved = [(lg, list(lg.filters), lg.level) for lg in kafka]
    for lg in kafka:
        lg.filters[:] = []
        lg.setLevel(logging.NOTSET)
    CLIENT.setLevel(logging.DEBUG)  # whatever the root's level (its children inherit it)
    try:
        yield
    finally:
        for lg, filters, level in saved:
            lg.filters[:] = filters
            lg.setLevel(level)


@pytest.fixture
def lines() -> Iterator[Lines]:
    """What aiokafka's loggers pass on; their filters, levels and the root's level put
    back after the test (the logging setup is process-wide)."""
    loggers = [logging.getLogger(n) for n in ("aiokafka", "aiokafka.conn", "httpx")]
    saved = [(lg, lg.level, list(lg.filters)) for lg in loggers]
    kafka = [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)]
    before = {id(lg): list(lg.filters) for lg in kafka if lg.name.startswith("aiokafka")}
    root_level = logging.getLogger().level
    handler = Lines()
    CLIENT.addHandler(handler)  # aiokafka.conn's lines come up to it
    try:
        yield handler
    finally:
        CLIENT.removeHandler(handler)
        for lg in kafka:
            if id(lg) in before:
                lg.filters[:] = before[id(lg)]
        for lg, level, filters in saved:
            lg.setLevel(level)
            lg.filters[:] = filters
        logging.getLogger().setLevel(root_level)


def outage(seconds: int, now: list[float]) -> None:
    """aiokafka's lines of an outage as its client logs them, 64 a second (about the 75
    seen; 1/64 s steps add up exactly)."""
    for tick in range(seconds * 64):
        now[0] = tick / 64
        if tick % 3 == 0:
            CLIENT.error("Unable to update metadata from %s", [1])
        else:
            CLIENT.error("Unable connect to node with id %s: %s", 1, f"[Errno 111] try {tick}")


def test_the_logging_setup_lets_one_line_of_each_kind_through(lines: Lines) -> None:
    _setup_logging("INFO")
    installed = [f for f in CLIENT.filters if isinstance(f, RepeatFilter)]
    assert len(installed) == 1
    assert installed[0].interval == CLIENT_LOG_INTERVAL
    assert [f for f in CONN.filters if isinstance(f, RepeatFilter)] == installed  # one state
    _setup_logging("INFO")  # set up again (before and after the settings): still one
    assert len([f for f in CLIENT.filters if isinstance(f, RepeatFilter)]) == 1

    for _ in range(150):  # two seconds of an outage, before: 150 lines
        CLIENT.error("Unable connect to node with id %s: %s", 1, "[Errno 111] refused")
        CONN.warning("Connection to %s closed", "127.0.0.1:9092")
    assert lines.lines == [
        "aiokafka ERROR Unable connect to node with id 1: [Errno 111] refused",
        "aiokafka.conn WARNING Connection to 127.0.0.1:9092 closed",
    ]


def test_the_next_line_after_the_interval_counts_those_held_back() -> None:
    now = [0.0]
    repeat = RepeatFilter(10.0, clock=lambda: now[0])
    handler = Lines()
    handler.addFilter(repeat)
    CLIENT.addHandler(handler)
    try:
        outage(30, now)  # 1,920 lines in 30 s
    finally:
        CLIENT.removeHandler(handler)
    assert handler.lines == [
        "aiokafka ERROR Unable to update metadata from [1]",
        "aiokafka ERROR Unable connect to node with id 1: [Errno 111] try 1",
        "aiokafka ERROR Unable connect to node with id 1: [Errno 111] try 641 [426 more like "
        "this in the last 10 s, not logged]",
        "aiokafka ERROR Unable to update metadata from [1] [213 more like this in the last "
        "10 s, not logged]",
        "aiokafka ERROR Unable connect to node with id 1: [Errno 111] try 1282 [426 more "
        "like this in the last 10 s, not logged]",
        "aiokafka ERROR Unable to update metadata from [1] [213 more like this in the last "
        "10 s, not logged]",
    ]


def test_other_lines_and_levels_are_kept_apart() -> None:
    now = [0.0]
    repeat = RepeatFilter(10.0, clock=lambda: now[0], capacity=2)
    record = logging.LogRecord

    def let(name: str, level: int, msg: str) -> bool:
        return repeat.filter(record(name, level, __file__, 1, msg, None, None))

    assert let("aiokafka", logging.ERROR, "a")
    assert let("aiokafka", logging.WARNING, "a")  # another level
    assert not let("aiokafka", logging.ERROR, "a")
    assert let("aiokafka", logging.ERROR, "b")  # the oldest kind ("a" at ERROR) forgotten
    assert let("aiokafka", logging.ERROR, "a")  # capacity: the first one is let through again
