"""A refused key (unknown: revoked, mistyped, guessed) or metrics token is logged, at most one
line per client address a minute, with the address, the header it came in and the first 8
hex digits of its SHA-256 (to match against a revoked key's recorded digest), never the
value: it was only counted in metrics, so a client still using a revoked key went unseen."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from api.auth import hash_key
from api.settings import AuthThrottleConfig
from core.clock import ManualClock
from tests.access_support import key_headers, role_api

REVOKED = "cw_revoked-key-0123456789abcdef"
TOKEN = "metrics-token-0123456789"
OLD_TOKEN = "old-metrics-token-0123456789"


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "api.auth" and r.getMessage().startswith("refused")
    ]


async def test_a_refused_key_is_logged_once_a_minute_per_address(
    tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    throttle = AuthThrottleConfig(max_failures=100)
    async with role_api(tmp_path, clock, throttle=throttle) as (client, _):
        with caplog.at_level(logging.WARNING, logger="api.auth"):
            for _ in range(3):
                r = await client.get("/incidents", headers={"X-API-Key": REVOKED})
                assert r.status_code == 401
            bearer = {"Authorization": "Bearer another-wrong-key-0123456789"}
            assert (await client.get("/incidents", headers=bearer)).status_code == 401
            assert (await client.get("/incidents")).status_code == 401  # no key: not a guess
            ok = await client.get("/incidents", headers=key_headers("viewer"))
            assert ok.status_code == 200
            assert _lines(caplog) == [
                "refused an unknown API key from 127.0.0.1 in X-API-Key "
                f"(SHA-256 begins {hash_key(REVOKED)[:8]})"
            ]
            clock.advance(61)
            r = await client.get("/incidents", headers={"Authorization": f"Bearer {REVOKED}"})
            assert r.status_code == 401
    assert _lines(caplog)[1:] == [
        "refused an unknown API key from 127.0.0.1 in Authorization: Bearer "
        f"(SHA-256 begins {hash_key(REVOKED)[:8]}); 3 more from this address in the 61 s "
        "before, not logged (2 different)"
    ]
    assert REVOKED not in caplog.text and "another-wrong-key" not in caplog.text


async def test_a_short_value_gets_no_digest_and_a_wrong_metrics_token_is_logged(
    tmp_path: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A value shorter than any key could be (a typo, a password pasted by mistake) is
    logged without digits: they would only help test guesses of it."""
    async with role_api(tmp_path, clock) as (client, runtime):
        api = runtime.settings.api.model_copy(update={"metrics_token": SecretStr(TOKEN)})
        runtime.settings = runtime.settings.model_copy(update={"api": api})
        with caplog.at_level(logging.WARNING, logger="api.auth"):
            r = await client.get("/incidents", headers={"X-API-Key": "hunter2"})
            assert r.status_code == 401
            clock.advance(61)
            wrong = {"Authorization": f"Bearer {OLD_TOKEN}"}
            assert (await client.get("/metrics", headers=wrong)).status_code == 401
            good = {"Authorization": f"Bearer {TOKEN}"}
            assert (await client.get("/metrics", headers=good)).status_code == 200
    assert _lines(caplog) == [
        "refused an unknown API key from 127.0.0.1 in X-API-Key (under 16 characters)",
        "refused a wrong metrics token from 127.0.0.1 in Authorization: Bearer "
        f"(SHA-256 begins {hash_key(OLD_TOKEN)[:8]})",
    ]
    assert OLD_TOKEN not in caplog.text and TOKEN not in caplog.text
    assert "hunter2" not in caplog.text and hash_key("hunter2")[:8] not in caplog.text


def test_the_log_keeps_a_bounded_number_of_addresses(caplog: pytest.LogCaptureFixture) -> None:
    from api.auth import RefusalLog

    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    refusals = RefusalLog(clock, interval_s=60, max_clients=2)
    with caplog.at_level(logging.WARNING, logger="api.auth"):
        for address in ("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.1"):
            refusals.refused(address, address, "an unknown API key", "X-API-Key", REVOKED)
        # an IPv6 client counts by its /64, and the line says so
        for address in ("2001:db8::1", "2001:db8::2"):
            refusals.refused("2001:db8::/64", address, "an unknown API key", "X-API-Key", "x")
        clock.advance(60)
        refusals.refused("2001:db8::/64", "2001:db8::3", "an unknown API key", "X-API-Key", "y")
    lines = _lines(caplog)
    # 192.0.2.1 was forgotten (two addresses at most), so it is logged again at once
    assert [line.split(" from ")[1].split(" in ")[0] for line in lines] == [
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.3",
        "192.0.2.1",
        "2001:db8::1",
        "2001:db8::3",
    ]
    assert lines[-1].endswith(
        "; 1 more from 2001:db8::/64 in the 60 s before, not logged (1 different)"
    )
