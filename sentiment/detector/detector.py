"""The detector's synchronous core: scored mentions in, Signals out, in event time.

``Detector.observe`` assigns the mention to a story, updates the story's heat, computes
its spread level and crisis tier under hysteresis and returns a Signal when the reported
(tier, spread) pair changed. Changes among tier-0 levels below ``signal_min_spread`` are
not reported (background chatter stays silent).

Time is the watch's event time: the latest ``created_at`` seen for the watch. Every
``sweep_interval_minutes`` of it, the watch's reported stories are re-evaluated so that a
story that went quiet cools down (and says so) without needing a new mention.

A mention dated far ahead of that (more than ``future_tolerance_minutes``; a bad
timestamp in a replayed file or a webhook batch, a client-set date) would drag event time
forward by itself: every story of the watch would look old at once, their forecast ages
passed, their windows empty, and the later ones would never be reported. Unless it is
live (received within the tolerance of its own date: the watch's latest mentions came
from a source that lags) or wall time shows that much time passed (its ``received_at``
that much after that of the mention that set event time: a watch quiet for a day, live),
such a mention is held back
(``_WatchState.held``, saved with the watch) until the watch's next mention tells: one
dated at most the tolerance before it, or later, says time did move on (a quiet spell in
a replay): the held mention is taken in at its own time, then the next one, so the
decisions are those of taking it in at once (its Signals come a mention later); one
dated earlier, but not before the watch's event time, says it did not: the held mention
is counted at the watch's event time (``future_dated``, a warning), as if it had come
dated then. One dated before the event time (a late post: a source that lags, another
source's backfill) tells neither: it is taken in, and the held mention waits on.
``settle`` takes in what a watch holds at the end of an input. ``evaluate`` and
``size_inputs`` do not count a held mention. A watch's first mention, with no event
time to compare with, sets it.

Decisions depend only on the order of the mentions of each watch (the bus keeps it: the
"scored" topic is keyed by watch), so a replay gives the same Signals with the same ids:
``f"{story_id}#{n}"``, n counting the story's Signals (``f"{story_id}#{generation}.{n}"``
outside replays: each watch's state carries a generation, random when the state starts
afresh, kept when it is restored from a snapshot). A redelivered mention (an id the
story already counted) changes nothing. A story forgotten and later revived keeps
counting its Signals from where it stopped, and its reposts still carry its root's
label, as long as its watch's retired-story memory holds it: the last
``4 * max_stories`` stories the watch forgot that had signalled or had a label
(``_WatchState.retired``: each watch's own, saved with it, so neither another watch nor
a restore changes what it keeps). A story revived after its entry was dropped starts
afresh (tier 0 until its own mentions say more) under a new life tag:
``f"{story_id}#{generation}r{k}.{n}"``, k the watch's count of dropped entries when it
started (``forgotten``, saved with the watch, only ever growing), so its Signal ids are
none an earlier life of it sent (the alerter applies a Signal id once).

Everything the detector knows about a watch lives in that watch's ``_WatchState`` (its
stories, baselines, surge test, retired stories, their dropped count and generation):
``snapshot`` and ``restore`` move it to and from bytes (``snapshot.py``: a watch-level
part and one part per story), so that a watch can be saved after each batch and picked
up by another process (``service.py``). Once a watch has been saved (or restored), the
detector notes which of its stories changed since (``_WatchState.changed``: every story
a mention joined, a decision or sweep re-evaluated, ``evaluate`` looked at, or that was
forgotten): ``changes`` gives only their parts, so a save costs what a batch touched.

Out-of-order arrival (``stories.py``, rule 6): a mention that comes after its children
but whose parent's story already holds its ancestors displaces the young story its
children opened; ``_fold`` dissolves that story and takes its mentions in again (their
story-level counts only: the watch's rates counted them already), so a cascade that
arrives shuffled counts as the one story it is in order. Only a story that never
signalled, holds at most ``EARLY_MAX`` mentions and is at most ``EARLY_MINUTES`` old
(event time) is folded: such a story keeps its mentions (``_Tracked.early``) for it.
Any other displaced story is merged (``_merge``): its heat, evidence, mention ids and
texts become the other story's, and, when it had signalled, its last Signal names the
story it is part of (``merged_into``; tier 0), so that its incident joins that story's.

Drill mentions are kept apart from real ones (their own stories, baseline and ids,
``f"{watch}:drill:{root}"``): a drill never inflates a real story, and a real mention
never hides in a drill.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import logging
import math
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from core.events import HeatFeatures, Label, Mention, ScoredMention, Signal, WatchMatch
from sentiment.classifier import ABSTAIN_SUFFIX
from sentiment.detector.burst import SeasonalBaseline
from sentiment.detector.config import DetectorConfig
from sentiment.detector.cues import ComplaintCues
from sentiment.detector.evidence import EvidencePicker
from sentiment.detector.heat import HeatSnapshot, LiveHeat, RateBaseline, StoryHeat
from sentiment.detector.policy import (
    Held,
    crisis_tier,
    explain,
    hold,
    spread2_without_momentum,
    spread_level,
)
from sentiment.detector.snapshot import (
    SnapshotCodec,
    SnapshotError,
    WatchChanges,
    WatchSnapshot,
)
from sentiment.detector.stories import Assignment, Story, StoryIndex
from sentiment.detector.surge import WatchSurge

log = logging.getLogger(__name__)

NO_WATCH = WatchMatch(id="_")
"""The watch of mentions that carry none."""

EARLY_MAX = 8
"""Mentions an orphan story keeps to be folded into its cascade when its parent arrives
late (beyond: it is a story of its own)."""
EARLY_MINUTES = 30.0
"""Event time after its first mention during which an orphan story may still be folded."""
EARLY_TEXT_CHARS = 2_000
"""Text an early mention keeps (a story's row holds its early mentions: a 40,000-character
post must not make it heavy; cues and near-duplicates are found in the first part)."""
_LOGGED_FUTURE = 10
"""Mentions counted at their watch's event time (``Detector.future_dated``) logged one
by one; then every 1,000th."""
REPORT_AHEAD = timedelta(milliseconds=1)
"""A forecast Signal (``detector.forecast_report_minutes``) holds the heat at the story's
age (the mentions before it) and is stamped this much earlier: a reader that takes a
story's latest line before ``t0 + age`` finds it, whether it compares strictly or not."""

