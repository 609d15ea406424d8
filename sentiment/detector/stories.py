"""Story assignment: which story of a watch a mention belongs to.

A story is a cascade of mentions about one thing. Per watch:

1. A mention whose parent (``repost_of``, else ``reply_to``) is a known mention joins
   the parent's story.
2. A mention whose parent is unknown -- it arrived before its parent, the parent was
   never taken in (another platform page, before the watch existed) or was forgotten --
   joins or starts the story **rooted at the parent id**: ``story_id =
   f"{watch}:{parent}"``, ``story_root = parent``. Its siblings then join the same story,
   so a burst of reposts of an unseen original still adds up to one story (starting a
   story at each repost would split it into a thousand stories of one). When the parent
   itself arrives later, it joins that story as its root (rule 3).
3. A mention whose own id roots an existing story (its children came first), or that a
   story awaits (rule 6), joins it as its root.
4. A mention without a parent joins the story of a near-duplicate text (MinHash over
   character 3-shingles, Jaccard >= ``near_duplicate_threshold``, texts of at least
   ``near_duplicate_min_chars`` normalised characters): copy-paste complaints and the
   same claim posted independently count as one story. Rules 4 and 4b apply only with
   ``join_by_text`` (the default); without it a story is one cascade.
4b. A mention without a parent whose text is a paraphrase of one of a story's first
   texts (cosine of their sentence embeddings >= ``paraphrase_threshold``, or the
   language's ``paraphrase_threshold_by_lang``; only when the
   scorer attaches embeddings, ``scorer.embedder``) joins that story: the same claim in
   other words ("my Acme charger caught fire" / "acme charger burst into flames").
5. Otherwise it starts its own story: ``story_id = f"{watch}:{mention id}"``,
   ``story_root = mention id``.

6. Order tolerance (several scorers over Kafka can hand the detector a repost before
   its parent): a mention that joins a story by rule 3 and names a parent not yet seen
   makes that story **await** the parent, so that the parent joins it too when it comes
   (rule 3), and so do the parent's other children (rule 2), instead of opening a
   second story. A reply chain A <- B <- C that arrives C, B, A gives one story, as
   A, B, C does; its id is the one the first arrival gave it (``w:B``).

Conflicts: a mention M awaited by a story O (its children came first) whose parent is
known (rule 1), or awaited by another story X (rule 2), joins that other story, as it
would have had it come in order, and the assignment names O as ``displaced``. Without a
parent, M joins O (rule 3) and its text is indexed there, as it would have been had it
come first; a story X of copies of its text (rule 4) that came before it is named as
``displaced``. The detector folds the displaced story into the one M joined when it is
young (``Detector._fold``: it is dissolved and its mentions taken in again, now finding
their parents or the root's text), else merges it (``merge``, ``Detector._merge``: its
mention ids, awaited ids and texts lead to the other story from then on). A story awaits at
most ``MAX_AWAITED`` ids (the oldest go first; a parent forgotten so starts a story of
its own, as before). In order, no story awaits anything: assignment is what it was.

Memory is bounded: a story quiet for ``story_expiry_hours`` (event time) is forgotten
with its mention ids and indexed texts; at most ``max_stories`` are held (the
longest-quiet go first); each remembers its last ``max_mentions_per_story`` mention ids.
A mention id already remembered is a redelivery: ``assign`` returns None.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from core.events import Mention, WatchMatch
from sentiment.detector.config import DetectorConfig
from sentiment.detector.neardup import NearDuplicateIndex
from sentiment.detector.paraphrase import ParaphraseIndex, Vector, to_unit

log = logging.getLogger(__name__)

# watch id (<= 100) + ":drill:" + root + "#<generation>.r<life>.<n>" must fit 255 characters
MAX_ROOT_IN_ID = 120

MAX_AWAITED = 16
"""Ids of mentions not yet seen that one story awaits (rule 6)."""

MIN_DIMS = 16
"""Sentence vectors narrower than this are not vectors (rule 4b ignores them)."""

WIDTH_SWITCH = 8
"""Sentence vectors of a new width in a row that mean the scorer's model changed."""

