"""Which watches a post matches, and why: the listener's answer, explained.

The answer is the listener's own: ``listener.watches.WatchMatcher.match`` over every watch
of the config (normalisation, traditional → simplified Chinese, camel-case tags,
``langs``/``sources``, ``exclude`` and all). The explanation walks the same compiled
watches (``listener.query.explain``): the parts of the query that made the match and the
text they found, or what stopped it, in this order: the watch's ``langs``/``sources``,
the query (a term not found, a NEAR too far apart, a ``lang:``/``source:`` filter, a
``NOT`` part that found something), an ``exclude`` entry found. A repost or reply inherits
its parent's watches in the listener; a post here is matched on its own text only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from api.watch_posts import Post
from listener.config import WatchConfig
from listener.query import Subject
from listener.query.explain import Explainer, Hit, TextMap
from listener.query.matcher import primary_lang
from listener.watches import CompiledWatch, WatchMatcher

DISAGREE = (
    "the explanation disagrees with the listener's matcher (the verdict shown is the "
    "listener's); please report this post and query"
)


@dataclass(frozen=True)
class Found:
    """A part of the query found in the post, and the post's text it matched."""

    literal: str  # as written in the query (a phrase in quotes, a prefix with *, a NEAR)
    via: str | None  # the alias (@name) of an alias entry
    text: str  # the post's text that matched
    start: int | None  # its offsets in the post's text (None: read from the folded text)
    end: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "literal": self.literal,
            "via": self.via,
            "text": self.text,
            "start": self.start,
            "end": self.end,
        }


@dataclass(frozen=True)
class Why:
    """What stopped the match; ``found``: what a NOT part or an exclude entry found."""

    reason: str
    found: tuple[Found, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "found": [f.to_json() for f in self.found]}


@dataclass(frozen=True)
class Verdict:
    watch: str
    matched: bool  # the listener's answer
    terms: tuple[str, ...]  # what the listener reports as the matched terms
    hits: tuple[Found, ...]  # the parts of the query that matched (also when vetoed after)
    found: tuple[Found, ...]  # every literal of the query (outside NOT) found in the text
    why_not: tuple[Why, ...]  # empty when matched
    match_all: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "watch": self.watch,
            "matched": self.matched,
            "match_all": self.match_all,
            "terms": list(self.terms),
            "hits": [f.to_json() for f in self.hits],
            "found": [f.to_json() for f in self.found],
            "why_not": [w.to_json() for w in self.why_not],
        }


_PLAIN = Explainer()  # for exclude lists (no aliases)


class UnknownWatch(ValueError):
    def __init__(self, unknown: Sequence[str], known: Sequence[str]) -> None:
        names = ", ".join(repr(u) for u in unknown)
        super().__init__(
            f"no watch {names} in the config; its watches: {', '.join(known) or 'none'}"
        )


class WatchTester:
    """The config's watches, compiled once; :meth:`test` gives one verdict per watch tested
    (``only``: these ids, in config order; default every watch)."""

    def __init__(self, watches: Sequence[WatchConfig], only: Iterable[str] | None = None) -> None:
        self.matcher = WatchMatcher(watches)
        known = [w.id for w in watches]
        wanted = list(dict.fromkeys(only)) if only else known
        unknown = [w for w in wanted if w not in known]
        if unknown:
            raise UnknownWatch(unknown, known)
        chosen = set(wanted)
        self.watches = [
            (w, CompiledWatch.compile(w), Explainer(w.aliases)) for w in watches if w.id in chosen
        ]

    @property
    def ids(self) -> list[str]:
        return [config.id for config, _, _ in self.watches]

    def test(self, post: Post, only: bool | None = None) -> list[Verdict]:
        """A verdict per watch tested, in config order. ``only`` True (False): explain the
        matched (unmatched) verdicts only; the others come without hits or reasons."""
        answers = {m.id: m for m in self.matcher.match(post.text, post.lang, source=post.source)}
        read: tuple[Subject, TextMap] | None = None  # the text as the matcher reads it
        out = []
        for config, watch, explainer in self.watches:
            answer = answers.get(config.id)
            if only is not None and only != (answer is not None):
                terms = tuple(answer.terms) if answer is not None else ()
                out.append(Verdict(config.id, answer is not None, terms, (), (), ()))
                continue
            if read is None:
                subject = Subject.of(post.text, post.lang, post.source)
                read = subject, TextMap(post.text, subject)
            out.append(self._verdict(config, watch, explainer, post, *read, answer))
        return out

    def _verdict(
        self,
        config: WatchConfig,
        watch: CompiledWatch,
        explainer: Explainer,
        post: Post,
        subject: Subject,
        text_map: TextMap,
        answer: Any,
    ) -> Verdict:
        def located(hits: Iterable[Hit]) -> tuple[Found, ...]:
            out = []
            for hit in hits:
                where = text_map.locate(hit.span)
                out.append(Found(hit.literal, hit.via, where.text, where.start, where.end))
            return tuple(out)

        why: list[Why] = []
        why.extend(_filters(config, watch, post))
        hits: tuple[Found, ...] = ()
        found: tuple[Found, ...] = ()
        if watch.query is not None:
            result = explainer.explain(watch.query, subject)
            found = located(result.found)
            if result.matched:
                hits = located(result.hits)
            elif config.terms:  # the terms list: one reason, not the query's
                why.append(
                    Why(f"none of the watch's terms: {explainer.describe(watch.query.root)}")
                )
            else:
                why.extend(Why(r.message, located(r.found)) for r in result.why_not)
        if watch.exclude is not None:
            vetoes = _PLAIN.explain(watch.exclude, subject).found
            why.extend(Why(f"exclude entry {v.literal} vetoed it", located([v])) for v in vetoes)
        disagree = (answer is not None) == bool(why)
        if disagree:
            why.append(Why(DISAGREE))
        return Verdict(
            watch=config.id,
            matched=answer is not None,
            terms=tuple(answer.terms) if answer is not None else (),
            hits=hits,
            found=found,
            why_not=tuple(why) if answer is None or disagree else (),
            match_all=watch.match_all,
        )


def _filters(config: WatchConfig, watch: CompiledWatch, post: Post) -> list[Why]:
    """The watch's ``langs``/``sources`` fields (a language or source not given passes)."""
    if watch.admits(post.lang, post.source):
        return []
    out = []
    code = primary_lang(post.lang) if post.lang else ""
    if watch.langs is not None and code and code not in watch.langs:
        langs = ", ".join(config.langs or ())
        out.append(Why(f"langs [{langs}]: the post's language is {post.lang}"))
    source = post.source.strip().lower() if post.source else ""  # as ``admits`` reads it
    if watch.sources is not None and source and source not in watch.sources:
        sources = ", ".join(config.sources or ())
        out.append(Why(f"sources [{sources}]: the post's source is {post.source}"))
    return out


__all__ = ["DISAGREE", "Found", "UnknownWatch", "Verdict", "WatchTester", "Why"]
