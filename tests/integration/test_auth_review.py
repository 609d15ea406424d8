"""Review of API key authentication: keys outside ASCII, and the failed-attempt throttle's
unit for IPv6 clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from api.auth import KeyRing, hash_key
from api.settings import ApiKeyConfig, AuthThrottleConfig
from core.clock import ManualClock
from tests.access_support import key_headers, role_app

UNICODE_KEY = "clé-d’accès-ключ-0123456789"


@asynccontextmanager
async def clients(
    tmp_path: Path,
    clock: ManualClock,
    addresses: list[str],
    *,
    extra_keys: list[ApiKeyConfig] | None = None,
    throttle: AuthThrottleConfig | None = None,
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One started API, and a client for each of ``addresses`` (the peer it is seen from)."""
    _, app = role_app(tmp_path, clock, extra_keys=extra_keys, throttle=throttle)
    async with app.router.lifespan_context(app):
        made = [
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app, client=(address, 50_000)),
                base_url="http://cw",
            )
            for address in addresses
        ]
        try:
            yield made
        finally:
            for client in made:
                await client.aclose()


async def test_a_key_with_non_ascii_characters_authenticates(
    tmp_path: Path, clock: ManualClock
) -> None:
    """The config takes any key of 16+ characters and ``crisiswatch keys hash`` hashes its
    UTF-8; clients send it as UTF-8 bytes, which Starlette hands over decoded as Latin-1:
    the digests never matched, so such a key was refused (401) forever, and each try
    counted toward the address's lockout."""
    extra = [
        ApiKeyConfig(name="plain", key=UNICODE_KEY, role="viewer"),
        ApiKeyConfig(name="hashed", key_sha256=hash_key(UNICODE_KEY + "2"), role="viewer"),
    ]
    async with clients(tmp_path, clock, ["127.0.0.1"], extra_keys=extra) as (client,):
        for key in (UNICODE_KEY, UNICODE_KEY + "2"):
            raw = key.encode()
            for headers in ([(b"X-API-Key", raw)], [(b"Authorization", b"Bearer " + raw)]):
                r = await client.get("/templates", headers=headers)
                assert r.status_code == 200, (key, headers, r.status_code)
        # a key that is not valid UTF-8 is still just unknown
        r = await client.get("/templates", headers=[(b"X-API-Key", b"\xff\xfe-not-utf8")])
        assert r.status_code == 401


def test_ring_lookup_of_the_latin1_reading_of_a_key_finds_nothing() -> None:
    ring = KeyRing()
    ring.add(UNICODE_KEY, "k", "viewer")
    assert ring.lookup(UNICODE_KEY) is not None
    assert ring.lookup(UNICODE_KEY.encode().decode("latin-1")) is None


@pytest.mark.parametrize(
    ("host", "bucket"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),  # IPv4-mapped: the IPv4 address
        ("unknown", "unknown"),
        ("testclient", "testclient"),
    ],
)
def test_client_bucket(host: str, bucket: str) -> None:
    from api.auth import client_bucket  # (here: the other tests ran before it existed)

    assert client_bucket(host) == bucket


async def test_guesses_from_one_ipv6_subnet_share_one_lockout(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Failures were counted per address: an IPv6 client, which holds a whole /64 (2**64
    addresses), took a fresh address for each guess and was never throttled."""
    throttle = AuthThrottleConfig(max_failures=3, window_s=60, lockout_s=120)
    addresses = [f"2001:db8:0:7::{n}" for n in range(1, 5)] + ["2001:db8:0:8::1"]
    async with clients(tmp_path, clock, addresses, throttle=throttle) as made:
        *subnet, neighbour = made
        wrong = {"X-API-Key": "guess-0123456789abcdef"}
        for client in subnet[:3]:
            assert (await client.get("/templates", headers=wrong)).status_code == 401
        r = await subnet[3].get("/templates", headers=key_headers("admin"))
        assert r.status_code == 429, r.status_code
        assert r.headers["retry-after"] == "120"
        # another /64 is another client
        r = await neighbour.get("/templates", headers=key_headers("admin"))
        assert r.status_code == 200
