"""Email over SMTP (aiosmtplib): STARTTLS, an HTML part and a plain-text alternative.

Followed: aiosmtplib's documentation (``aiosmtplib.send``: ``start_tls=True`` requires the
upgrade and fails if the server does not offer it; ``tls_context``; ``timeout``), RFC 3207
(STARTTLS), RFC 5321 §4.2 reply codes (4yz transient: retry; 5yz permanent), RFC 2046
``multipart/alternative`` (plain text first, HTML last = preferred), RFC 5322 threading
headers (``Message-ID``/``References``: every message of one incident shares a
``References`` root, so mail clients thread the follow-ups under the alert; the
``Message-ID`` comes from the delivery's idempotency key, the same on every retry).

Rate limit: not published by SMTP itself; providers throttle senders (Gmail, Microsoft 365
and Exmail all do, at different levels). We declare 30 messages a minute per channel: well
under every common provider's per-sender limit, and far above what one team's alerts need.
"""

from __future__ import annotations

import hashlib
import html
import ssl
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import ClassVar

import aiosmtplib

from alerts.channels import EmailChannelConfig
from alerts.notifiers import escape, render
from alerts.notifiers.base import AlertMessage, DeliveryError, RateLimit
from alerts.notifiers.http import redact
from alerts.notifiers.i18n import phrases
from core.clock import Clock

DOMAIN = "crisiswatch"


def subject(alert: AlertMessage, prefix: str, language: str = "en") -> str:
    # a header: no line breaks, ever (clean keeps \n; split/join removes every whitespace run)
    text = escape.line(render.headline(alert, language=language), 200)
    return f"{' '.join(prefix.split())} {text}".strip()


def plain_body(alert: AlertMessage, language: str = "en") -> str:
    line = escape.line  # every line ours: outside text never starts one
    ph = phrases(language)
    lines = [
        line(render.headline(alert, language=language), 300),
        line(render.status(alert, language=language), 300),
        "",
    ]
    if alert.digest:
        for item in alert.digest:
            title = line(ph.title(item.title), 200)
            lines.append(f"- {ph.subject(item.tier, item.incident_id, title)}")
            if url := escape.safe_url(item.url):
                lines.append(f"  {url}")
    elif not render.is_follow_up(alert):
        lines += [escape.plain(ph.explanation(alert), 2000), ""]
        lines.append(f"{ph.watch}{ph.colon}{line(alert.brand or alert.watch_id, 200)}")
        if alert.teams:
            lines.append(f"{ph.teams}{ph.colon}{line(', '.join(alert.teams), 300)}")
        for ev in alert.evidence:
            who = line(ev.author or ph.unknown, 100)
            lines.append(f"- {who}{ph.followers(ev.followers)}{ph.colon}“{line(ev.text, 500)}”")
            if url := escape.safe_url(ev.url):
                lines.append(f"  {url}")
    lines.append("")
    lines += [f"{link.label}{ph.colon}{link.url}" for link in render.links(alert, language)]
    return "\n".join(lines) + "\n"


def _a(url: str, label: str) -> str:
    """A link to ``url`` (already checked by ``escape.safe_url``: only attribute-escaped)."""
    return f'<a href="{html.escape(url, quote=True)}">{escape.html(label, 200)}</a>'


def html_body(alert: AlertMessage, language: str = "en") -> str:
    h = escape.html
    ph = phrases(language)
    parts = [
        f"<h2>{h(render.headline(alert, language=language), 300)}</h2>",
        f"<p><strong>{h(render.status(alert, language=language), 300)}</strong></p>",
    ]
    if alert.digest:
        items = []
        for item in alert.digest:
            link = f" {_a(url, ph.open)}" if (url := escape.safe_url(item.url)) else ""
            subject = ph.subject(item.tier, item.incident_id, h(ph.title(item.title), 200))
            items.append(f"<li>{subject}{link}</li>")
        parts.append(f"<ul>{''.join(items)}</ul>")
    elif not render.is_follow_up(alert):
        parts.append(f"<p>{h(ph.explanation(alert), 2000)}</p>")
        parts.append(f"<p>{ph.watch}{ph.colon}{h(alert.brand or alert.watch_id, 200)}</p>")
        quotes = []
        for ev in alert.evidence:
            url = escape.safe_url(ev.url)
            link = f" {_a(url, ph.post_label(escape.host(url)))}" if url else ""
            who = h(ev.author or ph.unknown, 100)
            quotes.append(
                f"<li><strong>{who}</strong>{ph.followers(ev.followers)}{ph.colon}"
                f"“{h(ev.text, 500)}”{link}</li>"
            )
        if quotes:
            parts.append(f"<ul>{''.join(quotes)}</ul>")
    links = [_a(link.url, link.label) for link in render.links(alert, language)]
    if links:
        parts.append(f"<p>{' · '.join(links)}</p>")
    start = "<html><body>" if ph.language == "en" else '<html lang="zh-CN"><body>'
    return "<!DOCTYPE html>" + start + "".join(parts) + "</body></html>"