JoinReason = Literal["new", "cascade", "orphan", "root", "near-duplicate", "paraphrase"]


@dataclass(eq=False)
class Story:
    id: str
    root: str
    watch: WatchMatch
    first_at: datetime
    last_at: datetime
    root_seen: bool
    mention_ids: deque[str] = field(default_factory=deque)
    touched: int = 0  # when a mention last joined it (the index's order, kept in snapshots)
    # ids of mentions not yet seen that join it when they come (rule 6), oldest first;
    # the class default () also stands for it in snapshots older than STATE_FORMAT 3
    awaited: tuple[str, ...] = ()
    # int8 sentence vectors of its first texts (rule 4b), concatenated; the class
    # default b"" also stands for it in snapshots older than STATE_FORMAT 4
    vectors: bytes = b""


@dataclass(slots=True)
class Assignment:
    """Where ``StoryIndex.assign`` put a mention (one per mention: a plain slotted class,
    as a frozen dataclass's field-by-field ``object.__setattr__`` costs on the hot path)."""

    story: Story
    reason: JoinReason
    created: bool
    is_root: bool
    """The mention is the story's root (its first mention, or the parent its orphans named)."""
    displaced: Story | None = None
    """Another story that awaited the mention, which joined its parent's story instead
    (rule 1 before rule 3): the detector may fold it into this one (``dissolve``)."""


