"""Compiled watch matching: which watches a mention's text belongs to.

A watch is either a list of ``terms`` (any of them matches: the original form, kept) or a
``query`` in the watch query language (``listener.query``; the README's "Watch query
language" section is the reference). Both compile to the same matcher:

* Case-insensitive, after folding (NFKC: full-width Latin letters, common in Chinese text,
  match their ASCII forms; traditional Chinese characters match their simplified forms)
  and accent-insensitive for Latin, Greek and Cyrillic letters (``Nestle`` and ``Nestlé``
  match each other, in phrases too; ``listener.query.fold``).
* A camel-case hashtag or @handle is also read as its words (``#AcmeRefund`` as ``acme
  refund``), so ``acme`` and ``"acme refund"`` match it; see ``fold.camel_cuts``.
* A term's Latin (or other spaced-script) ends must sit on word boundaries: ``acme``
  matches ``Acme's``, ``#acme`` and ``@acme_support`` (``_`` separates words in handles)
  but not ``acmeville``. A CJK character next to the term is a boundary (``Nimbus手机``
  mentions ``Nimbus``); a space there is optional. Whitespace inside a phrase matches any
  run of whitespace.
* A term whose end is a CJK character matches as a substring on that side (Chinese and
  Japanese are written without spaces).
* Any ``exclude`` term vetoes the watch (same rules as terms); so does a query's top-level
  ``AND NOT x`` part.
* ``langs`` keeps mentions of those languages (primary subtag: ``zh`` takes ``zh-Hant``);
  a mention of unknown language (none, or ``und``) passes. ``sources`` likewise keeps
  those sources.
* ``match_all`` watches match every mention their ``langs``/``sources``/``exclude`` let
  through.
* A mention that continues a matched one (repost/reply) can inherit that watch even if its
  own text is empty; exclusions in its own text still veto (see ``match``).

Speed: every text is first prefolded once (``str.lower()`` in the common case) and each
watch's prefilter (one regex of its literals) rejects texts that hold none of them; only
the candidates are folded fully and evaluated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from core.events import WatchMatch
from listener.config import WatchConfig
from listener.query import CompiledQuery, Prefold, Subject, compile_any, compile_query
from listener.query.matcher import primary_lang


@dataclass(frozen=True)
class CompiledWatch:
    id: str
    brand: str
    match_all: bool
    query: CompiledQuery | None  # None for match_all
    exclude: CompiledQuery | None
    langs: frozenset[str] | None
    sources: frozenset[str] | None

    @classmethod
    def compile(cls, config: WatchConfig) -> CompiledWatch:
        query = None
        if config.query is not None:
            query = compile_query(config.query, config.aliases)
        elif config.terms:
            query = compile_any(config.terms)
        # config.langs/sources are stripped and lower-cased (WatchConfig); a mention's
        # source is normalised the same way in admits() and by the query's source:
        langs = None
        if config.langs is not None:
            langs = frozenset(primary_lang(lang) for lang in config.langs)
        sources = None
        if config.sources is not None:
            sources = frozenset(config.sources)
        return cls(
            id=config.id,
            brand=config.brand,
            match_all=config.match_all,
            query=query,
            exclude=compile_any(config.exclude) if config.exclude else None,
            langs=langs,
            sources=sources,
        )

    @property
    def literals(self) -> tuple[str, ...]:
        return tuple(lit for q in (self.query, self.exclude) if q for lit in q.literals)

    def admits(self, lang: str | None, source: str | None) -> bool:
        """The language and source filters (an unknown language or source passes).

        The mention's language and source are read as ``listener.query.Subject`` reads
        them for ``lang:``/``source:`` (primary subtag; stripped, lower case), so a watch's
        ``sources: [weibo]`` and a query's ``source:weibo`` agree on every mention."""
        code = primary_lang(lang) if lang else ""  # "und" is unknown too
        if self.langs is not None and code and code not in self.langs:
            return False
        name = source.strip().lower() if source else ""
        return not (self.sources is not None and name and name not in self.sources)


class _Mention:
    """One text being matched: prefolded once, folded fully only when a watch needs it."""

    __slots__ = ("_subject", "lang", "prefolded", "source", "text")

    def __init__(self, text: str, prefolded: str, lang: str | None, source: str | None) -> None:
        self.text = text
        self.prefolded = prefolded
        self.lang = lang
        self.source = source
        self._subject: Subject | None = None

    @property
    def subject(self) -> Subject:
        if self._subject is None:
            self._subject = Subject.of(self.text, self.lang, self.source)
        return self._subject

    def excluded(self, watch: CompiledWatch) -> bool:
        """One of the watch's ``exclude`` literals is in the text."""
        exclude = watch.exclude
        return (
            exclude is not None
            and exclude.candidate(self.prefolded)
            and exclude.matches(self.subject)
        )

    def vetoes(self, watch: CompiledWatch) -> bool:
        """Exclusions, and the query's top-level ``AND NOT`` parts (for inherited watches,
        whose query did not match this text)."""
        if self.excluded(watch):
            return True
        query = watch.query
        return query is not None and bool(query.vetoes) and query.vetoed(self.subject)


class WatchMatcher:
    """Matches texts against every configured watch."""

    def __init__(self, watches: Iterable[WatchConfig]) -> None:
        self._watches = tuple(CompiledWatch.compile(w) for w in watches)
        self._by_id = {w.id: w for w in self._watches}
        self._results: dict[tuple[str, tuple[str, ...]], WatchMatch] = {}
        self._prefold = Prefold({c for w in self._watches for lit in w.literals for c in lit})

    @property
    def watch_ids(self) -> tuple[str, ...]:
        return tuple(self._by_id)

    def match(
        self,
        text: str,
        lang: str | None = None,
        inherited: Mapping[str, WatchMatch] | None = None,
        *,
        source: str | None = None,
    ) -> list[WatchMatch]:
        """Every watch ``text`` matches, in config order.

        ``inherited`` are the watches of the mention this one reposts or replies to (by
        watch id): they match too unless this text's exclusions or language veto them, and
        keep the parent's matched terms when this text matches none itself. ``source`` is
        the mention's source, for ``sources`` and ``source:`` filters.
        """
        mention = _Mention(text, self._prefold(text), lang, source)
        out: list[WatchMatch] = []
        for watch in self._watches:
            if not watch.admits(lang, source):
                continue
            query = watch.query
            if query is None:  # match_all
                if not mention.excluded(watch):
                    out.append(self._result(watch, ()))
                continue
            if query.candidate(mention.prefolded):
                subject = mention.subject
                if query.matches(subject) and not mention.excluded(watch):
                    out.append(self._result(watch, query.terms(subject)))
                    continue
            if inherited and watch.id in inherited and not mention.vetoes(watch):
                out.append(self._result(watch, inherited[watch.id].terms))
        return out

    def _result(self, watch: CompiledWatch, terms: tuple[str, ...]) -> WatchMatch:
        """The (immutable) WatchMatch, built once per watch and term combination."""
        key = (watch.id, terms)
        found = self._results.get(key)
        if found is None:
            if len(self._results) > 10_000:  # inherited terms could be anything
                self._results.clear()
            found = self._results[key] = WatchMatch(id=watch.id, brand=watch.brand, terms=terms)
        return found
