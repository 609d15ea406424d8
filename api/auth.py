"""API keys with roles. A key is sent as ``Authorization: Bearer <key>`` or ``X-API-Key``.

Keys are held only as SHA-256 digests in memory and compared in constant time; the
configuration may give the digest instead of the key (``key_sha256``, made by
``crisiswatch keys hash``), so the plaintext need never be written down on the server.

Roles are permission sets, not a ladder. ``require("viewer")`` lets every role in,
``require("responder")`` every role that works incidents (responder, customer_service, pr,
legal, executive, admin), ``require("admin")`` only admin; ``require_any("legal")`` names
the roles exactly (approving a template is legal's alone).

A key may be scoped to some watches (``Principal.watches``); ``None`` means every watch.

Repeated failed authentication (an unknown key) from one client address is throttled: after
``max_failures`` within ``window_s`` that address gets 429 with ``Retry-After`` for
``lockout_s``, before its key is even looked at. An IPv6 address counts by its /64
(``client_bucket``): one client holds the whole /64 and could take a fresh address per guess.
The count and the lockouts are kept in the database (``SharedThrottle``), so every API
replica sees the same ones: per process, N replicas gave an address N times the guesses.

A wrong key or metrics token is logged (``RefusalLog``: one line per client bucket a
minute, with the address, the header and the first digits of the value's SHA-256, never the
value), so that a revoked key still in use is seen; a missing one is only counted.

A key is read from the header as UTF-8 (``_header_text``), as the configured key is hashed.

``GET /metrics`` (every process) asks for ``api.metrics_token`` when one is set
(``check_metrics_token``): a bearer token of its own, not an API key, refused and throttled
by the same means (a wrong token counts as a failure, like an unknown key).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import secrets
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Final

from fastapi import HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth_lockouts import DbLockouts
from core.clock import Clock
from core.metrics import Metrics

log = logging.getLogger(__name__)

ROLES: Final = (
    "viewer",
    "responder",
    "customer_service",
    "pr",
    "legal",
    "executive",
    "admin",
)
_WORKERS: Final = frozenset(ROLES) - {"viewer"}
# what require(level) lets in: the levels the existing routers ask for
LEVELS: Final[dict[str, frozenset[str]]] = {
    "viewer": frozenset(ROLES),
    "responder": _WORKERS,
    "admin": frozenset({"admin"}),
}


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    watches: frozenset[str] | None = None  # None: every watch

    def can_see(self, watch_id: str) -> bool:
        return self.watches is None or watch_id in self.watches


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def hash_key(key: str) -> str:
    """The hex SHA-256 digest that ``api.keys[].key_sha256`` takes."""
    return digest(key).hex()


class KeyRing:
    def __init__(self) -> None:
        self._keys: list[tuple[bytes, Principal]] = []

    def add(self, key: str, name: str, role: str, watches: Iterable[str] | None = None) -> None:
        self.add_digest(digest(key), name, role, watches)

    def add_digest(
        self, key_digest: bytes, name: str, role: str, watches: Iterable[str] | None = None
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        if len(key_digest) != 32:
            raise ValueError("a key digest is 32 bytes (SHA-256)")
        for known, principal in self._keys:  # (api.settings refuses it in a config first)
            if hmac.compare_digest(known, key_digest):
                raise ValueError(f"key {name!r} is the same key as {principal.name!r}")
        scope = frozenset(watches) if watches is not None else None
        self._keys.append((key_digest, Principal(name, role, scope)))

    @classmethod
    def from_pairs(cls, items: Iterable[tuple[str, str, str]]) -> KeyRing:
        ring = cls()
        for key, name, role in items:
            ring.add(key, name, role)
        return ring

    def lookup(self, key: str) -> Principal | None:
        presented = digest(key)
        found: Principal | None = None
        for known, principal in self._keys:  # no early exit: constant time over the ring
            if hmac.compare_digest(known, presented):
                found = principal
        return found

    def __len__(self) -> int:
        return len(self._keys)


def generate_key() -> str:
    return "cw_" + secrets.token_urlsafe(24)


@dataclass
class AuthThrottle:
    """Failed authentications per client address, in a sliding window (memory-bounded)."""

    clock: Clock
    max_failures: int = 10
    window_s: float = 60.0
    lockout_s: float = 300.0
    max_clients: int = 10_000
    _failures: OrderedDict[str, deque[datetime]] = field(default_factory=OrderedDict)
    _locked: dict[str, datetime] = field(default_factory=dict)

    def retry_after(self, client: str) -> int | None:
        """Seconds until ``client`` may try again, or None when it is not locked out."""
        until = self._locked.get(client)
        if until is None:
            return None
        left = (until - self.clock.now()).total_seconds()
        if left <= 0:
            del self._locked[client]
            return None
        return max(1, math.ceil(left))

    def failed(self, client: str) -> bool:
        """Count a failure; True when it locks ``client`` out."""
        now = self.clock.now()
        window = self._failures.pop(client, None) or deque()
        window.append(now)
        horizon = now - timedelta(seconds=self.window_s)
        while window and window[0] <= horizon:
            window.popleft()
        self._failures[client] = window  # most recent last
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)
        if len(window) >= self.max_failures:
            self.lock(client, now + timedelta(seconds=self.lockout_s))
            return True
        return False

    def lock(self, client: str, until: datetime) -> None:
        """Lock ``client`` out until ``until`` (a lockout the database holds, from another
        replica's count, is remembered here); its failures start afresh."""
        self._failures.pop(client, None)
        self._locked[client] = max(until, self._locked.get(client, until))
        if len(self._locked) > self.max_clients:  # expired first, then the oldest
            now = self.clock.now()
            for stale in [c for c, ends in self._locked.items() if ends <= now]:
                del self._locked[stale]
            while len(self._locked) > self.max_clients:
                del self._locked[next(iter(self._locked))]


@dataclass
class SharedThrottle:
    """The lockout as requests meet it: this process's ``AuthThrottle`` and, once the
    process has a database (``sessions()``), the database's (``api.auth_lockouts``), which
    every API replica shares. A good key costs one read, and none while this process knows
    the address is locked out; only a failure writes. While the database cannot answer,
    the process's own count still applies (logged once, counted in
    ``crisiswatch_auth_throttle_db_errors_total``)."""

    local: AuthThrottle
    sessions: Callable[[], async_sessionmaker[AsyncSession] | None] = lambda: None
    metrics: Metrics | None = None
    _shared: DbLockouts | None = None
    _db_down: bool = False

    @property
    def lockout_s(self) -> float:
        return self.local.lockout_s

    @property
    def max_failures(self) -> int:
        return self.local.max_failures

    def _db(self) -> DbLockouts | None:
        sessions = self.sessions()
        if sessions is None:
            return None
        if self._shared is None or self._shared.sessions is not sessions:
            local = self.local
            self._shared = DbLockouts(
                sessions, local.clock, local.max_failures, local.window_s, local.lockout_s
            )
        return self._shared

    def _db_failed(self, operation: str, exc: Exception) -> None:
        if self.metrics is not None:
            self.metrics.auth_throttle_db_errors.labels(operation).inc()
        if not self._db_down:
            log.warning(
                "the failed-authentication lockout cannot use the database (%s: %s): "
                "this process counts on its own until it can",
                type(exc).__name__,
                str(exc)[:200],
            )
        self._db_down = True

    def _db_ok(self) -> None:
        if self._db_down:
            log.info("the failed-authentication lockout uses the database again")
        self._db_down = False

    async def retry_after(self, client: str) -> int | None:
        """Seconds until ``client`` may try again, or None when it is not locked out."""
        wait = self.local.retry_after(client)
        shared = self._db() if wait is None else None
        if shared is None:
            return wait
        try:
            until = await shared.locked_until(client)
        except (SQLAlchemyError, OSError) as exc:
            self._db_failed("check", exc)
            return None
        self._db_ok()
        if until is None:
            return None
        self.local.lock(client, until)
        return self.local.retry_after(client)

    async def failed(self, client: str) -> bool:
        """Count a failure, here and in the database; True when it locks ``client`` out."""
        locked = self.local.failed(client)
        shared = self._db()
        if shared is None:
            return locked
        try:
            until = await shared.failed(client)
        except (SQLAlchemyError, OSError) as exc:
            self._db_failed("count", exc)
            return locked
        self._db_ok()
        if until is not None:
            self.local.lock(client, until)
        return locked or until is not None


MIN_KEY_CHARS: Final = 16
"""The shortest API key (and metrics token) a config takes (``api.settings``) and that
``crisiswatch keys hash`` hashes."""
FINGERPRINT_HEX: Final = 8
"""Hex digits of a refused credential's SHA-256 that its log line shows (``fingerprint``)."""
MAX_DISTINCT: Final = 100


def fingerprint(presented: str) -> str | None:
    """The first ``FINGERPRINT_HEX`` hex digits of a refused credential's SHA-256, which an
    operator matches against a revoked key's recorded digest (its old ``key_sha256``).

    Safe to log: for a key made as ``crisiswatch keys new`` makes them (192 random bits),
    32 bits of its digest say nothing of the key, and no key can be made from them (SHA-256
    is not inverted, and a key is checked against the whole digest: a value with the same
    first 8 digits, easy to find, is still refused). None for a value shorter than
    ``MIN_KEY_CHARS``: no configured key ever was, so it is a typo or a guess (maybe a
    password pasted by mistake), for which the digits would only let a reader of the log
    test guesses of it offline."""
    if len(presented) < MIN_KEY_CHARS:
        return None
    return hash_key(presented)[:FINGERPRINT_HEX]


@dataclass
class _Quiet:
    """A client bucket's refusals since its last logged line."""

    since: datetime
    refused: int = 0
    marks: set[str | None] = field(default_factory=set)


@dataclass
class RefusalLog:
    """Refused credentials (an unknown API key, a wrong metrics token) in the log, at a rate
    an operator can read: the first from a client bucket (``client_bucket``: an address, an
    IPv6 /64) at once, then none from that bucket for ``interval_s``; its next line says how
    many were refused meanwhile, and how many different values they were (one: a client
    still sending an old key; many: guessing, which the lockout stops). A line names the
    client's address, the header the value came in and its ``fingerprint``, never the value.
    Per process, for at most ``max_clients`` buckets at once (the quietest forgotten)."""

    clock: Clock
    interval_s: float = 60.0
    max_clients: int = 10_000
    _quiet: OrderedDict[str, _Quiet] = field(default_factory=OrderedDict)

    def refused(self, bucket: str, address: str, what: str, header: str, presented: str) -> None:
        now = self.clock.now()
        mark = fingerprint(presented)
        quiet = self._quiet.pop(bucket, None)
        if quiet is not None and (now - quiet.since).total_seconds() < self.interval_s:
            quiet.refused += 1
            if len(quiet.marks) < MAX_DISTINCT:
                quiet.marks.add(mark)
            self._quiet[bucket] = quiet  # most recent last
            return
        digits = f"SHA-256 begins {mark}" if mark else f"under {MIN_KEY_CHARS} characters"
        line = f"refused {what} from {address} in {header} ({digits})"
        if quiet is not None and quiet.refused:
            seconds = (now - quiet.since).total_seconds()
            source = "this address" if bucket == address else bucket
            different = len(quiet.marks)
            line += (
                f"; {quiet.refused} more from {source} in the {seconds:.0f} s before, not "
                f"logged ({different}{'+' if different >= MAX_DISTINCT else ''} different)"
            )
        log.warning("%s", line)
        self._quiet[bucket] = _Quiet(now)
        while len(self._quiet) > self.max_clients:
            self._quiet.popitem(last=False)


def _header_text(value: str) -> str:
    """A header as the client wrote it: Starlette decodes header bytes as Latin-1, clients
    send a key holding non-ASCII characters as UTF-8, and the configured key is hashed as
    UTF-8 (a key ``clé…`` never matched). Bytes that are not UTF-8 stay as they were."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def _bearer(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    header = request.headers.get("authorization")
    header = _header_text(header) if header else header
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


BEARER: Final = "Authorization: Bearer"
X_API_KEY: Final = "X-API-Key"


def _presented_key(request: Request) -> tuple[str, str] | None:
    """The key the request sent and the header it came in (``BEARER``, ``X_API_KEY``)."""
    key = _bearer(request)
    if key is not None:
        return key, BEARER
    key = request.headers.get("x-api-key")
    return (_header_text(key).strip(), X_API_KEY) if key else None


def client_bucket(host: str) -> str:
    """The throttle's unit for a peer address: an IPv4 address itself (an IPv4-mapped IPv6
    address too), an IPv6 address's /64 (one subscriber's network: counted per address,
    a client with 2**64 addresses to rotate through was never locked out)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        if address.is_link_local or address.is_loopback or address.scope_id:
            # fe80::/64 is every host on every link (the zone says which one), ::1 would
            # share ``::/64`` with IPv4-compatible addresses: per address, zone kept
            return str(address)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return host