class StoryIndex:
    """The stories of one watch (one key space: ``f"{key}:{root}"``)."""

    def __init__(self, key: str, config: DetectorConfig) -> None:
        self.key = key
        self._expiry = timedelta(hours=config.story_expiry_hours)
        self._max_stories = config.max_stories
        self._max_ids = config.max_mentions_per_story
        self._stories: OrderedDict[str, Story] = OrderedDict()  # least recently active first
        self._touches = 0  # mentions assigned so far (``Story.touched``)
        self._story_of: dict[str, str] = {}  # mention id -> story id
        self._awaited: dict[str, str] = {}  # mention id not yet seen -> story id (rule 6)
        self._by_text = config.join_by_text  # rules 4 and 4b
        self._texts = NearDuplicateIndex(
            permutations=config.minhash_permutations,
            bands=config.minhash_bands,
            threshold=config.near_duplicate_threshold,
            min_chars=config.near_duplicate_min_chars,
            per_key=config.indexed_texts_per_story,
        )
        self._para_threshold = config.paraphrase_threshold
        self._para_by_lang = dict(config.paraphrase_threshold_by_lang)
        self._para_per_key = config.paraphrase_vectors_per_story
        self._para_dims = 0  # the width of the scorer's vectors, once one came
        self._para_new = (0, 0)  # (another width, vectors of it in a row)
        self._paraphrases = ParaphraseIndex(self._para_threshold, self._para_per_key)

    def __getstate__(self) -> dict[str, object]:
        """The paraphrase matrix is not pickled: the stories hold their vectors."""
        state = dict(self.__dict__)
        del state["_paraphrases"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        """Snapshots older than ``STATE_FORMAT`` 3 hold no awaited ids, older than 4 no
        paraphrase settings (the defaults stand in; ``follow`` then sets them, and
        ``join_by_text``, from the running config)."""
        self.__dict__.update(state)
        self.__dict__.setdefault("_awaited", {})
        self.__dict__.setdefault("_by_text", True)
        defaults = DetectorConfig.model_fields
        self.__dict__.setdefault("_para_threshold", defaults["paraphrase_threshold"].default)
        self.__dict__.setdefault("_para_per_key", defaults["paraphrase_vectors_per_story"].default)
        self.__dict__.setdefault("_para_dims", 0)
        self.__dict__.setdefault("_para_new", (0, 0))
        self.__dict__.setdefault(
            "_para_by_lang",
            dict(defaults["paraphrase_threshold_by_lang"].get_default(call_default_factory=True)),
        )
        self._paraphrases = ParaphraseIndex(self._para_threshold, self._para_per_key)
        for story in self._stories.values():
            self._index_vectors(story)

    def __len__(self) -> int:
        return len(self._stories)

    @property
    def awaited_held(self) -> int:
        """Ids of mentions not yet seen that a story awaits (rule 6)."""
        return len(self._awaited)

    @property
    def mentions_held(self) -> int:
        return len(self._story_of)

    @property
    def texts_held(self) -> int:
        return len(self._texts)

    def stories(self) -> list[Story]:
        """The stories held, least recently active first."""
        return list(self._stories.values())

    def get(self, story_id: str) -> Story | None:
        return self._stories.get(story_id)

    def story_of(self, mention_id: str) -> str | None:
        """The id of the story a held mention belongs to."""
        return self._story_of.get(mention_id)

    def story_id(self, root: str) -> str:
        """``<watch>:<root mention id>``; a long root id (a URL as RSS guid) is shortened
        with a hash, so the id stays within what incidents store (255 characters)."""
        if len(root) > MAX_ROOT_IN_ID:
            digest = hashlib.blake2b(root.encode(), digest_size=10).hexdigest()
            root = f"{root[: MAX_ROOT_IN_ID - 21]}~{digest}"
        return f"{self.key}:{root}"

    @property
    def vector_width(self) -> int:
        """The width of the scorer's sentence vectors (0: none came yet). When it changes
        from one width to another, every story's vectors were dropped (``_unit``)."""
        return self._para_dims

    @property
    def vectors_held(self) -> int:
        """Stories with sentence vectors (rule 4b)."""
        return len(self._paraphrases)

    def assign(
        self, mention: Mention, watch: WatchMatch, embedding: bytes | None = None
    ) -> Assignment | None:
        """Put ``mention`` into a story; None when it is already counted (redelivery).
        ``embedding``: its text's sentence vector (int8), when the scorer made one."""
        if mention.id in self._story_of:
            return None
        assignment = self._find(mention, watch, embedding)
        story = assignment.story
        self._remember(story, mention.id)
        if mention.created_at > story.last_at:
            story.last_at = mention.created_at
        if mention.created_at < story.first_at:
            story.first_at = mention.created_at
        self._stories.move_to_end(story.id)
        story.touched = self._touches
        self._touches += 1
        return assignment

    def evict(self, now: datetime) -> list[Story]:
        """Forget the stories quiet since before ``now - expiry``, then the longest-quiet
        beyond ``max_stories``; returns what was forgotten."""
        dropped: list[Story] = []
        cutoff = now - self._expiry
        while self._stories:
            oldest = next(iter(self._stories.values()))
            if oldest.last_at >= cutoff and len(self._stories) <= self._max_stories:
                break
            self._forget(oldest)
            dropped.append(oldest)
        return dropped

    def dissolve(self, story: Story) -> None:
        """Forget ``story`` and its mentions (to take them in again, one by one: the
        detector folds a young story that a late parent displaced into its cascade)."""
        self._forget(story)

    def merge(self, survivor: Story, absorbed: Story) -> None:
        """``absorbed`` becomes part of ``survivor`` (the detector merges a story that
        signalled, where a young one is folded): its mention ids, awaited ids and
        indexed texts now lead to ``survivor``; ``absorbed`` is no longer held."""
        if survivor is absorbed:
            raise ValueError(f"merge: story {survivor.id!r} into itself")
        del self._stories[absorbed.id]
        # the absorbed ids go before the survivor's: the cap drops the oldest, never the
        # mention that just linked the two
        ids = absorbed.mention_ids
        for mention_id in ids:
            self._story_of[mention_id] = survivor.id
        ids.extend(survivor.mention_ids)
        survivor.mention_ids, absorbed.mention_ids = ids, deque()
        while len(ids) > self._max_ids:
            self._story_of.pop(ids.popleft(), None)
        for mention_id in absorbed.awaited:
            if self._awaited.get(mention_id) == absorbed.id:
                if mention_id in self._story_of:  # came, and joined another story
                    del self._awaited[mention_id]
                else:
                    self._await(survivor, mention_id)
        absorbed.awaited = ()
        self._texts.move(absorbed.id, survivor.id)
        self._paraphrases.move(absorbed.id, survivor.id)
        if absorbed.vectors:
            joined = survivor.vectors + absorbed.vectors
            survivor.vectors = joined[: self._para_per_key * self._para_dims]
            absorbed.vectors = b""
        survivor.first_at = min(survivor.first_at, absorbed.first_at)
        survivor.last_at = max(survivor.last_at, absorbed.last_at)
        survivor.root_seen = survivor.root_seen or absorbed.root_seen
        self._stories.move_to_end(survivor.id)

    def follow(self, config: DetectorConfig) -> None:
        """Take the running config's text-joining and paraphrase settings (a restored
        index was saved with those of its time); before ``adopt``."""
        self._by_text = config.join_by_text
        self._para_threshold = config.paraphrase_threshold
        self._para_by_lang = dict(config.paraphrase_threshold_by_lang)
        self._para_per_key = config.paraphrase_vectors_per_story
        self._paraphrases = ParaphraseIndex(self._para_threshold, self._para_per_key)

    def without_stories(self) -> StoryIndex:
        """A copy holding none of the stories (for the watch-level part of a snapshot:
        each story is saved apart, with ``story_part``)."""
        index = object.__new__(StoryIndex)  # (not copy.copy: __setstate__ would rebuild
        index.__dict__.update(self.__dict__)  # the paraphrase matrix of every story)
        index._stories = OrderedDict()
        index._story_of = {}
        index._awaited = {}
        index._texts = self._texts.without_entries()
        index._paraphrases = ParaphraseIndex(self._para_threshold, self._para_per_key)
        return index

    def story_part(self, story_id: str) -> tuple[Story, tuple[bytes, int] | None]:
        """A held story with its indexed texts (what ``adopt`` takes back)."""
        return self._stories[story_id], self._texts.entry(story_id)

    def adopt(self, parts: list[tuple[Story, tuple[bytes, int] | None]]) -> None:
        """Take stories back (``story_part``s of one index) into one that holds none:
        their order of activity, mention ids and near-duplicate texts as they were."""
        if self._stories:
            raise ValueError("adopt: the index already holds stories")
        for story, texts in sorted(parts, key=lambda part: part[0].touched):
            self._stories[story.id] = story
            for mention_id in story.mention_ids:
                self._story_of[mention_id] = story.id
            for mention_id in story.awaited:
                self._awaited[mention_id] = story.id
            if texts is not None:
                self._texts.adopt(story.id, *texts)
            self._index_vectors(story)

    def _awaiting(self, mention_id: str) -> Story | None:
        """The story rooted at ``mention_id`` or awaiting it (rules 2, 3 and 6)."""
        story = self._stories.get(self.story_id(mention_id))
        if story is None and self._awaited:
            awaits = self._awaited.get(mention_id)
            if awaits is not None:
                story = self._stories[awaits]
        return story

    def _index_vectors(self, story: Story) -> None:
        """Put the vectors ``story`` holds into the paraphrase matrix."""
        raw, dims = story.vectors, self._para_dims
        if not raw or not dims:
            return
        for start in range(0, len(raw) - dims + 1, dims):
            self._paraphrases.add(story.id, to_unit(raw[start : start + dims], dims))

    def _add_vector(self, story: Story, raw: bytes, unit: Vector) -> None:
        if self._paraphrases.add(story.id, unit):
            story.vectors += raw

    def _unit(self, raw: bytes) -> Vector | None:
        """The unit vector of an embedding, or None when it cannot be compared. The width
        of the scorer's vectors is learnt from the first one. ``WIDTH_SWITCH`` vectors in
        a row of another width mean the scorer's model changed: the held vectors (of the
        old model) are dropped and the new width is used; fewer are ignored (one odd
        vector from a misbehaving scorer wipes nothing)."""
        if len(raw) < MIN_DIMS:
            return None
        if len(raw) != self._para_dims:
            if self._para_dims:
                width, seen = self._para_new
                seen = seen + 1 if width == len(raw) else 1
                self._para_new = (len(raw), seen)
                if seen < WIDTH_SWITCH:
                    return None
                log.warning(
                    "watch %s: sentence vectors of %d values after %d: the scorer's model "
                    "changed; forgetting the old vectors",
                    self.key,
                    len(raw),
                    self._para_dims,
                )
                self._paraphrases = ParaphraseIndex(self._para_threshold, self._para_per_key)
                for story in self._stories.values():
                    story.vectors = b""
            self._para_dims = len(raw)
        if self._para_new[1]:
            self._para_new = (0, 0)
        unit = to_unit(raw, len(raw))
        return unit if unit.any() else None

    def _paraphrase(
        self, raw: bytes | None, own: Story | None, lang: str | None
    ) -> tuple[Story | None, Vector | None]:
        """(the story of a paraphrase of the text, not ``own``; the text's unit vector)."""
        if raw is None:
            return None, None
        unit = self._unit(raw)
        if unit is None:
            return None, None
        threshold = self._para_threshold
        if lang and self._para_by_lang:
            threshold = self._para_by_lang.get(lang.split("-")[0].lower(), threshold)
        skip = None if own is None else own.id
        match = self._paraphrases.best_match(unit, threshold, skip=skip)
        if match is None:
            return None, unit
        return self._stories[match], unit

    def _find(self, mention: Mention, watch: WatchMatch, embedding: bytes | None) -> Assignment:
        parent = mention.parent_id
        stories = self._stories
        own = stories.get(self.story_id(mention.id))  # (``_awaiting``, inlined: hot path)
        if own is None and self._awaited:
            own = self._awaiting(mention.id)
        if parent is not None:
            known = self._story_of.get(parent)
            if known is not None:
                joined = self._stories[known]
                displaced = own if own is not joined else None
                return Assignment(joined, "cascade", False, False, displaced)
            siblings = self._awaiting(parent)
            if own is None:
                if siblings is not None:
                    return Assignment(siblings, "cascade", False, False)
                story = self._new(parent, mention, watch, root_seen=False)
                return Assignment(story, "orphan", True, False)
            if siblings is None:
                self._await(own, parent)
            elif siblings is not own:  # another story awaits its parent: as rule 1
                return Assignment(siblings, "cascade", False, False, own)
        if own is not None:
            own.root_seen = True
            if self._awaited:
                self._arrived(mention.id)
            if parent is None:  # as it would have been, had it come first (rules 4, 4b)
                return self._late_root(mention, own, embedding)
            return Assignment(own, "root", False, True)
        # An independent post: a near-duplicate of a held text, a paraphrase of one, or a
        # story of its own.
        if not self._by_text:
            return Assignment(
                self._new(mention.id, mention, watch, root_seen=True), "new", True, True
            )
        # (a story quiet for longer than the expiry is joined by no text: it is gone but
        # for its eviction, which comes after this mention; a copy months later, such as
        # a drill's scenario again, is a story of its own)
        sig = self._texts.signature(mention.text)
        if sig is not None:
            match = self._texts.best_match(sig)
            if match is not None and not self._expired(self._stories[match], mention):
                story = self._stories[match]
                self._texts.add(story.id, sig)
                return Assignment(story, "near-duplicate", False, False)
        similar, unit = self._paraphrase(embedding, None, mention.lang)
        if similar is not None and self._expired(similar, mention):
            similar = None
        if similar is not None:
            assert embedding is not None and unit is not None
            self._add_vector(similar, embedding, unit)
            return Assignment(similar, "paraphrase", False, False)
        story = self._new(mention.id, mention, watch, root_seen=True)
        if sig is not None:
            self._texts.add(story.id, sig)
        if unit is not None:
            assert embedding is not None
            self._add_vector(story, embedding, unit)
        return Assignment(story, "new", True, True)

    def _expired(self, story: Story, mention: Mention) -> bool:
        """Whether ``story`` was quiet for longer than the expiry when ``mention`` came."""
        return story.last_at < mention.created_at - self._expiry

    def _late_root(self, mention: Mention, own: Story, embedding: bytes | None) -> Assignment:
        """A post without a parent whose story its children opened (it came after them),
        when its text repeats another story X (a near-duplicate, else a paraphrase). If X
        began after it was posted, X's posts copied it: it roots its own story and X is
        displaced (folded or merged into it). If X began before, it copied X, as in order:
        it joins X and its own story is displaced. Without ``join_by_text`` it roots its
        own story."""
        if not self._by_text:
            return Assignment(own, "root", False, True)
        sig = self._texts.signature(mention.text)
        match = None if sig is None else self._texts.best_match(sig)
        other = None if match is None or match == own.id else self._stories[match]
        reason: JoinReason = "near-duplicate"
        unit = None
        if other is None and embedding is not None:
            other, unit = self._paraphrase(embedding, own, mention.lang)
            reason = "paraphrase"
        elif embedding is not None:
            unit = self._unit(embedding)
        home = own if other is None or other.first_at >= mention.created_at else other
        if sig is not None:
            self._texts.add(home.id, sig)
        if unit is not None:
            assert embedding is not None
            self._add_vector(home, embedding, unit)
        if home is own:
            return Assignment(own, "root", False, True, other)
        return Assignment(home, reason, False, False, own)

    def _new(self, root: str, mention: Mention, watch: WatchMatch, *, root_seen: bool) -> Story:
        story = Story(
            id=self.story_id(root),
            root=root,
            watch=watch,
            first_at=mention.created_at,
            last_at=mention.created_at,
            root_seen=root_seen,
        )
        self._stories[story.id] = story
        return story

    def _remember(self, story: Story, mention_id: str) -> None:
        story.mention_ids.append(mention_id)
        self._story_of[mention_id] = story.id
        if len(story.mention_ids) > self._max_ids:
            self._story_of.pop(story.mention_ids.popleft(), None)

    def _await(self, story: Story, mention_id: str) -> None:
        """``story`` takes ``mention_id`` in when it comes (rule 6)."""
        awaited = (*story.awaited, mention_id)
        if len(awaited) > MAX_AWAITED:
            self._awaited.pop(awaited[0], None)
            awaited = awaited[1:]
        story.awaited = awaited
        self._awaited[mention_id] = story.id

    def _arrived(self, mention_id: str) -> None:
        """``mention_id`` came, and joined the story that awaited it (if any): no longer
        awaited. (One that joins another story by rule 1 stays in the list of the story
        that awaited it, harmlessly: only that story changed.)"""
        awaits = self._awaited.pop(mention_id, None)
        if awaits is not None:
            story = self._stories[awaits]
            story.awaited = tuple(i for i in story.awaited if i != mention_id)

    def _forget(self, story: Story) -> None:
        del self._stories[story.id]
        for mention_id in story.mention_ids:
            self._story_of.pop(mention_id, None)
        story.mention_ids.clear()
        for mention_id in story.awaited:
            if self._awaited.get(mention_id) == story.id:
                del self._awaited[mention_id]
        story.awaited = ()
        self._texts.remove(story.id)
        self._paraphrases.remove(story.id)