def message_id(alert: AlertMessage) -> str:
    """The same for every attempt of one delivery (its idempotency key, hashed into a
    dot-atom), so a message sent again after a lost SMTP answer is a duplicate that mail
    servers and clients can drop; a fresh one for a message without a key."""
    if not alert.idempotency_key:
        return make_msgid(idstring=f"incident-{alert.incident_id}", domain=DOMAIN)
    digest = hashlib.sha256(alert.idempotency_key.encode()).hexdigest()[:32]
    return f"<incident-{alert.incident_id}.{digest}@{DOMAIN}>"


def build_email(alert: AlertMessage, config: EmailChannelConfig, now: datetime) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject(alert, config.subject_prefix, config.language)
    msg["From"] = config.sender
    msg["To"] = ", ".join(config.to)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id(alert)
    root = f"<{alert.thread_key}@{DOMAIN}>"  # one thread per incident, every page
    msg["References"] = root
    msg["In-Reply-To"] = root
    if alert.idempotency_key:
        msg["X-Crisiswatch-Idempotency-Key"] = " ".join(alert.idempotency_key.split())[:200]
    msg.set_content(plain_body(alert, config.language))
    msg.add_alternative(html_body(alert, config.language), subtype="html")
    if config.language != "en":  # after the parts: set_content drops Content-* headers
        msg["Content-Language"] = "zh-CN"
    return msg


class SmtpClient:
    """The raw client: one SMTP submission per message, every failure a ``DeliveryError``
    (a recipient the server refused while it took the others included: aiosmtplib only
    raises when it refuses every one)."""

    def __init__(self, channel: str, config: EmailChannelConfig) -> None:
        self.channel = channel
        self._config = config
        self._password = config.password.get_secret_value() if config.password else None
        self._tls = ssl.create_default_context(cafile=config.ca_file) if config.starttls else None

    def _error(self, what: str, *, retryable: bool) -> DeliveryError:
        text = " ".join(escape.clean(what, 300).split())
        return DeliveryError(
            f"channel {self.channel}: {redact(text, [self._password or ''])}", retryable=retryable
        )

    async def submit(self, message: EmailMessage) -> None:
        c = self._config
        try:
            refused, _ = await aiosmtplib.send(
                message,
                hostname=c.host,
                port=c.port,
                username=c.username,
                password=self._password,
                start_tls=c.starttls,
                tls_context=self._tls,
                timeout=c.timeout,
            )
        except (aiosmtplib.SMTPTimeoutError, TimeoutError):
            raise self._error(f"no answer within {c.timeout:g}s", retryable=True) from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            raise self._error(
                f"SMTP refused the recipients (codes {codes})",
                retryable=all(400 <= code < 500 for code in codes),
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise self._error(
                f"SMTP {exc.code}: {exc.message}", retryable=400 <= exc.code < 500
            ) from None
        except aiosmtplib.SMTPNotSupported as exc:
            raise self._error(f"SMTP server: {exc}", retryable=False) from None
        except ssl.SSLError as exc:
            raise self._error(f"TLS failed ({exc.reason})", retryable=False) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise self._error(f"SMTP failed ({type(exc).__name__})", retryable=True) from None
        if refused:
            # The server took the message for the others only: it did not get through (to
            # these). Sent again, the others get it twice, under the same Message-ID.
            which = ", ".join(f"{address} {r.code}" for address, r in sorted(refused.items()))
            raise self._error(
                f"SMTP refused some recipients ({which}); the others got the message",
                retryable=all(400 <= r.code < 500 for r in refused.values()),
            )


class EmailNotifier:
    kind = "email"
    rate_limits: ClassVar[tuple[RateLimit, ...]] = (RateLimit(count=30, per_seconds=60),)

    def __init__(self, name: str, config: EmailChannelConfig, clock: Clock) -> None:
        self.name = name
        self._config = config
        self.language = config.language
        self._clock = clock
        self._client = SmtpClient(name, config)

    async def send(self, alert: AlertMessage) -> None:
        await self._client.submit(build_email(alert, self._config, self._clock.now()))