def _client(request: Request) -> str:
    return client_bucket(request.client.host) if request.client else "unknown"


def _metrics(request: Request) -> Metrics | None:
    metrics: Metrics | None = getattr(request.app.state, "metrics", None)
    return metrics


async def _refuse_if_throttled(request: Request) -> None:
    """429 with ``Retry-After`` while the request's address is locked out."""
    throttle: SharedThrottle | None = getattr(request.app.state, "auth_throttle", None)
    if throttle is None:
        return
    wait = await throttle.retry_after(_client(request))
    if wait is not None:
        metrics = _metrics(request)
        if metrics is not None:
            metrics.auth_failures.labels("throttled").inc()
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"too many failed authentications from this address; retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )


@dataclass(frozen=True)
class Guess:
    """A credential that was sent and is wrong: what it was taken for, the header it came
    in, the value (never logged: ``RefusalLog``)."""

    what: str
    header: str
    value: str = field(repr=False)


async def _refuse(
    request: Request, reason: str, detail: str, *, guess: Guess | None
) -> HTTPException:
    """Count a refused authentication (``reason``) and make its 401. A ``guess`` (a
    credential that is wrong, not missing) also counts toward the address's lockout and is
    logged (``RefusalLog``)."""
    metrics = _metrics(request)
    if metrics is not None:
        metrics.auth_failures.labels(reason).inc()
    throttle: SharedThrottle | None = getattr(request.app.state, "auth_throttle", None)
    client = _client(request)
    refusals: RefusalLog | None = getattr(request.app.state, "refusal_log", None)
    if guess is not None and refusals is not None:
        address = request.client.host if request.client else "unknown"
        refusals.refused(client, address, guess.what, guess.header, guess.value)
    if guess is not None and throttle is not None and await throttle.failed(client):
        log.warning(
            "client %s locked out for %.0f s after %d failed authentications",
            client,
            throttle.lockout_s,
            throttle.max_failures,
        )
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def authenticate(request: Request) -> Principal:
    """The key's principal; 401 without a valid key, 429 while the address is throttled."""
    await _refuse_if_throttled(request)
    presented = _presented_key(request)
    if presented is None:
        sent = request.headers.get("authorization")
        problem = (  # a key sent without its scheme ('Authorization: cw_...'), or Basic
            "the Authorization header is not 'Bearer <key>'"
            if sent and sent.strip()
            else "missing API key"
        )
        raise await _refuse(
            request,
            "missing",
            f"{problem}: send 'Authorization: Bearer <key>' or 'X-API-Key'",
            guess=None,
        )
    key, header = presented
    ring: KeyRing = request.app.state.keyring
    principal = ring.lookup(key)
    if principal is None:
        guess = Guess("an unknown API key", header, key)
        raise await _refuse(request, "unknown_key", "unknown API key", guess=guess)
    return principal