WatchKey = tuple[str, bool]
"""(watch id, drill): the unit of detector state."""


class MentionRefused(ValueError):
    """A mention the detector can never count (raised before anything of it is counted:
    the service dead-letters it at once)."""


def _countable_dates(config: DetectorConfig) -> tuple[datetime, datetime]:
    """The event times the detector can count a mention at: its windows, expiry, sweeps
    and forecast reports reach that far either side of a date, and Python's dates end at
    years 1 and 9999 (a mention dated 9999-12-31 overflowed on every later mention of its
    watch)."""
    minutes = max(
        config.story_expiry_hours * 60,
        config.long_window_minutes,
        config.sweep_interval_minutes,
        config.downgrade_cooldown_minutes,
        config.future_tolerance_minutes or 0.0,
        2 * max(config.burst_windows_minutes, default=0),
        max(config.forecast_report_minutes, default=0.0),
    )
    reach = timedelta(days=1) + timedelta(minutes=min(minutes, 1_000 * 365 * 24 * 60))
    return datetime.min.replace(tzinfo=UTC) + reach, datetime.max.replace(tzinfo=UTC) - reach


@dataclass(eq=False)
class _Tracked:
    """What the detector holds per story beside the story itself."""

    heat: StoryHeat
    evidence: EvidencePicker
    drill: bool
    signals: int = 0
    spread: Held = field(default_factory=Held)
    tier: Held = field(default_factory=Held)
    reported_tier: int = 0
    reported_spread: int = 0
    # the mentions of a young story that started as an orphan (``EARLY_MAX`` at most,
    # while it has never signalled): taken in again if a late parent folds it into its
    # cascade (``Detector._fold``); None once too big or too old, and in snapshots
    # older than STATE_FORMAT 3 (the class default)
    early: list[ScoredMention] | None = None
    # forecast reports (``detector.forecast_report_minutes``): the index of the next age
    # to consider, how many of ``signals`` were forecasts, and the due time (epoch
    # minutes) of the story's live entry in its watch's ``reports`` (None: no entry)
    next_report: int = 0
    forecasts: int = 0
    report_due: float | None = None
    report_from: datetime | None = None  # the first mention's time it was planned from
    # the tag of this life of the story in its Signal ids: "" or "r<n>." (n: its watch's
    # ``forgotten`` when the story started without a retired entry; "" in snapshots
    # older than STATE_FORMAT 9, the class default)
    life: str = ""

    @property
    def signalled(self) -> bool:
        """Whether the story sent a Signal of its levels (forecast reports aside)."""
        return self.signals > self.forecasts


