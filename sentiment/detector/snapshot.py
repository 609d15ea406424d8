"""One watch's detector state as bytes, and back: pickle, then zlib.

A watch's state is saved in parts (``WatchSnapshot``): one for the watch (baselines,
seasonal and surge tests, reported and cooling stories, retired stories, generation,
the story index's settings and counters: everything but its stories) and one per story
(the ``Story`` with its mention ids, its ``_Tracked`` heat, evidence and held levels,
its near-duplicate signatures). A save writes the watch part and the parts of the
stories that changed since the last save (``WatchChanges``), so it costs what the batch
touched, not what the watch holds.

Trust boundary: unpickling runs constructors named in the bytes, so a snapshot is only
ever read from our own ``detector_state`` and ``detector_story_state`` tables, which
only detectors write (never from a request, a file or another system). As a second
fence the unpickler accepts only the classes detector state is made of (``_ALLOWED``);
anything else is a ``SnapshotError``.

``STATE_FORMAT`` is stored beside each watch's part: bump it whenever a class pickled
here (``detector._WatchState``, ``detector._Tracked`` and everything they hold:
stories, heat, baselines, burst and surge tests, evidence, forecasts) or the layout of
the parts changes. A snapshot of another format is not loaded: its watch starts afresh
(with a new Signal-id generation), unless ``READABLE_FORMATS`` names it (a change that
old snapshots can be read into cheaply: a new field with a class-level default). A
watch restored from an older format is written whole by its next save (every part in
the current layout, under the current label: none is left in the old one for a later
detector that no longer reads it).

The running config and its forecast model are not written: they are named, and
resolved on load to the loading process's objects. Values derived from the config when
a watch's objects were built (window lengths, story expiry, baseline half-lives) stay
as they were until the watch starts afresh; thresholds read at decision time (spread
and tier levels) follow the current config at once. Changed ``burst_windows_minutes``
are the exception: every story counts in them, old and new stories must agree, so such
a snapshot is refused (``Detector.restore``) and the watch starts afresh.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import zlib
from dataclasses import dataclass
from typing import Any

from sentiment.detector.config import DetectorConfig
from sentiment.detector.heat import forecast_model

STATE_FORMAT = 9
"""The layout of the pickled state; bump it when a pickled class changes.
1: one pickle per watch; 2: a watch part and one part per story; 3: stories await the
ids of mentions not yet seen (``Story.awaited``, ``StoryIndex._awaited``); 4: stories
hold sentence vectors (``Story.vectors``; the index's paraphrase settings); 5: a story's
heat holds the fitted size model's inputs (root followers, mentions with text, reposts of
reposts, its earliest mention times); 6: it holds its authors' followers (a merge counts
an author of both stories once in the reach); 7: burst windows slide (per-minute counts
instead of one open tumbling window; the surge keeps a sliding maximum of story counts);
8: a watch holds back a mention dated far ahead of its event time, and keeps the
``received_at`` of the mention that set it (``_WatchState.held``, ``clock_received``);
9: each watch keeps its own retired-story memory, with the count of entries it dropped,
and a story's life carries a tag in its Signal ids (``_WatchState.forgotten``,
``_Tracked.life``, ``_Retired.life``: the retired stories are four lists)."""

READABLE_FORMATS = frozenset({2, 3, 4, 5, 6, 7, 8, STATE_FORMAT})
"""The formats this detector restores: 2 to 8 read as 9 with nothing awaited (2), no
vectors (2, 3), no size-model inputs counted yet (2-4), no followers per author (2-5),
tumbling burst windows (2-6), no mention held back nor the ``received_at`` of the
watch's event time (2-7: its next mention far ahead waits for the one after it, as in a
replay) and no life tags (2-8: the retired stories' three lists; as the memory was then
shared by a process's watches, another watch may have dropped this one's entries
uncounted, so the restored watch counts one dropped: its stories' new lives are tagged
``r1.`` and on, never reusing an id sent before): the class defaults stand in for what
they lack, and the
burst windows' and the surge's ``__setstate__`` convert theirs (an open window's count
placed at its first minute, without the usual rate it was tested against; the window
before it empty). Until such a story expires, a
fitted size model reads its counts of comments and reposts of reposts from the restore
on, and its milestones from the mentions after it; a merge counts its authors shared
with the other story twice in the reach, as before; a story bursting at the upgrade
bursts again once both halves of a window hold minutes counted after it."""

PROTOCOL = pickle.HIGHEST_PROTOCOL
COMPRESSION_LEVEL = 1  # zlib: fast; the state is mostly ids and small numbers

_CONFIG = "detector-config"
_FORECAST = "forecast-model"

_BUILTINS = frozenset(
    {"bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset", "int", "list"}
    | {"object", "range", "set", "slice", "str", "tuple"}
)
_NUMPY = frozenset({"_frombuffer", "_reconstruct", "dtype", "ndarray", "scalar"})
_ALLOWED_MODULES = frozenset({"collections", "copyreg", "datetime", "core.events", "_codecs"})
_ALLOWED_PREFIXES = ("sentiment.detector.", "pydantic.", "pydantic_core")


@dataclass(frozen=True)
class WatchSnapshot:
    """A watch's whole state: its watch-level part and the part of each story it holds."""

    watch: bytes
    stories: dict[str, bytes]  # story id -> its part