async def check_metrics_token(request: Request, token: SecretStr | None) -> None:
    """Let ``GET /metrics`` through when ``token`` (``api.metrics_token``) is unset or the
    request carries ``Authorization: Bearer <token>``; otherwise 401 (counted as
    ``missing`` or ``wrong_metrics_token``; a wrong token also toward the lockout), and 429
    while the address is locked out. API keys are not metrics tokens."""
    if token is None:
        return
    await _refuse_if_throttled(request)
    presented = _bearer(request)
    if presented is None:
        raise await _refuse(
            request,
            "missing",
            "/metrics needs the metrics token (api.metrics_token): send "
            "'Authorization: Bearer <token>'",
            guess=None,
        )
    # digests of both: equal lengths, so the comparison's time says nothing of the token
    if not hmac.compare_digest(digest(presented), digest(token.get_secret_value())):
        guess = Guess("a wrong metrics token", BEARER, presented)
        raise await _refuse(request, "wrong_metrics_token", "wrong metrics token", guess=guess)


# How the OpenAPI schema (and so /docs's "Authorize") says a key is sent. They read
# nothing for ``authenticate``, which reads the headers itself (``_presented_key``), and
# never refuse: a missing or wrong key is ``authenticate``'s 401 (counted, throttled).
BEARER_SCHEME: Final = HTTPBearer(
    auto_error=False, scheme_name="bearer", description="Authorization: Bearer <API key>"
)
API_KEY_SCHEME: Final = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKey", description="the API key"
)
BearerSchemed = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER_SCHEME)]
KeySchemed = Annotated[str | None, Security(API_KEY_SCHEME)]


