"""API access: roles as permission sets, hashed keys, per-watch scope, throttled failures."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from api.auth import LEVELS, KeyRing, hash_key, require_any
from api.settings import ApiKeyConfig, AuthThrottleConfig
from core.clock import ManualClock
from tests.access_support import KEYS, key_headers, open_incident, role_api

HASHED_KEY = "hashed-key-only-its-digest-is-configured"
SCOPED_KEY = "scoped-key-0123456789abcdef"
SCOPED_VIEWER_KEY = "scoped-viewer-key-0123456789"


def test_levels_keep_their_meaning_for_existing_routes() -> None:
    assert LEVELS["viewer"] == frozenset(KEYS)
    assert LEVELS["responder"] == frozenset(KEYS) - {"viewer"}
    assert LEVELS["admin"] == {"admin"}
    with pytest.raises(ValueError, match="unknown roles"):
        require_any("superuser")


def test_key_config_takes_a_key_or_its_digest_never_both() -> None:
    digest = hash_key(HASHED_KEY)
    assert digest == hashlib.sha256(HASHED_KEY.encode()).hexdigest()
    config = ApiKeyConfig(name="k", key_sha256=digest, role="pr")
    assert config.digest() == bytes.fromhex(digest)
    for bad in (
        {"name": "k", "role": "pr"},
        {"name": "k", "role": "pr", "key": HASHED_KEY, "key_sha256": digest},
        {"name": "k", "role": "pr", "key_sha256": "abc"},
        {"name": "k", "role": "root", "key": HASHED_KEY},
    ):
        with pytest.raises(ValidationError):
            ApiKeyConfig.model_validate(bad)
    ring = KeyRing()
    ring.add_digest(config.digest(), "k", "pr")
    assert ring.lookup(HASHED_KEY) is not None and ring.lookup(digest) is None


async def test_a_hashed_key_authenticates(tmp_path: Path, clock: ManualClock) -> None:
    extra = [ApiKeyConfig(name="hashed", key_sha256=hash_key(HASHED_KEY), role="legal")]
    async with role_api(tmp_path, clock, extra_keys=extra) as (client, _):
        r = await client.get("/templates", headers={"X-API-Key": HASHED_KEY})
        assert r.status_code == 200
        r = await client.get("/templates", headers={"X-API-Key": hash_key(HASHED_KEY)})
        assert r.status_code == 401  # the digest itself is not a key


async def test_a_scoped_key_sees_and_acts_only_on_its_watches(
    tmp_path: Path, clock: ManualClock
) -> None:
    extra = [ApiKeyConfig(name="acme-pr", key=SCOPED_KEY, role="pr", watches=["acme"])]
    headers = {"X-API-Key": SCOPED_KEY}
    async with role_api(tmp_path, clock, extra_keys=extra) as (client, runtime):
        mine = await open_incident(runtime, clock, watch="acme")
        other = await open_incident(runtime, clock, watch="globex")
        page = (await client.get("/incidents", headers=headers)).json()
        assert [i["id"] for i in page["items"]] == [mine]
        r = await client.get("/incidents?watch=globex", headers=headers)
        assert r.status_code == 403 and "not scoped to watch 'globex'" in r.json()["detail"]
        assert (await client.get(f"/incidents/{other}", headers=headers)).status_code == 403
        assert (await client.post(f"/incidents/{other}/ack", headers=headers)).status_code == 403
        for path in (f"/incidents/{other}/responses", f"/incidents/{other}/template-suggestions"):
            assert (await client.get(path, headers=headers)).status_code == 403
        assert (await client.post(f"/incidents/{mine}/ack", headers=headers)).status_code == 200
        # an unscoped key still sees both
        page = (await client.get("/incidents", headers=key_headers("viewer"))).json()
        assert page["total"] == 2


async def test_a_key_scoped_to_several_watches_lists_them_all(
    tmp_path: Path, clock: ManualClock
) -> None:
    extra = [ApiKeyConfig(name="ab", key=SCOPED_KEY, role="viewer", watches=["acme", "beta"])]
    headers = {"X-API-Key": SCOPED_KEY}
    async with role_api(tmp_path, clock, extra_keys=extra) as (client, runtime):
        acme = await open_incident(runtime, clock, watch="acme")
        beta = await open_incident(runtime, clock, watch="beta", tier=3)
        await open_incident(runtime, clock, watch="gamma")
        r = await client.get("/incidents", headers=headers)
        assert r.status_code == 200, r.text  # no ?watch= needed: the key's watches
        assert sorted(i["id"] for i in r.json()["items"]) == [acme, beta]
        assert r.json()["total"] == 2
        page = (await client.get("/incidents?status=open&tier=3", headers=headers)).json()
        assert [i["id"] for i in page["items"]] == [beta] and page["total"] == 1
        page = (await client.get("/incidents?limit=1&offset=1", headers=headers)).json()
        assert [i["id"] for i in page["items"]] == [acme] and page["total"] == 2
        page = (await client.get("/incidents?watch=beta", headers=headers)).json()
        assert [i["id"] for i in page["items"]] == [beta]
        r = await client.get("/incidents?watch=gamma", headers=headers)
        assert r.status_code == 403 and "not scoped to watch 'gamma'" in r.json()["detail"]
        page = (await client.get("/incidents", headers=key_headers("viewer"))).json()
        assert page["total"] == 3


async def test_a_scoped_key_silences_only_its_watches(tmp_path: Path, clock: ManualClock) -> None:
    extra = [
        ApiKeyConfig(name="acme-resp", key=SCOPED_KEY, role="responder", watches=["acme"]),
        ApiKeyConfig(name="acme-view", key=SCOPED_VIEWER_KEY, role="viewer", watches=["acme"]),
    ]
    mine, viewer = {"X-API-Key": SCOPED_KEY}, {"X-API-Key": SCOPED_VIEWER_KEY}
    admin = key_headers("admin")

    def body(**matchers: object) -> dict[str, object]:
        return {"matchers": matchers, "ends_at": "2099-01-01T00:00:00Z", "reason": "noise"}

    async with role_api(tmp_path, clock, extra_keys=extra) as (client, runtime):
        # another watch, or every watch (no watch matcher): refused, nothing stored
        for matchers, says in (
            ({"watch": ["globex"]}, "not scoped to watch 'globex'"),
            ({"watch": ["acme", "globex"]}, "not scoped to watch 'globex'"),
            ({"tier": [3]}, "without one a silence mutes every watch"),
            ({"source": ["bluesky"], "tier": [1]}, "'watch' matcher"),
        ):
            r = await client.post("/silences", headers=mine, json=body(**matchers))
            assert r.status_code == 403, (matchers, r.text)
            assert says in r.json()["detail"] and "acme-resp" in r.json()["detail"]
        assert (await client.get("/silences", headers=admin)).json() == []
        audit = (await client.get("/audit?outcome=ok", headers=admin)).json()
        assert audit["total"] == 0  # each attempt is audited as refused (api.audit)
        audit = (await client.get("/audit?outcome=forbidden", headers=admin)).json()
        assert audit["total"] == 4
        assert {(e["actor"], e["action"]) for e in audit["items"]} == {
            ("acme-resp", "silence.create")
        }
        # so a globex tier-3 incident is alerted as usual
        other = await open_incident(runtime, clock, tier=3, watch="globex")
        detail = (await client.get(f"/incidents/{other}", headers=admin)).json()
        assert "silenced" not in [e["kind"] for e in detail["timeline"]]
        assert detail["deliveries"]

        own = await client.post("/silences", headers=mine, json=body(watch=["acme"], tier=[1]))
        assert own.status_code == 201, own.text
        theirs = await client.post("/silences", headers=admin, json=body(watch=["globex"]))
        everywhere = await client.post("/silences", headers=admin, json=body(tier=[3]))
        ids = [s.json()["id"] for s in (own, theirs, everywhere)]

        listed = (await client.get("/silences", headers=viewer)).json()
        assert [s["id"] for s in listed] == [ids[0]]
        listed = (await client.get("/silences", headers=key_headers("viewer"))).json()
        assert sorted(s["id"] for s in listed) == sorted(ids)  # an unscoped key sees all

        for silence_id in ids[1:]:
            r = await client.delete(f"/silences/{silence_id}", headers=mine)
            assert r.status_code == 403, r.text
            assert "expire only silences" in r.json()["detail"]
        r = await client.delete("/silences/999", headers=mine)  # as another watch's silence
        assert r.status_code == 403 and "(or silence 999 does not exist)" in r.text, r.text
        assert (await client.delete(f"/silences/{ids[0]}", headers=mine)).status_code == 200
        assert (await client.delete(f"/silences/{ids[1]}", headers=admin)).status_code == 200
        active = (await client.get("/silences", headers=key_headers("viewer"))).json()
        assert [s["id"] for s in active] == [ids[2]]
        expired = await client.get("/silences?include_expired=true", headers=viewer)
        assert [s["id"] for s in expired.json()] == [ids[0]]


async def test_repeated_failures_are_throttled_per_address(
    tmp_path: Path, clock: ManualClock
) -> None:
    throttle = AuthThrottleConfig(max_failures=3, window_s=60, lockout_s=120)
    async with role_api(tmp_path, clock, throttle=throttle) as (client, runtime):
        wrong = {"X-API-Key": "guess-0123456789abcdef"}
        for _ in range(3):
            assert (await client.get("/templates", headers=wrong)).status_code == 401
        r = await client.get("/templates", headers=key_headers("admin"))  # even a good key
        assert r.status_code == 429
        assert r.headers["retry-after"] == "120"
        assert "too many failed authentications" in r.json()["detail"]
        clock.advance(100)
        r = await client.get("/templates", headers=wrong)
        assert r.status_code == 429 and r.headers["retry-after"] == "20"
        clock.advance(21)
        assert (await client.get("/templates", headers=key_headers("admin"))).status_code == 200
        counted = runtime.metrics.auth_failures
        assert counted.labels("unknown_key")._value.get() == 3
        assert counted.labels("throttled")._value.get() == 2
        text = (await client.get("/metrics")).text
        assert 'crisiswatch_auth_failures_total{reason="throttled"} 2.0' in text


async def test_failures_outside_the_window_do_not_add_up(
    tmp_path: Path, clock: ManualClock
) -> None:
    throttle = AuthThrottleConfig(max_failures=3, window_s=60, lockout_s=120)
    async with role_api(tmp_path, clock, throttle=throttle) as (client, _):
        wrong = {"X-API-Key": "guess-0123456789abcdef"}
        for _ in range(5):
            assert (await client.get("/templates", headers=wrong)).status_code == 401
            clock.advance(31)  # never three inside one minute
        # a missing key is not a guess: it is not counted
        for _ in range(5):
            assert (await client.get("/templates")).status_code == 401
        assert (await client.get("/templates", headers=wrong)).status_code == 401


async def test_audit_log_is_admin_only_and_paginated(tmp_path: Path, clock: ManualClock) -> None:
    async with role_api(tmp_path, clock) as (client, runtime):
        for _ in range(3):
            incident = await open_incident(runtime, clock)
            await client.post(f"/incidents/{incident}/ack", headers=key_headers("responder"))
        for role in KEYS:
            r = await client.get("/audit", headers=key_headers(role))
            assert r.status_code == (200 if role == "admin" else 403), role
        page = (await client.get("/audit?limit=2", headers=key_headers("admin"))).json()
        assert page["total"] == 3 and len(page["items"]) == 2
        entry = page["items"][0]
        assert entry["action"] == "incident.acknowledge" and entry["actor"] == "responder"
        assert entry["before"]["status"] == "open" and entry["after"]["status"] == "acknowledged"
        page = (await client.get("/audit?offset=2", headers=key_headers("admin"))).json()
        assert len(page["items"]) == 1
        r = await client.get("/audit?actor=nobody", headers=key_headers("admin"))
        assert r.json()["total"] == 0
        # a refused change leaves no change, but the attempt is audited as refused
        await client.post(f"/incidents/{incident}/ack", headers=key_headers("viewer"))
        page = (await client.get("/audit", headers=key_headers("admin"))).json()
        assert page["total"] == 4
        assert [e["outcome"] for e in page["items"]] == ["forbidden", "ok", "ok", "ok"]


def test_cli_hashes_a_key_from_stdin() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "api.cli", "keys", "hash"],
        input=HASHED_KEY + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == hash_key(HASHED_KEY)
    assert HASHED_KEY not in out.stdout + out.stderr
    new = subprocess.run(
        [sys.executable, "-m", "api.cli", "keys", "new"], capture_output=True, text=True, check=True
    )
    lines = dict(line.split(":", 1) for line in new.stdout.strip().splitlines())
    assert hash_key(lines["key"].strip()) == lines["key_sha256"].strip()