@dataclass(frozen=True)
class WatchChanges:
    """What a save writes of one watch: its watch-level part, the parts of the stories
    that changed since the last save, the ids of the stories it no longer holds.
    ``whole``: ``stories`` are all the watch holds (the store drops any other)."""

    watch: bytes
    stories: dict[str, bytes]
    removed: frozenset[str]
    whole: bool

    @property
    def size(self) -> int:
        """Bytes written."""
        return len(self.watch) + sum(len(blob) for blob in self.stories.values())


class SnapshotError(Exception):
    """The bytes are not a snapshot this detector can load."""


def _shared(name: str) -> object:
    """Stands in a snapshot for an object of the loading process (``SnapshotCodec``):
    the unpickler resolves it by name, to that process's object."""
    raise pickle.UnpicklingError(f"shared object {name!r} outside a snapshot")


class _Unpickler(pickle.Unpickler):
    def __init__(
        self, file: io.BytesIO, shared: dict[str, object], found: dict[tuple[str, str], Any]
    ) -> None:
        super().__init__(file)
        self._shared = shared
        self._found = found  # classes allowed so far (a story part names a dozen)

    def _resolve(self, name: Any) -> object:
        try:
            return self._shared[name]
        except (KeyError, TypeError):
            raise pickle.UnpicklingError(f"unknown shared object {name!r}") from None

    def find_class(self, module: str, name: str) -> Any:
        found = self._found.get((module, name))
        if found is not None:
            return found
        if module == "builtins":
            allowed = name in _BUILTINS
        elif module == "numpy" or module.startswith("numpy."):
            allowed = name in _NUMPY or module == "numpy.dtypes"
        else:
            allowed = module in _ALLOWED_MODULES or module.startswith(_ALLOWED_PREFIXES)
        if not allowed:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of detector state")
        if module == __name__ and name == _shared.__name__:
            return self._resolve
        found = self._found[(module, name)] = super().find_class(module, name)
        return found


class SnapshotCodec:
    """Pickles detector state against one config (its shared objects are not written:
    a pickler's ``dispatch_table`` names them, so that no Python code runs for the
    hundreds of other objects a story holds, as a ``persistent_id`` would)."""

    def __init__(self, config: DetectorConfig) -> None:
        model = forecast_model(config)
        self._by_id = {id(config): _CONFIG, id(model): _FORECAST}
        self._by_name: dict[str, object] = {_CONFIG: config, _FORECAST: model}
        self._table = dict(copyreg.dispatch_table)
        self._table[type(config)] = self._table[type(model)] = self._reduce
        self._found: dict[tuple[str, str], Any] = {}

    def _reduce(self, obj: Any) -> Any:
        name = self._by_id.get(id(obj))
        if name is None:  # another config than the running one: pickled whole
            return obj.__reduce_ex__(PROTOCOL)
        return _shared, (name,)

    def dumps(self, state: object) -> bytes:
        buffer = io.BytesIO()
        pickler = pickle.Pickler(buffer, protocol=PROTOCOL)
        pickler.dispatch_table = self._table
        pickler.dump(state)
        return zlib.compress(buffer.getvalue(), COMPRESSION_LEVEL)

    def loads(self, blob: bytes) -> object:
        """The state in ``blob``; ``SnapshotError`` for anything that is not a snapshot."""
        try:
            raw = zlib.decompress(blob)
            return _Unpickler(io.BytesIO(raw), self._by_name, self._found).load()
        except Exception as exc:  # a damaged snapshot can fail in any constructor
            raise SnapshotError(f"cannot read the snapshot: {type(exc).__name__}: {exc}") from exc