def _guard(allowed: frozenset[str], needs: str) -> Callable[..., Awaitable[Principal]]:
    async def dependency(
        request: Request,
        _bearer: BearerSchemed = None,
        _key: KeySchemed = None,
    ) -> Principal:
        principal = await authenticate(request)
        request.state.principal = principal  # who, for the audit of a refusal (api.audit)
        if principal.role not in allowed:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"this action needs {needs}; key {principal.name!r} "
                f"has the {principal.role!r} role",
            )
        return principal

    return dependency


def require(level: str) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: 401 without a valid key, 403 when its role is not in ``level``
    (``viewer``: any role; ``responder``: any role but viewer; ``admin``: admin)."""
    return _guard(LEVELS[level], f"the {level!r} role or one that includes it")


def require_any(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency letting in exactly ``roles``."""
    unknown = set(roles) - set(ROLES)
    if not roles or unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; one of {', '.join(ROLES)}")
    names = " or ".join(repr(r) for r in roles)
    return _guard(frozenset(roles), f"a key with the {names} role")


def ensure_scope(principal: Principal, watch_id: str) -> None:
    """403 when ``principal``'s key is scoped to other watches than ``watch_id``."""
    if not principal.can_see(watch_id):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"key {principal.name!r} is not scoped to watch {watch_id!r}",
        )


