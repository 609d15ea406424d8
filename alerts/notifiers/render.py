"""What every channel says, apart from how it says it.

Every notifier renders the same parts of an ``AlertMessage``:

* ``headline``: ``[DRILL]`` first for drills; a follow-up (``action`` acknowledge/resolve)
  says so ("Acknowledged by alice"); a digest counts its incidents;
* ``status``: why this message (the reason, or who acknowledged/resolved it);
* ``digest`` messages list their incidents; triggers show the explanation and evidence;
* ``ack_url`` is a link or button ("Acknowledge"), before the other links.

The strings returned here are raw (not escaped): each notifier escapes them for its own
markup. ``markdown`` renders the whole body in the markdown that DingTalk, WeCom, Feishu
cards and Teams TextBlocks share (``**bold**``, ``[label](url)``), escaped with
``escape.markdown``.

Size limits (``markdown(max_bytes=...)``, ``fit_text``): the headline, the status, the
on-call @-mention and the links are never cut; what gives way is the evidence. Over the
limit, the explanation gets at most half of the room left, the posts share the rest
(each shortened, with ``…``), and posts (or digest items) that no longer fit are counted
("…and 3 more posts"). A platform that mentions by ``@id`` in the text *and* in a list
(DingTalk) would refuse a message whose mention was cut.

A post's own link is labelled with the host it leads to (``post_label``: "view post on
mastodon.example"): the URL is the author's to choose, the label ours.

Language: every function takes the channel's ``language`` (``en``, the default, or ``zh``)
and says our own words in it (``alerts.notifiers.i18n``): the headline, the status (a
reason from its structured ``AlertMessage.why``), the explanation (from
``AlertMessage.heat``), labels, links and counts. What came from outside is escaped the
same way in every language; the size limits count its UTF-8 bytes, whatever the script.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from alerts.notifiers import escape
from alerts.notifiers.base import AlertMessage, Contact, DigestItem, EvidenceSnippet, Link
from alerts.notifiers.http import truncate_utf8
from alerts.notifiers.i18n import English, Thing, phrases


def is_follow_up(alert: AlertMessage) -> bool:
    return alert.action != "trigger"


Escape = Callable[[str], str]


def _raw(text: str) -> str:
    return text


def ack_label(language: str = "en") -> str:
    return phrases(language).ack


def headline(alert: AlertMessage, esc: Escape = _raw, language: str = "en") -> str:
    """One line; ``esc`` escapes the parts that come from outside (title, actor), not ours."""
    ph = phrases(language)
    drill = ph.drill if alert.drill else ""
    if alert.digest:
        worst = max(item.tier for item in alert.digest)
        return f"{drill}{ph.digest_headline(len(alert.digest), worst, esc(ph.title(alert.title)))}"
    subject = ph.subject(alert.tier, alert.incident_id, esc(ph.title(alert.title)))
    if is_follow_up(alert):
        who = esc(alert.actor) if alert.actor else None
        return f"{drill}{ph.followed(alert.action, who)}{ph.colon}{subject}"
    return f"{drill}{subject}"


def status(alert: AlertMessage, esc: Escape = _raw, language: str = "en") -> str:
    ph = phrases(language)
    if is_follow_up(alert):
        return ph.follow_up_status(alert.action, esc(alert.actor) if alert.actor else None)
    return esc(ph.reason(alert))


def explanation(alert: AlertMessage, language: str = "en") -> str:
    """The explanation paragraph in ``language`` (raw)."""
    return phrases(language).explanation(alert)


def links(alert: AlertMessage, language: str = "en") -> list[Link]:
    """The ack link first (only on triggers), then the other links; unsafe URLs dropped;
    our labels in ``language``."""
    ph = phrases(language)
    out: list[Link] = []
    if alert.ack_url and not is_follow_up(alert) and escape.safe_url(alert.ack_url):
        out.append(Link(label=ph.ack, url=alert.ack_url))
    out += [
        Link(label=ph.link_label(link.label), url=link.url)
        for link in alert.links
        if escape.safe_url(link.url)
    ]
    return out


def short(esc: Callable[[str, int], str], limit: int = 200) -> Escape:
    """``esc`` with a length limit, for ``headline``/``status``."""
    return lambda text: esc(text, limit)


def followers(count: int | None, language: str = "en") -> str:
    return phrases(language).followers(count)


def post_label(url: str, language: str = "en") -> str:
    """The label of a link to a post: it names the host the link leads to (raw)."""
    return phrases(language).post_label(escape.host(url))


def size(text: str) -> int:
    """UTF-8 bytes (what the platforms' limits count)."""
    return len(text.encode())


def _cost(lines: Sequence[str]) -> int:
    """Bytes ``lines`` add to a message, each after a line break."""
    return sum(size(line) + 1 for line in lines)


Sized = Callable[[int], str]
"""A line rendered with at most ``n`` characters of its shrinkable text."""

_MIN_TEXT = 24  # a post shortened below this many characters is counted, not shown


def _shrink(line: Sized, full: int, room: int, least: int = _MIN_TEXT) -> str | None:
    """``line`` at the largest text limit in ``[least, full]`` that is at most ``room``
    bytes, or None when even ``least`` does not fit."""
    best = line(full)
    if size(best) <= room:
        return best
    low, high = least, full - 1
    found = None
    while low <= high:
        mid = (low + high) // 2
        out = line(mid)
        if size(out) <= room:
            found, low = out, mid + 1
        else:
            high = mid - 1
    return found


def _more(count: int, what: Thing, ph: English) -> str:
    return ph.more(count, what)


def _share(lines: Sequence[tuple[Sized, int]], room: int) -> list[str] | None:
    """Every line, those too long shortened so that all fit in ``room`` bytes (each
    gets an equal share; what a short one leaves goes to the others), or None."""
    fulls = [line(full) for line, full in lines]
    order = sorted(range(len(lines)), key=lambda i: size(fulls[i]))
    out: list[str] = [""] * len(lines)
    left = room
    for done, i in enumerate(order):
        share = left // (len(lines) - done) - 1  # its line break
        line, full = lines[i]
        fitted = fulls[i] if size(fulls[i]) <= share else _shrink(line, full, share)
        if fitted is None:
            return None
        out[i] = fitted
        left -= size(fitted) + 1
    return out


def _fit_posts(lines: Sequence[tuple[Sized, int]], room: int, ph: English) -> list[str]:
    """As many posts as fit in ``room`` bytes (shortened), then "…and N more posts"."""
    for shown in range(len(lines), -1, -1):
        hidden = len(lines) - shown
        more = [_more(hidden, "post", ph)] if hidden else []
        fitted = _share(lines[:shown], room - _cost(more))
        if fitted is not None:
            return fitted + more if _cost(more) <= room else []
    return []


def _fit_items(lines: Sequence[str], room: int, ph: English) -> list[str]:
    """The first items that fit in ``room`` bytes, then "…and N more incidents"."""
    if _cost(lines) <= room:
        return list(lines)
    shown: list[str] = []
    for i, line in enumerate(lines):
        more = [_more(len(lines) - i - 1, "incident", ph)] if i + 1 < len(lines) else []
        if _cost([*shown, line, *more]) > room:
            break
        shown.append(line)
    hidden = len(lines) - len(shown)
    more = [_more(hidden, "incident", ph)] if hidden else []
    return shown + more if _cost(shown + more) <= room else shown


def fit(head: Sequence[str], body: Sequence[str], tail: Sequence[str], max_bytes: int) -> str:
    """``head``, ``body``, ``tail`` as lines in at most ``max_bytes``: the body's end is cut
    (``…``) first, so the tail (mention, links) stays; the whole is cut as a last resort."""
    text = "\n".join([*head, *body, *tail])
    if size(text) <= max_bytes:
        return text
    room = max_bytes - size("\n".join([*head, *tail])) - 1
    if room > 0:
        cut = truncate_utf8("\n".join(body), room)
        text = "\n".join([*head, cut, *tail])
    return truncate_utf8(text, max_bytes)


def markdown(
    alert: AlertMessage,
    *,
    mention: Callable[[Contact], str | None] | None = None,
    ack_link: bool = True,
    max_bytes: int | None = None,
    language: str = "en",
) -> str:
    """The message body in shared markdown, in ``language``; ``mention`` renders one
    person's @-mention. ``max_bytes``: at most that many UTF-8 bytes, the evidence
    shortened first (the mention and the links are always there)."""
    md = escape.markdown
    ph = phrases(language)
    head = [
        f"**{headline(alert, short(md), language)}**",
        "",
        f"**{status(alert, short(md), language)}**",
    ]
    tail: list[str] = []
    named = [m for m in (mention(c) for c in alert.mentions) if m] if mention else []
    if named:
        tail += ["", f"{ph.on_call}{ph.colon}" + " ".join(named)]
    shown = [link for link in links(alert, language) if ack_link or link.label != ph.ack]
    if shown:
        parts = [f"[{md(link.label, 80)}]({escape.markdown_url(link.url)})" for link in shown]
        tail += ["", " · ".join(parts)]

    room = None if max_bytes is None else max_bytes - size("\n".join([*head, *tail]))
    if alert.digest:
        body = _digest_body(alert, room, ph)
    elif is_follow_up(alert):
        body = []
    else:
        body = _trigger_body(alert, room, ph)
    if max_bytes is None:
        return "\n".join([*head, *body, *tail])
    return fit(head, body, tail, max_bytes)


def _digest_body(alert: AlertMessage, room: int | None, ph: English) -> list[str]:
    """The digest's items; those past ``room`` bytes counted ("…and 7 more incidents")."""
    items = [_item_line(item, ph) for item in alert.digest]
    if room is None or _cost(["", *items]) <= room:
        return ["", *items]
    return ["", *_fit_items(items, room - _cost([""]), ph)]


def _trigger_body(alert: AlertMessage, room: int | None, ph: English) -> list[str]:
    """Explanation, facts and posts, in at most ``room`` bytes: the explanation gets at
    most half of it, the posts (with shorter author names) share the rest."""
    md = escape.markdown
    facts = [f"{ph.watch}{ph.colon}{md(alert.brand or alert.watch_id, 200)}"]
    if alert.teams:
        facts.append(f"{ph.teams}{ph.colon}{md(', '.join(alert.teams), 300)}")
    said = ph.explanation(alert)

    def explanation(n: int) -> str:
        return md(said, n)

    def body(explained: str, posts: Sequence[str]) -> list[str]:
        return ["", explained, "", " · ".join(facts), *posts]

    full = body(explanation(1500), [_post_line(ev, 100, ph)(500) for ev in alert.evidence])
    if room is None or _cost(full) <= room:
        return full
    frame = _cost(body("", [])) - 1  # all but the explanation
    explained = _shrink(explanation, 1500, (room - frame) // 2 - 1, 0) or ""
    posts = [(_post_line(ev, 40, ph), 500) for ev in alert.evidence]
    return body(explained, _fit_posts(posts, room - frame - size(explained) - 1, ph))


def item_parts(item: DigestItem, ph: English) -> tuple[str, str]:
    """(title, reason) of a digest item in ``ph``'s language, raw."""
    return ph.title(item.title), ph.item_reason(item)


def _item_line(item: DigestItem, ph: English) -> str:
    md = escape.markdown
    title, reason = item_parts(item, ph)
    line = f"- {ph.subject(item.tier, item.incident_id, md(title, 200))}"
    if reason:
        line += ph.paren(md(reason, 120))
    if target := escape.markdown_url(item.url):
        line += f" [{ph.open}]({target})"
    return line


def _post_line(ev: EvidenceSnippet, who_limit: int, ph: English) -> Sized:
    """One post's line, with at most ``n`` characters of its text."""
    md = escape.markdown
    who = md(ev.author or ph.unknown, who_limit)
    target = escape.markdown_url(ev.url)
    link = f" [{md(ph.post_label(escape.host(ev.url)), 120)}]({target})" if target else ""

    def line(n: int) -> str:
        return f"- **{who}**{ph.followers(ev.followers)}{ph.colon}“{md(ev.text, n)}”{link}"

    return line