def _vector(scored: ScoredMention) -> bytes | None:
    """The mention's sentence vector (int8 bytes), if the scorer attached a valid one (an
    invalid one is logged and left out: the mention still counts)."""
    packed = scored.embedding
    if packed is None:
        return None
    try:
        raw = base64.b64decode(packed, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not raw:
        log.warning("mention %s: embedding is not base64 int8; ignored", scored.mention.id)
        return None
    return raw


def _why_merged(assignment: Assignment) -> str:
    if assignment.reason == "root":
        return "copies of its root's text came before the root"
    return "a late mention links the two cascades"


def _may_cool(tracked: _Tracked, heat: LiveHeat, config: DetectorConfig) -> bool:
    """Whether time alone (no new mention) can change the story's held levels: spread 3
    needs momentum, and so does a spread 2 that rests on the rate or a burst (not on its
    authors or reach, which only change with mentions: as do level 1 and the tier's
    sentiment); a pending lower level completes its cool-down with time."""
    spread = tracked.spread.level
    return (
        spread >= 3
        or (spread == 2 and not spread2_without_momentum(heat, config))
        or tracked.spread.lower_since is not None
        or tracked.tier.lower_since is not None
    )


@dataclass(frozen=True)
class _Retired:
    """What outlives a forgotten story, so that it can come back consistently."""

    signals: int
    label: Label | None
    life: str = ""  # the tag of its life in its Signal ids (``_Tracked.life``)


@dataclass(eq=False)
class _WatchState:
    index: StoryIndex
    baseline: RateBaseline
    seasonal: SeasonalBaseline
    surge: WatchSurge
    generation: str = ""  # goes into the watch's Signal ids: "" or "<hex>."
    watch: WatchMatch = NO_WATCH  # the latest seen (surge Signals name it)
    tracked: dict[str, _Tracked] = field(default_factory=dict)
    # stories not quiet, each with its rank of insertion (sweeps go through them in order)
    reported: dict[str, int] = field(default_factory=dict)
    reported_seq: int = 0
    # stories whose held levels can change with time alone (``_may_cool``): sweeps look
    # at these only (the reported ones among them, in the order of ``reported``)
    cooling: dict[str, None] = field(default_factory=dict)
    now: datetime | None = None
    now_minutes: float = 0.0  # ``now`` in epoch minutes (computed once per change)
    next_sweep: datetime | None = None
    # the ``received_at`` of the mention that set ``now`` (None: it had none, or a
    # snapshot of STATE_FORMAT 7 or older: the class default), and the mention held back
    # for being dated far ahead of ``now`` (``Detector.observe``), awaiting the next one
    clock_received: datetime | None = None
    held: ScoredMention | None = None
    # forgotten stories of this watch, least recently retired first (at most
    # ``4 * max_stories``: ``Detector._remember_retired``), and how many that had sent
    # Signals were dropped from it, ever (a new life of a story that has no entry tags
    # its Signal ids with it: ``_Tracked.life``)
    retired: OrderedDict[str, _Retired] = field(default_factory=OrderedDict)
    forgotten: int = 0
    # whether a store holds this watch (it was saved or restored): only then are the
    # stories changed since (story ids; held, or forgotten since) noted in ``changed``
    stored: bool = False
    changed: set[str] = field(default_factory=set)
    # forecast reports to send (``detector.forecast_report_minutes``): a heap of (due in
    # epoch minutes, sequence, story id, the story's _Tracked), at most one live entry
    # per story (its ``report_due``; others are stale: skipped). Not saved: ``restore``
    # plans it again from each story's first mention and ``next_report``
    reports: list[tuple[float, int, str, _Tracked]] = field(default_factory=list)
    report_seq: int = 0

    def __getstate__(self) -> dict[str, object]:
        """For snapshots: the retired stories as four lists (a watch keeps up to
        ``4 * max_stories`` of them, and its row is written with every batch); the
        forecast reports left out."""
        state = dict(self.__dict__)
        state.pop("reports", None)
        retired = self.retired
        state["retired"] = (
            list(retired),
            [r.signals for r in retired.values()],
            [r.label for r in retired.values()],
            [r.life for r in retired.values()],
        )
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        packed = state.pop("retired")
        if not isinstance(packed, tuple) or len(packed) not in (3, 4):
            raise TypeError("the retired stories are not three or four lists")
        if len(packed) == 3:
            # STATE_FORMAT 8 and older: no lives, and the memory was shared by all the
            # watches of a process, so this watch's entries may have been dropped for
            # another's without a count: its stories' new lives take a tag all the same
            ids, signals, labels = packed
            lives: list[str] = [""] * len(ids)
            state["forgotten"] = 1
        else:
            ids, signals, labels, lives = packed
        self.__dict__.update(state)
        self.reports = []
        self.retired = OrderedDict(
            (story_id, _Retired(n, label, life))
            for story_id, n, label, life in zip(ids, signals, labels, lives, strict=True)
        )


@dataclass(frozen=True)
class Decision:
    """A story's levels at one moment (what ``evaluate`` returns; for replays and tests)."""

    story_id: str
    heat: HeatSnapshot
    raw_spread: int
    raw_tier: int
    spread: int
    tier: int


class Detector:
    def __init__(self, config: DetectorConfig, *, generation: str | None = "") -> None:
        """``generation`` goes into every Signal id: a watch whose state starts afresh
        (a restart without a snapshot) must not reuse the ids its predecessor already
        sent, or the alerter would take its new decisions for redeliveries. None: a
        random one for each watch started afresh (a restored watch keeps its own);
        replays leave it empty."""
        config = config.effective()
        self.config = config
        self._generation = generation
        self._cues = ComplaintCues(config.complaint_cues)
        self._cooldown = timedelta(minutes=config.downgrade_cooldown_minutes)
        self._sweep_every = timedelta(minutes=config.sweep_interval_minutes)
        tolerance = config.future_tolerance_minutes
        self._tolerance = None if tolerance is None else timedelta(minutes=tolerance)
        self._earliest, self._latest = _countable_dates(config)
        self._watches: dict[WatchKey, _WatchState] = {}
        self._retired_cap = 4 * config.max_stories  # retired stories kept per watch
        self._codec: SnapshotCodec | None = None
        # stories joined to another after arriving out of order, since this detector
        # started (counters for the service's metrics)
        self.stories_folded = 0
        self.stories_merged = 0
        # mentions dated far ahead that the next mention of their watch did not follow:
        # counted at the watch's event time instead (since this detector started)
        self.future_dated = 0

    @property
    def stories_active(self) -> int:
        return sum(len(ws.index) for ws in self._watches.values())

    @property
    def watches_held(self) -> int:
        return len(self._watches)

    @staticmethod
    def key_of(scored: ScoredMention) -> WatchKey:
        """The watch state a mention goes to."""
        mention = scored.mention
        return ((mention.watch or NO_WATCH).id, mention.drill)

    def holds(self, key: WatchKey) -> bool:
        """Whether this detector holds state for the watch."""
        return key in self._watches

    def start(self, key: WatchKey) -> None:
        """Hold the watch, empty (its generation drawn), if it is not held: what its first
        mention would do, done before it (the service saves it before any Signal)."""
        self._watch(*key)

    def snapshot(self, key: WatchKey) -> WatchSnapshot:
        """The watch's whole state (``restore`` takes it back); KeyError when the watch
        is not held."""
        ws = self._watches[key]
        return WatchSnapshot(
            self._watch_part(ws),
            {story_id: self._story_part(ws, story_id) for story_id in ws.tracked},
        )

    def changes(self, key: WatchKey) -> WatchChanges:
        """What a save of the watch must write: the watch-level part and the parts of
        the stories changed since the last save (all of them when the watch was never
        saved nor restored). Hands the noted changes over: ``saved`` or ``unsaved``
        must follow, before the watch changes again. KeyError when not held."""
        ws = self._watches[key]
        if not ws.stored:
            whole = self.snapshot(key)
            return WatchChanges(whole.watch, whole.stories, frozenset(), whole=True)
        changed = ws.changed
        stories = {sid: self._story_part(ws, sid) for sid in changed if sid in ws.tracked}
        removed = frozenset(sid for sid in changed if sid not in ws.tracked)
        watch = self._watch_part(ws)
        # handed over only once every part is written out: a part that cannot be (raises)
        # leaves the notes in place, for the save the bus's retry of the batch makes
        ws.changed = set()
        return WatchChanges(watch, stories, removed, whole=False)

    def saved(self, key: WatchKey, changes: WatchChanges) -> None:
        """The store now holds ``changes`` (from ``changes``) of the watch."""
        ws = self._watches.get(key)
        if ws is not None:
            ws.stored = True

    def unsaved(self, key: WatchKey, changes: WatchChanges) -> None:
        """Saving ``changes`` failed: they are written with the next save."""
        ws = self._watches.get(key)
        if ws is not None and ws.stored:
            ws.changed.update(changes.stories, changes.removed)

    def restore(self, key: WatchKey, snapshot: WatchSnapshot, *, rewrite: bool = False) -> None:
        """Replace the watch's state with a ``snapshot``; raises ``SnapshotError`` (and
        changes nothing) when it is not a snapshot of this watch. ``rewrite``: the
        snapshot is of an older ``STATE_FORMAT``: the next save writes the watch whole,
        every part in the current layout (it would else write only the parts that
        changed, leaving the others in the old one under the current format's label)."""
        codec = self._snapshots()
        state = codec.loads(snapshot.watch)
        expected = f"{key[0]}:drill" if key[1] else key[0]
        if (
            not isinstance(state, _WatchState)
            or state.index.key != expected
            or state.tracked
            or len(state.index)
        ):
            raise SnapshotError(f"the snapshot does not hold the state of watch {expected!r}")
        windows = tuple(self.config.burst_windows_minutes)
        if state.surge.burst_windows != windows:
            # the watch's stories and surge test count in the old windows, new stories in
            # the new ones: every mention that starts a story would fail to add up
            raise SnapshotError(
                f"it counts in burst windows {list(state.surge.burst_windows)} (minutes), "
                f"the config now has {list(windows)}"
            )
        parts: list[tuple[Story, tuple[bytes, int] | None]] = []
        tracked: dict[str, _Tracked] = {}
        for story_id, blob in snapshot.stories.items():
            part = codec.loads(blob)
            if not (
                isinstance(part, tuple)
                and len(part) == 3
                and isinstance(part[0], Story)
                and isinstance(part[1], _Tracked)
                and part[0].id == story_id
                and story_id.startswith(f"{expected}:")
            ):
                raise SnapshotError(f"the part of story {story_id!r} is not one of {expected!r}")
            story, tracked[story_id], texts = part
            parts.append((story, texts))
        state.index.follow(self.config)
        try:
            state.index.adopt(parts)
        except ValueError as exc:
            raise SnapshotError(f"cannot rebuild the stories of {expected!r}: {exc}") from exc
        state.tracked = {story.id: tracked[story.id] for story in state.index.stories()}
        if self.config.forecast_report_minutes and state.now is not None:
            for story in state.index.stories():
                held = state.tracked[story.id]
                held.report_due = None
                if self.config.forecast_report_quiet or story.id in state.reported:
                    self._plan_report(state, story, held)
        state.stored = not rewrite
        state.changed = set()
        self._trim_retired(state)  # (``max_stories`` may have been lowered since)
        self._watches[key] = state

    def forget_all(self) -> None:
        """Drop every watch's state (the next mention of a watch starts it afresh, or
        restores it)."""
        self._watches.clear()

    def forget(self, key: WatchKey) -> None:
        """Drop one watch's state (the next mention of it restores it, or starts it)."""
        self._watches.pop(key, None)

    def _snapshots(self) -> SnapshotCodec:
        if self._codec is None:
            self._codec = SnapshotCodec(self.config)
        return self._codec

    def _watch_part(self, ws: _WatchState) -> bytes:
        """The watch-level state: everything but the stories (and the change notes)."""
        bare = replace(
            ws, index=ws.index.without_stories(), tracked={}, stored=False, changed=set()
        )
        return self._snapshots().dumps(bare)

    def _story_part(self, ws: _WatchState, story_id: str) -> bytes:
        """One held story: (its ``Story``, its ``_Tracked``, its indexed texts)."""
        story, texts = ws.index.story_part(story_id)
        return self._snapshots().dumps((story, ws.tracked[story_id], texts))

    def observe(self, scored: ScoredMention) -> list[Signal]:
        """Take one scored mention in; the Signals it causes (usually none).

        Only posts count: an edit or a deletion (``Mention.change``) changes nothing,
        whether or not its post is still held. (An id the detector no longer held, the
        post past a story's cap or expired, was counted as a new one-post story; the
        listener routes deletions of posts it remembers long after.)

        A mention dated far ahead of the watch's event time is held back until the
        next one (module docstring): its Signals come with that one's, before them.
        One dated within days of the ends of Python's dates (year 1, 9999), where the
        detector's windows cannot reach, raises ``MentionRefused`` (nothing counted)."""
        mention = scored.mention
        if mention.change != "created":
            return []
        if not self._earliest <= mention.created_at <= self._latest:
            raise MentionRefused(
                f"mention {mention.id!r} is dated {mention.created_at.isoformat()}, outside "
                f"the dates the detector can count ({self._earliest.date()} to "
                f"{self._latest.date()}): not counted"
            )
        ws = self._watch((mention.watch or NO_WATCH).id, mention.drill)
        signals: list[Signal] = []
        held = ws.held
        if held is not None:
            if mention.id == held.mention.id:
                return []  # the held mention again (a redelivery): it is taken in once
            tolerance = self._tolerance
            moved_on = (
                tolerance is None or mention.created_at >= held.mention.created_at - tolerance
            )
            if not moved_on and ws.index.story_of(mention.id) is not None:
                return []  # an old mention again (a redelivery) says nothing of the time
            if not moved_on and ws.now is not None and mention.created_at < ws.now:
                # a late one (a source that lags, another source's backfill): older than
                # the stream whether or not time moved on, it says nothing of that
                return self._take_in(ws, scored)
            ws.held = None
            signals = self._take_in(ws, held if moved_on else self._at_event_time(ws, held))
        if self._far_ahead(ws, mention):
            if ws.index.story_of(mention.id) is None:
                ws.held = scored
            # (else counted already, at event time, and delivered again: neither held
            # again nor let move the forecast reports to its date)
            return signals
        signals.extend(self._take_in(ws, scored))
        return signals

    def holding(self) -> list[WatchKey]:
        """The watches holding a mention back (dated far ahead, awaiting the next)."""
        return [key for key, ws in self._watches.items() if ws.held is not None]

    def settle(self, key: WatchKey) -> list[Signal]:
        """The end of an input (a replay's last line): the mention the watch holds back,
        if any, taken in at its own time (nothing came after it to say otherwise, and
        nothing can be misjudged by its date any more); its Signals."""
        ws = self._watches.get(key)
        if ws is None or ws.held is None:
            return []
        held, ws.held = ws.held, None
        return self._take_in(ws, held)

    def _far_ahead(self, ws: _WatchState, mention: Mention) -> bool:
        """Whether ``mention`` is dated more than the tolerance ahead of the watch's event
        time, more than wall time shows passing since the mention that set it (both
        ``received_at``, where known): it must wait for the next mention."""
        tolerance, now = self._tolerance, ws.now
        if tolerance is None or now is None:
            return False
        ahead = mention.created_at - now
        if ahead <= tolerance:
            return False
        received, before = mention.received_at, ws.clock_received
        if received is not None and abs(received - mention.created_at) <= tolerance:
            # live, dated about when it arrived: the watch's event time is behind (its
            # latest mentions came from a source that lags, a feed hours late), not it
            return False
        return received is None or before is None or received - before < ahead - tolerance

    def _at_event_time(self, ws: _WatchState, held: ScoredMention) -> ScoredMention:
        """A held mention the next one did not follow (a bad timestamp), dated at the
        watch's event time instead; logged and counted."""
        now = ws.now
        assert now is not None  # (a mention is held back only against an event time)
        mention = held.mention
        self.future_dated += 1
        if self.future_dated <= _LOGGED_FUTURE or self.future_dated % 1000 == 0:
            log.warning(
                "watch %s: mention %s is dated %s, %s ahead of the watch's event time, and "
                "the next mention is not: counted at %s (a bad timestamp? %d so far)",
                ws.index.key,
                mention.id,
                mention.created_at.isoformat(),
                mention.created_at - now,
                now.isoformat(),
                self.future_dated,
            )
        redated = mention.model_copy(update={"created_at": now})
        return held.model_copy(update={"mention": redated})

    def _take_in(self, ws: _WatchState, scored: ScoredMention) -> list[Signal]:
        """``observe`` proper: count the mention at its ``created_at``; its Signals."""
        mention = scored.mention
        watch = mention.watch or NO_WATCH
        ws.watch = watch
        at = mention.created_at
        at_minutes = at.timestamp() / 60
        reports = ws.reports
        signals: list[Signal] = []
        if reports and reports[0][0] <= at_minutes:
            signals = self._report_forecasts(ws, at_minutes)
        assignment = self._assign(ws, scored)
        if assignment is None:
            return signals  # already counted: a redelivery
        story = assignment.story
        minute = math.floor(at_minutes)  # the event minute, computed once
        ws.baseline.add_minute(minute)
        expected = ws.seasonal.per_minute_at(minute)
        ws.seasonal.add_minute(minute)
        if ws.now is None or at > ws.now:
            ws.now = at
            ws.now_minutes = at_minutes
            ws.clock_received = mention.received_at
        now = ws.now
        now_minute = math.floor(ws.now_minutes)
        tracked = self._take(ws, scored, assignment, now, expected, at_minutes)
        if self.config.surge_enabled:
            ws.surge.add(minute, expected, tracked.heat.burst, now_minute)

        folded: list[tuple[Story, _Tracked]] = []
        if assignment.displaced is not None:
            folded = self._fold(ws, assignment, now)
            if not folded:
                merged = self._merge(ws, story, assignment, now)
                if merged is not None:
                    signals.append(merged)
        signal = self._decide(ws, story, tracked, now, mention)
        if signal is not None:
            signals.append(signal)
        for other, other_tracked in folded:
            if other is not story:
                signal = self._decide(ws, other, other_tracked, now, None)
                if signal is not None:
                    signals.append(signal)
        if self.config.surge_enabled:
            surge = self._decide_surge(ws, watch, now, mention)
            if surge is not None:
                signals.append(surge)
        if ws.next_sweep is None or now >= ws.next_sweep:
            signals.extend(self._sweep(ws, now, skip=story.id))
            ws.next_sweep = now + self._sweep_every
        for dropped in ws.index.evict(now):
            self._retire(ws, dropped)
        return signals

    @staticmethod
    def _assign(ws: _WatchState, scored: ScoredMention) -> Assignment | None:
        """``StoryIndex.assign``. Where it dropped every story's sentence vectors (the
        scorer's model changed: vectors of another width), every story changed: a story
        saved with the old vectors would otherwise get them back on a restore, read at
        the new width."""
        mention = scored.mention
        index = ws.index
        width = index.vector_width
        assignment = index.assign(mention, mention.watch or NO_WATCH, _vector(scored))
        if width and index.vector_width != width and ws.stored:
            ws.changed.update(story.id for story in index.stories())
        return assignment

    def _take(
        self,
        ws: _WatchState,
        scored: ScoredMention,
        assignment: Assignment,
        now: datetime,
        expected: float | None,
        at_minutes: float,
    ) -> _Tracked:
        """Count a mention in the story it was assigned to (its heat, evidence and
        early mentions; not the watch's rates, not a decision)."""
        mention = scored.mention
        story = assignment.story
        if ws.stored:
            ws.changed.add(story.id)
        tracked = ws.tracked.get(story.id)
        if tracked is None:
            tracked = ws.tracked[story.id] = self._track(ws, story, mention.drill)
            if assignment.reason == "orphan":
                tracked.early = []
            if self.config.forecast_report_minutes and self.config.forecast_report_quiet:
                self._plan_report(ws, story, tracked)
        elif tracked.report_due is not None:
            self._follow_first(ws, story, tracked)
        label = scored.sentiment.label
        judged = not scored.sentiment.model.endswith(ABSTAIN_SUFFIX)
        tracked.heat.add(
            mention,
            label if judged else None,
            is_root=assignment.is_root,
            now=now,
            # "this phone is fire", "no refund needed, love it": not complaints
            cues=self._cues.find(mention.text) if label != "positive" else (),
            expected_per_minute=expected,
            at_minutes=at_minutes,
            deep=(parent := mention.parent_id) is not None and parent != story.root,
        )
        tracked.evidence.offer(scored, is_root=assignment.is_root)
        early = tracked.early
        if early is not None:
            if (
                len(early) < EARLY_MAX
                and not tracked.signalled
                and (now - story.first_at).total_seconds() <= EARLY_MINUTES * 60
            ):
                if len(mention.text) > EARLY_TEXT_CHARS:
                    short = mention.model_copy(update={"text": mention.text[:EARLY_TEXT_CHARS]})
                    scored = scored.model_copy(update={"mention": short})
                early.append(scored)
            else:
                tracked.early = None
        return tracked

    def _fold(
        self, ws: _WatchState, assignment: Assignment, now: datetime
    ) -> list[tuple[Story, _Tracked]]:
        """A mention joined its parent's story while a young orphan story awaited it
        (its children came before it, its parent before them): dissolve that story and
        take its mentions in again, so that they join the cascade as they would have,
        had they come in order. Not once it signalled, grew or aged beyond the early
        limits (``_merge`` then). The stories the mentions joined (none: not folded)."""
        displaced = assignment.displaced
        if displaced is None:
            return []
        tracked = ws.tracked.get(displaced.id)
        if tracked is None or tracked.early is None or tracked.signalled:
            return []
        early = tracked.early
        self.stories_folded += 1
        ws.index.dissolve(displaced)
        del ws.tracked[displaced.id]
        ws.reported.pop(displaced.id, None)
        ws.cooling.pop(displaced.id, None)
        if ws.stored:
            ws.changed.add(displaced.id)
        if tracked.signals:  # forecast reports (``forecast_report_quiet``): ids used
            self._remember_retired(ws, displaced.id, tracked)
        touched: dict[str, tuple[Story, _Tracked]] = {}
        pending = list(early)
        # Those whose parent is known first, then those without a parent (copies of a
        # root text find it), then the rest: chains link up in order.
        while pending:
            index = ws.index
            ready = next(
                (
                    i
                    for i, item in enumerate(pending)
                    if item.mention.parent_id is not None
                    and index.story_of(item.mention.parent_id) is not None
                ),
                None,
            )
            if ready is None:
                ready = next(
                    (i for i, item in enumerate(pending) if item.mention.parent_id is None), 0
                )
            scored = pending.pop(ready)
            mention = scored.mention
            again = self._assign(ws, scored)
            if again is None:
                continue
            at_minutes = mention.created_at.timestamp() / 60
            expected = ws.seasonal.per_minute_at(math.floor(at_minutes))
            taken = self._take(ws, scored, again, now, expected, at_minutes)
            touched[again.story.id] = (again.story, taken)
        return list(touched.values())

    def _merge(
        self,
        ws: _WatchState,
        survivor: Story,
        assignment: Assignment,
        now: datetime,
    ) -> Signal | None:
        """The displaced story could not be folded (it signalled, grew or aged): it
        becomes part of ``survivor``, heat and all (``StoryHeat.absorb``). Its last
        Signal (when it signalled before) says so: tier and spread 0, ``merged_into``
        the survivor, so the incident it opened joins the survivor's."""
        absorbed = assignment.displaced
        if absorbed is None or absorbed is survivor or ws.index.get(absorbed.id) is None:
            return None
        gone = ws.tracked.pop(absorbed.id, None)
        kept = ws.tracked[survivor.id]
        ws.index.merge(survivor, absorbed)
        self.stories_merged += 1
        ws.reported.pop(absorbed.id, None)
        ws.cooling.pop(absorbed.id, None)
        if ws.stored:
            ws.changed.update((absorbed.id, survivor.id))
        if gone is None:
            return None
        log.info(
            "story %s (%d mentions) is part of story %s: merged",
            absorbed.id,
            gone.heat.mentions,
            survivor.id,
        )
        if kept.report_due is not None:
            self._follow_first(ws, survivor, kept)
        signal = None
        if gone.signalled:
            gone.signals += 1
            heat = gone.heat.snapshot(now, ws.baseline.per_minute())
            signal = Signal(
                id=f"{absorbed.id}#{ws.generation}{gone.life}{gone.signals}",
                story_id=absorbed.id,
                story_root=absorbed.root,
                watch=absorbed.watch,
                tier=0,
                previous_tier=gone.reported_tier,
                spread=0,
                heat=heat.features(),
                explanation=(
                    f"Part of story {survivor.id} ({_why_merged(assignment)}): its "
                    f"{heat.mentions} mentions count there from now on."
                ),
                at=now,
                drill=gone.drill,
                merged_into=survivor.id,
            )
        kept.heat.absorb(gone.heat)
        kept.evidence.absorb(gone.evidence)
        kept.early = None  # what it holds is no longer the whole story
        self._remember_retired(ws, absorbed.id, gone)
        return signal

    def evaluate(
        self, watch_id: str, story_id: str, *, drill: bool = False, at: datetime | None = None
    ) -> Decision | None:
        """A story's current levels, without changing the reported levels (None when not
        held). ``at``: evaluate at this event time (not before the watch's latest
        mention; benchmarks sample stories at fixed ages)."""
        ws = self._watches.get((watch_id, drill))
        if ws is None or ws.now is None:
            return None
        tracked = ws.tracked.get(story_id)
        if tracked is None:
            return None
        if ws.stored:
            ws.changed.add(story_id)  # the heat's windows drop what ``at`` leaves behind
        now = ws.now if at is None else max(at, ws.now)
        now_minutes = now.timestamp() / 60
        baseline = ws.baseline.per_minute()
        # the levels as _decide reads them (the spread-3 rule's own predictor), the heat
        # as a Signal would report it
        raw_spread, raw_tier = self._levels(tracked.heat.live(now, baseline, now_minutes))
        heat = tracked.heat.snapshot(now, baseline, now_minutes)
        return Decision(
            story_id, heat, raw_spread, raw_tier, tracked.spread.level, tracked.tier.level
        )

    def size_inputs(
        self, watch_id: str, story_id: str, at: datetime, *, drill: bool = False
    ) -> tuple[int, list[float]] | None:
        """A story's mentions and the inputs of a fitted size model at event time ``at``
        (not before the watch's latest mention), None when not held: what ``crisiswatch
        bench fit-size`` learns from."""
        ws = self._watches.get((watch_id, drill))
        tracked = None if ws is None else ws.tracked.get(story_id)
        if ws is None or ws.now is None or tracked is None:
            return None
        if ws.stored:
            ws.changed.add(story_id)  # the heat's windows drop what ``at`` leaves behind
        now = max(at, ws.now)
        return tracked.heat.mentions, tracked.heat.size_features(now)

    def story_of(self, watch_id: str, mention_id: str, *, drill: bool = False) -> str | None:
        """The id of the story holding ``mention_id`` (None when not held)."""
        ws = self._watches.get((watch_id, drill))
        return None if ws is None else ws.index.story_of(mention_id)

    def _watch(self, watch_id: str, drill: bool) -> _WatchState:
        ws = self._watches.get((watch_id, drill))
        if ws is None:
            cfg = self.config
            key = f"{watch_id}:drill" if drill else watch_id
            generation = uuid.uuid4().hex[:8] if self._generation is None else self._generation
            ws = self._watches[(watch_id, drill)] = _WatchState(
                index=StoryIndex(key, cfg),
                baseline=RateBaseline(
                    cfg.baseline_half_life_minutes,
                    cfg.baseline_warmup_minutes,
                    cfg.baseline_min_per_minute,
                ),
                seasonal=SeasonalBaseline(
                    cfg.seasonal_half_life_minutes,
                    cfg.seasonal_warmup_minutes,
                    cfg.baseline_min_per_minute,
                ),
                surge=WatchSurge(cfg),
                generation=f"{generation}." if generation else "",
            )
        return ws

    def _track(self, ws: _WatchState, story: Story, drill: bool) -> _Tracked:
        cfg = self.config
        retired = ws.retired.pop(story.id, None)
        if retired is None:
            # a new story, or a new life of one whose entry was dropped (its Signal ids
            # were used: a tag no earlier life of it can have, ``_remember_retired``)
            retired = _Retired(0, None, f"r{ws.forgotten}." if ws.forgotten else "")
        return _Tracked(
            heat=StoryHeat(cfg, story.first_at, retired.label),
            evidence=EvidencePicker(cfg.evidence_count, cfg.evidence_chars),
            drill=drill,
            signals=retired.signals,
            life=retired.life,
        )

    def _levels(self, heat: LiveHeat) -> tuple[int, int]:
        spread = spread_level(heat, self.config)
        tier = crisis_tier(spread, heat.negative_share, heat.has_cues, self.config)
        return spread, tier

    def _quiet(self, tier: int, spread: int) -> bool:
        return tier == 0 and spread < self.config.signal_min_spread

    def _decide(
        self,
        ws: _WatchState,
        story: Story,
        tracked: _Tracked,
        now: datetime,
        trigger: Mention | None,
    ) -> Signal | None:
        if ws.stored:
            ws.changed.add(story.id)
        now_minutes = ws.now_minutes if now == ws.now else now.timestamp() / 60
        baseline = ws.baseline.per_minute()
        live = LiveHeat(tracked.heat, now, baseline, now_minutes)  # (``StoryHeat.live``)
        raw_spread = spread_level(live, self.config)  # (``_levels``, inlined: hot path)
        raw_tier = crisis_tier(raw_spread, live.negative_share, live.has_cues, self.config)
        tracked.spread = hold(tracked.spread, raw_spread, now, self._cooldown)
        tracked.tier = hold(tracked.tier, raw_tier, now, self._cooldown)
        if _may_cool(tracked, live, self.config):
            ws.cooling[story.id] = None
        else:
            ws.cooling.pop(story.id, None)
        tier, spread = tracked.tier.level, tracked.spread.level
        previous_tier, previous_spread = tracked.reported_tier, tracked.reported_spread
        if (tier, spread) == (previous_tier, previous_spread):
            return None
        tracked.reported_tier, tracked.reported_spread = tier, spread
        if self._quiet(tier, spread):
            ws.reported.pop(story.id, None)
            if self._quiet(previous_tier, previous_spread):
                return None
        elif story.id not in ws.reported:
            ws.reported[story.id] = ws.reported_seq
            ws.reported_seq += 1
            if self.config.forecast_report_minutes and tracked.report_due is None:
                self._plan_report(ws, story, tracked)
        heat = tracked.heat.snapshot(now, baseline, now_minutes)
        return self._signal(
            ws,
            story,
            tracked,
            heat,
            (previous_tier, tier, spread),
            explain(heat),
            at=trigger.created_at if trigger is not None else now,
            trigger_received_at=trigger.received_at if trigger is not None else None,
        )

    @staticmethod
    def _signal(
        ws: _WatchState,
        story: Story,
        tracked: _Tracked,
        heat: HeatSnapshot,
        levels: tuple[int, int, int],
        explanation: str,
        *,
        at: datetime,
        trigger_received_at: datetime | None = None,
        forecast_minutes: float | None = None,
    ) -> Signal:
        """The story's next Signal (numbered on from its last); ``levels``: (previous
        tier, tier, spread)."""
        tracked.signals += 1
        previous_tier, tier, spread = levels
        return Signal(
            id=f"{story.id}#{ws.generation}{tracked.life}{tracked.signals}",
            story_id=story.id,
            story_root=story.root,
            watch=story.watch,
            tier=tier,
            previous_tier=previous_tier,
            spread=spread,
            heat=heat.features(),
            explanation=explanation,
            evidence=tracked.evidence.pick(),
            at=at,
            trigger_received_at=trigger_received_at,
            drill=tracked.drill,
            forecast_minutes=forecast_minutes,
        )

    def _plan_report(self, ws: _WatchState, story: Story, tracked: _Tracked) -> None:
        """Put the story's next forecast report in its watch's heap: the first age from
        ``next_report`` on that is still ahead of the watch's event time (an age already
        passed cannot be read any more: later mentions are counted). The schedule
        follows from saved state alone (``first_at``, ``next_report``, ``now``)."""
        ages = self.config.forecast_report_minutes
        first = story.first_at.timestamp() / 60
        now = ws.now_minutes if ws.now is not None else -math.inf
        i = tracked.next_report
        while i < len(ages) and first + ages[i] <= now:
            i += 1
        tracked.next_report = i
        tracked.report_due = None
        tracked.report_from = story.first_at
        if i < len(ages):
            due = tracked.report_due = first + ages[i]
            heapq.heappush(ws.reports, (due, ws.report_seq, story.id, tracked))
            ws.report_seq += 1

    def _follow_first(self, ws: _WatchState, story: Story, tracked: _Tracked) -> None:
        """Plan again when the story's first mention moved (a late root, a merge)."""
        if story.first_at != tracked.report_from:
            self._plan_report(ws, story, tracked)

    def _report_forecasts(self, ws: _WatchState, until: float) -> list[Signal]:
        """The forecast Signals due by epoch minute ``until`` (called before the mention
        at ``until`` is counted; the watch's event time is before every live entry)."""
        signals: list[Signal] = []
        reports = ws.reports
        ages = self.config.forecast_report_minutes
        while reports and reports[0][0] <= until:
            due, _, story_id, tracked = heapq.heappop(reports)
            story = ws.index.get(story_id)
            if story is None or ws.tracked.get(story_id) is not tracked:
                continue  # expired, merged, folded, or a new life of the id
            if tracked.report_due != due:
                continue  # planned again since (its first mention moved)
            age = ages[tracked.next_report]
            tracked.next_report += 1
            tracked.report_due = None
            if not self.config.forecast_report_quiet and story_id not in ws.reported:
                continue  # quiet now: planned again if it is reported again
            signal = self._forecast(ws, story, tracked, age)
            if signal is not None:
                signals.append(signal)
            self._plan_report(ws, story, tracked)
        return signals

    def _forecast(
        self, ws: _WatchState, story: Story, tracked: _Tracked, age: float
    ) -> Signal | None:
        """A Signal reporting the story's forecast at ``age`` minutes, its levels as
        reported (None when the story has no forecast yet). The heat is read aside: no
        later decision depends on it having been read."""
        at = story.first_at + timedelta(minutes=age)
        if ws.stored:
            ws.changed.add(story.id)  # the heat's windows drop what ``at`` leaves behind
        heat = tracked.heat.snapshot_aside(at, ws.baseline.per_minute(), at.timestamp() / 60)
        if heat.predicted_size is None:
            return None
        tier = tracked.reported_tier
        signal = self._signal(
            ws,
            story,
            tracked,
            heat,
            (tier, tier, tracked.reported_spread),
            f"Forecast at {age:g} min: {explain(heat)}",
            at=at - REPORT_AHEAD,
            forecast_minutes=age,
        )
        tracked.forecasts += 1
        return signal

    def _decide_surge(
        self, ws: _WatchState, watch: WatchMatch, now: datetime, trigger: Mention | None
    ) -> Signal | None:
        """A Signal of kind "surge" when the watch's held surge level changes."""
        surge = ws.surge
        state = surge.state(now, math.floor(ws.now_minutes) if now == ws.now else None)
        surge.held = hold(surge.held, state.level, now, self._cooldown)
        level = surge.held.level
        if level == surge.reported:
            return None
        surge.reported = level
        surge.signals += 1
        story_id = f"{ws.index.key}:surge"
        return Signal(
            id=f"{story_id}#{ws.generation}{surge.signals}",
            story_id=story_id,
            story_root="surge",
            watch=watch,
            tier=level,
            previous_tier=1 - level,
            spread=2 * level,
            heat=HeatFeatures(
                mentions=state.count,
                mentions_window=state.count,
                window_minutes=state.window_minutes,
                unique_authors=0,
                reach=0,
                negative_share=0.0,
            ),
            explanation=state.explain(),
            at=trigger.created_at if trigger is not None else now,
            trigger_received_at=trigger.received_at if trigger is not None else None,
            drill=ws.index.key.endswith(":drill"),
            kind="surge",
        )

    def _sweep(self, ws: _WatchState, now: datetime, *, skip: str) -> list[Signal]:
        signals: list[Signal] = []
        if self.config.surge_enabled and (ws.surge.reported or ws.surge.held.level):
            surge = self._decide_surge(ws, ws.watch, now, None)
            if surge is not None:
                signals.append(surge)
        reported = ws.reported
        due = sorted((reported[sid], sid) for sid in ws.cooling if sid in reported)
        for _, story_id in due:
            story = ws.index.get(story_id)
            tracked = ws.tracked.get(story_id)
            if story_id == skip or story is None or tracked is None:
                continue
            signal = self._decide(ws, story, tracked, now, None)
            if signal is not None:
                signals.append(signal)
        return signals

    def _retire(self, ws: _WatchState, story: Story) -> None:
        if ws.stored:
            ws.changed.add(story.id)
        tracked = ws.tracked.pop(story.id, None)
        ws.reported.pop(story.id, None)
        ws.cooling.pop(story.id, None)
        if tracked is None:
            return
        if tracked.reported_tier > 0:
            log.info(
                "forgetting story %s at tier %d (quiet since %s, or over max_stories)",
                story.id,
                tracked.reported_tier,
                story.last_at.isoformat(),
            )
        self._remember_retired(ws, story.id, tracked)

    def _remember_retired(self, ws: _WatchState, story_id: str, tracked: _Tracked) -> None:
        """What a story that is no longer held leaves behind, should its id come back
        (its Signal count, label and life tag)."""
        if tracked.signals or tracked.heat.story_label is not None:
            ws.retired.pop(story_id, None)  # (re)inserted last: the most recently retired
            ws.retired[story_id] = _Retired(tracked.signals, tracked.heat.story_label, tracked.life)
            self._trim_retired(ws)

    def _trim_retired(self, ws: _WatchState) -> None:
        """Keep the watch's retired-story memory within its cap (the least recently
        retired go first). Each dropped entry of a story that sent Signals counts in
        ``forgotten``: a later life of that story starts after it, so its tag (``_track``)
        differs from that of every life of it whose Signal ids were used."""
        retired = ws.retired
        while len(retired) > self._retired_cap:
            _, gone = retired.popitem(last=False)
            if gone.signals:
                ws.forgotten += 1