HIDDEN_WHEN_MISSING: Final = frozenset({"incident", "drill", "silence"})
"""What a key scoped to some watches is answered alike whether it belongs to another watch
or does not exist (``api.app`` turns an incident's or a drill's not-found into
``hidden_when_missing``, ``api.routers.alerting`` a silence's)."""

_WATCHES_OF: Final[dict[str, str]] = {"silence": "every watch of"}
"""How a refusal names the watches of ``what`` by its kind (a silence's ``watch`` matcher
may name several; an incident or a drill has one watch)."""


def not_visible(principal: Principal, what: str, then: str = "") -> HTTPException:
    """The 403 of a key scoped to some watches for ``what`` (``"incident 12"``), stored
    under another watch (``then``: what follows, such as what the key may do instead). For
    a kind in ``HIDDEN_WHEN_MISSING`` one that does not exist gets the same answer, which
    then says so: the key learns neither that watch nor which ids other watches have."""
    kind = what.partition(" ")[0]
    detail = f"key {principal.name!r} is not scoped to {_WATCHES_OF.get(kind, 'the watch of')} "
    detail += what
    if kind in HIDDEN_WHEN_MISSING:
        detail += f" (or {what} does not exist)"
    if then:
        detail += f": {then}"
    return HTTPException(status.HTTP_403_FORBIDDEN, detail=detail)


def ensure_visible(principal: Principal, watch_id: str, what: str) -> None:
    """403 when ``what`` (a stored incident, drill: ``"incident 12"``) belongs to a watch
    outside ``principal``'s scope. Unlike ``ensure_scope``, which checks a watch the caller
    named, the answer does not name that watch: the key is not to learn other watches."""
    if not principal.can_see(watch_id):
        raise not_visible(principal, what)


def hidden_when_missing(request: Request, what: str, then: str = "") -> HTTPException | None:
    """For a request by a key scoped to some watches, the answer to ``what`` (of a kind in
    ``HIDDEN_WHEN_MISSING``) not existing: the 403 another watch's gets (``then`` as
    ``not_visible`` takes it), not a 404 that would tell the two apart. None for any other
    caller (an unscoped key sees every watch: its 404 says nothing of other watches)."""
    who: Principal | None = getattr(request.state, "principal", None)
    if who is None or who.watches is None:
        return None
    return not_visible(who, what, then)


def scoped_watches(who: Principal, watch: str | None) -> frozenset[str] | None:
    """The watches a list may show (``None``: every watch).

    ``?watch=`` asked: that watch, 403 when it is outside the key's scope. Not asked: the
    key's watches, so a key scoped to several watches lists all of them at once.
    """
    if watch is not None:
        ensure_scope(who, watch)
        return frozenset({watch})
    return who.watches


def limited_to_scope(who: Principal, watches: Iterable[str] | None) -> bool:
    """Whether something limited to ``watches`` (a silence's watch matcher; ``None``: no
    watch matcher, so every watch) stays inside ``who``'s scope."""
    if who.watches is None:
        return True
    return watches is not None and who.watches.issuperset(watches)
