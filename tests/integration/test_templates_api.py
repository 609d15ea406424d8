"""Response templates over HTTP: the legal-review workflow, using templates, the record."""

from __future__ import annotations

import asyncio
import getpass
import os
import sqlite3
import subprocess
import sys
import uuid
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alerts.config import AlertsConfig
from alerts.templates import service
from alerts.templates.models import KINDS
from alerts.templates.seeds import SEED_ACTOR, load_seeds, seed_templates
from core.clock import ManualClock
from core.db import unit_of_work
from tests.access_support import (
    BODY,
    SECOND_LEGAL_KEY,
    add_incident,
    key_headers,
    make_signal,
    make_template,
    open_incident,
    role_api,
)

PR = key_headers("pr")
LEGAL = key_headers("legal")
LEGAL_2 = {"Authorization": f"Bearer {SECOND_LEGAL_KEY}"}
ADMIN = key_headers("admin")
VIEWER = key_headers("viewer")
CS = key_headers("customer_service")
NEW = {
    "name": "apology-en-v",
    "kind": "apology",
    "lang": "en",
    "min_tier": 2,
    "max_tier": 3,
    "body": "{{ brand }} apologises for {{ issue }}.",
}


async def test_draft_review_approve_use_and_edit_makes_a_new_draft(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with role_api(tmp_path, clock) as (client, runtime):
        r = await client.post("/templates", headers=PR, json=NEW)
        assert r.status_code == 201, r.text
        tid = r.json()["id"]
        assert r.json()["latest_status"] == "draft" and r.json()["approved_version"] is None
        assert r.json()["versions"][0]["variables"] == ["brand", "issue"]
        base = f"/templates/{tid}/versions/1"

        incident = await open_incident(runtime, clock, tier=2)
        use = {"template_id": tid, "variables": {"issue": "the late refunds"}}
        r = await client.post(f"/incidents/{incident}/responses", headers=PR, json=use)
        assert r.status_code == 409 and "no approved version" in r.json()["detail"]

        # forbidden transitions: 409 with the reason
        for action in ("approve", "reject", "retire"):
            r = await client.post(f"{base}/{action}", headers=LEGAL)
            assert r.status_code == 409, (action, r.text)
            assert "it is draft" in r.json()["detail"]
        assert (await client.post(f"{base}/submit", headers=PR)).json()["status"] == "in_review"
        r = await client.post(f"{base}/submit", headers=PR)
        assert r.status_code == 409
        r = await client.patch(base, headers=PR, json={"body": "changed"})
        assert r.status_code == 409 and "reject it back to draft" in r.json()["detail"]

        # approval: legal only (admin and pr get 403), never by the version's author
        for who in (ADMIN, PR, CS):
            r = await client.post(f"{base}/approve", headers=who)
            assert r.status_code == 403 and "'legal'" in r.json()["detail"]
        r = await client.post(f"{base}/approve", headers=LEGAL, json={"note": "ok"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "approved" and r.json()["reviewed_by"] == "legal"

        r = await client.post(f"/incidents/{incident}/responses", headers=CS, json=use)
        assert r.status_code == 201, r.text
        usage = r.json()
        assert usage["text"] == "Acme apologises for the late refunds."
        assert usage["used_by"] == "customer_service" and usage["version_number"] == 1

        # editing the approved version makes draft 2; version 1 stays in use
        r = await client.patch(base, headers=LEGAL, json={"body": "{{ brand }} is sorry."})
        assert r.status_code == 200 and r.json()["number"] == 2 and r.json()["status"] == "draft"
        r = await client.patch(base, headers=PR, json={"body": "again"})
        assert r.status_code == 409 and "already has version 2" in r.json()["detail"]
        detail = (await client.get(f"/templates/{tid}", headers=VIEWER)).json()
        assert detail["approved_version"] == 1 and detail["latest_status"] == "draft"
        r = await client.post(
            f"/incidents/{incident}/responses", headers=PR, json={**use, "version": 2}
        )
        assert r.status_code == 409 and "only approved versions" in r.json()["detail"]

        # legal wrote version 2: legal may not approve it, a second legal key may
        v2 = f"/templates/{tid}/versions/2"
        assert (await client.post(f"{v2}/submit", headers=LEGAL)).status_code == 200
        r = await client.post(f"{v2}/approve", headers=LEGAL)
        assert r.status_code == 403 and "another legal reviewer" in r.json()["detail"]
        r = await client.post(f"{v2}/approve", headers=LEGAL_2)
        assert r.status_code == 200
        versions = (await client.get(f"/templates/{tid}", headers=VIEWER)).json()["versions"]
        assert [v["status"] for v in versions] == ["retired", "approved"]

        r = await client.post(f"/incidents/{incident}/responses", headers=PR, json=use)
        assert r.json()["version_number"] == 2 and r.json()["text"].startswith("Acme is sorry.")
        uses = (await client.get(f"/incidents/{incident}/responses", headers=VIEWER)).json()
        assert uses["total"] == 2
        assert [(u["used_by"], u["version_number"]) for u in uses["items"]] == [
            ("pr", 2),
            ("customer_service", 1),
        ]

        # retire: nothing approved is left to use
        assert (await client.post(f"{v2}/retire", headers=ADMIN)).status_code == 200
        r = await client.post(f"/incidents/{incident}/responses", headers=PR, json=use)
        assert r.status_code == 409

        # the audit log has every step, with before and after
        audit = (
            await client.get(
                "/audit",
                params={"target_type": "template_version", "outcome": "ok", "limit": 200},
                headers=ADMIN,
            )
        ).json()
        actions = [(e["action"], e["target_id"]) for e in reversed(audit["items"])]
        assert actions == [
            ("template.submit", f"{tid}/1"),
            ("template.approve", f"{tid}/1"),
            ("template.edit", f"{tid}/2"),
            ("template.submit", f"{tid}/2"),
            ("template.approve", f"{tid}/2"),
            ("template.retire", f"{tid}/1"),
            ("template.retire", f"{tid}/2"),
        ]
        approve = next(e for e in audit["items"] if e["action"] == "template.approve")
        assert approve["before"]["status"] == "in_review"
        assert approve["after"]["status"] == "approved"
        assert approve["actor"] == "legal-2" and approve["role"] == "legal"


async def test_suggestions_fit_the_incident_tier_kind_and_language(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with role_api(tmp_path, clock) as (client, runtime):
        fits = await make_template(runtime, clock, until="approved", tiers=(2, 3))
        await make_template(runtime, clock, until="approved", tiers=(1, 1))  # other tier
        await make_template(runtime, clock, until="in_review", tiers=(2, 3))  # not approved
        zh = await make_template(runtime, clock, until="approved", tiers=(2, 2), lang="zh")
        apology = await make_template(runtime, clock, until="approved", kind="apology")
        incident = await open_incident(runtime, clock, tier=2)
        path = f"/incidents/{incident}/template-suggestions"
        found = (await client.get(path, headers=VIEWER)).json()
        assert sorted(s["template"]["id"] for s in found) == sorted([fits, zh, apology])
        assert all(s["version"]["status"] == "approved" for s in found)
        found = (await client.get(path, params={"lang": "zh"}, headers=VIEWER)).json()
        assert [s["template"]["id"] for s in found] == [zh]
        found = (await client.get(path, params={"kind": "apology"}, headers=VIEWER)).json()
        assert [s["template"]["id"] for s in found] == [apology]
        r = await client.get(path, params={"kind": "bogus"}, headers=VIEWER)
        assert r.status_code == 422
        r = await client.get("/incidents/999/template-suggestions", headers=VIEWER)
        assert r.status_code == 404

        # a template for other tiers is refused for this incident
        tier1 = await make_template(runtime, clock, until="approved", tiers=(1, 1))
        r = await client.post(
            f"/incidents/{incident}/responses",
            headers=PR,
            json={"template_id": tier1, "variables": {"product": "X2"}},
        )
        assert r.status_code == 409 and "tiers 1-1" in r.json()["detail"]


async def test_the_language_filter_reads_tags_as_watch_queries_do(
    tmp_path: Path, clock: ManualClock
) -> None:
    """Templates filed as zh-CN were missed by ?lang=zh (and ZH by zh): the filter was an
    exact, case-sensitive match, where a watch query's lang:zh takes zh-Hant."""
    async with role_api(tmp_path, clock) as (client, runtime):
        for lang in ("zh-CN", "ZH", "zh-TW", "en", "en-GB"):
            await make_template(runtime, clock, until="approved", lang=lang)
        for query, expected in (
            ("zh", {"zh-CN", "ZH", "zh-TW"}),
            ("zh-cn", {"zh-CN", "ZH"}),  # its own tag and the broader zh, not zh-TW
            ("EN", {"en", "en-GB"}),
            ("en-US", {"en"}),
            ("fr", set()),
        ):
            body = (await client.get(f"/templates?lang={query}", headers=VIEWER)).json()
            assert {t["lang"] for t in body["items"]} == expected, query
            assert body["total"] == len(expected), query
        for bad in ("zh%", "z_", "en;"):
            r = await client.get("/templates", params={"lang": bad}, headers=VIEWER)
            assert r.status_code == 422, bad


async def test_list_filters_pagination_and_clear_errors(tmp_path: Path, clock: ManualClock) -> None:
    async with role_api(tmp_path, clock) as (client, runtime):
        for _ in range(3):
            await make_template(runtime, clock)
        await make_template(runtime, clock, until="approved", kind="apology", lang="zh")
        page = (await client.get("/templates?limit=2", headers=VIEWER)).json()
        assert page["total"] == 4 and len(page["items"]) == 2
        page = (await client.get("/templates?limit=2&offset=2", headers=VIEWER)).json()
        assert len(page["items"]) == 2
        for query, total in (
            ("kind=apology", 1),
            ("lang=zh", 1),
            ("status=approved", 1),
            ("status=draft", 3),
            ("tier=2", 4),
            ("tier=0", 0),
        ):
            body = (await client.get(f"/templates?{query}", headers=VIEWER)).json()
            assert body["total"] == total, query
        for query in ("status=bogus", "tier=9", "limit=0", "kind=x"):
            assert (await client.get(f"/templates?{query}", headers=VIEWER)).status_code == 422

        r = await client.get("/templates/999", headers=VIEWER)
        assert r.status_code == 404 and r.json()["detail"] == "template 999 does not exist"
        r = await client.get("/templates/1/versions/9", headers=VIEWER)
        assert r.status_code == 404 and "no version 9" in r.json()["detail"]
        r = await client.post("/templates", headers=PR, json={**NEW, "body": "{{ x.__class__ }"})
        assert r.status_code == 422 and "syntax error" in r.json()["detail"]
        r = await client.post("/templates", headers=PR, json={**NEW, "body": "{% include 'a' %}"})
        assert r.status_code == 422 and "include is not allowed" in r.json()["detail"]
        r = await client.post("/templates", headers=PR, json={**NEW, "min_tier": 3, "max_tier": 2})
        assert r.status_code == 422
        r = await client.post("/templates", headers=PR, json={**NEW, "extra": 1})
        assert r.status_code == 422
        assert (await client.post("/templates", headers=PR, json=NEW)).status_code == 201
        r = await client.post("/templates", headers=PR, json=NEW)
        assert r.status_code == 409 and "already exists" in r.json()["detail"]


async def test_missing_variables_and_sandbox_refusals_are_422(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with role_api(tmp_path, clock) as (client, runtime):
        tid = await make_template(runtime, clock, until="approved")
        incident = await open_incident(runtime, clock)
        r = await client.post(
            f"/incidents/{incident}/responses", headers=PR, json={"template_id": tid}
        )
        assert r.status_code == 422
        assert r.json()["detail"] == (
            "the template needs these variables: product (send them in 'variables')"
        )
        r = await client.post(
            f"/incidents/{incident}/responses",
            headers=PR,
            json={"template_id": tid, "variables": {"incident": "x", "product": "y"}},
        )
        assert r.status_code == 422 and "filled from the incident" in r.json()["detail"]
        # nor may a caller put words in the brand's mouth in an approved text
        r = await client.post(
            f"/incidents/{incident}/responses",
            headers=PR,
            json={"template_id": tid, "variables": {"brand": "Globex is lying", "product": "y"}},
        )
        assert r.status_code == 422 and "brand: filled from the incident" in r.json()["detail"]
        # a body the save-time check lets through but the sandbox refuses at render time
        escape = await make_template(runtime, clock, body="{{ ''.__class__.__mro__ }}")
        r = await client.post(f"/templates/{escape}/preview", headers=VIEWER, json={})
        assert r.status_code == 422
        assert "sandbox refused" in r.json()["detail"] and "__class__" in r.json()["detail"]
        loose = await make_template(runtime, clock, body="{{ incident.nope }}")
        r = await client.post(f"/templates/{loose}/preview", headers=VIEWER, json={})
        assert r.status_code == 422 and "nope" in r.json()["detail"]


async def test_hostile_incident_data_is_escaped_in_a_used_statement(
    tmp_path: Path, clock: ManualClock
) -> None:
    hostile = "{{ 7*7 }} @all <!channel> [win](https://evil.example) <script>x</script>"
    async with role_api(tmp_path, clock) as (client, runtime):
        incident = await open_incident(runtime, clock, title_text=hostile)
        body = "Re: {{ incident.explanation }} / {{ product }}"
        for fmt in ("text", "markdown", "html"):
            tid = await make_template(runtime, clock, until="approved", body=body, fmt=fmt)
            r = await client.post(
                f"/incidents/{incident}/responses",
                headers=PR,
                json={"template_id": tid, "variables": {"product": hostile}},
            )
            assert r.status_code == 201, r.text
            text = r.json()["text"]
            for bad in ("49", "@all", "<!channel>", "https://", "<script>"):
                assert bad not in text, (fmt, bad, text)


async def test_a_statement_for_a_drill_incident_says_so(tmp_path: Path, clock: ManualClock) -> None:
    async with role_api(tmp_path, clock) as (client, runtime):
        tid = await make_template(runtime, clock, until="approved")
        use = {"template_id": tid, "variables": {"product": "X2"}}
        drill = await open_incident(runtime, clock, drill=True)
        real = await open_incident(runtime, clock)
        r = await client.post(f"/incidents/{drill}/responses", headers=PR, json=use)
        assert r.json()["text"].startswith("[DRILL - NOT FOR PUBLICATION] Acme is looking")
        r = await client.post(f"/incidents/{real}/responses", headers=PR, json=use)
        assert r.json()["text"].startswith("Acme is looking")


async def test_preview_renders_drafts_with_a_sample_or_an_incident(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with role_api(tmp_path, clock) as (client, runtime):
        tid = await make_template(runtime, clock, body=BODY)
        r = await client.post(
            f"/templates/{tid}/preview", headers=VIEWER, json={"variables": {"product": "X2"}}
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "draft" and "Sample Brand" in r.json()["text"]
        incident = await open_incident(runtime, clock)
        r = await client.post(
            f"/templates/{tid}/preview",
            headers=VIEWER,
            json={"incident_id": incident, "variables": {"product": "X2"}},
        )
        assert r.json()["text"].startswith("Acme is looking into posts about X2")
        uses = (await client.get(f"/incidents/{incident}/responses", headers=VIEWER)).json()
        assert uses["total"] == 0  # a preview is not a use


def test_seeds_cover_every_kind_in_zh_and_en() -> None:
    seeds = load_seeds()
    assert {(s.kind, s.lang) for s in seeds} == {(k, lang) for k in KINDS for lang in ("zh", "en")}


async def test_seeding_adds_drafts_once(tmp_path: Path, clock: ManualClock) -> None:
    async with role_api(tmp_path, clock) as (client, runtime):
        assert runtime.sessions is not None
        async with unit_of_work(runtime.sessions) as session:
            added = await seed_templates(session, clock.now())
        async with unit_of_work(runtime.sessions) as session:
            assert await seed_templates(session, clock.now()) == []
        page = (await client.get("/templates?limit=200", headers=VIEWER)).json()
        assert page["total"] == len(added) == 10
        assert {t["latest_status"] for t in page["items"]} == {"draft"}
        assert {t["created_by"] for t in page["items"]} == {SEED_ACTOR}
        detail = (await client.get(f"/templates/{page['items'][0]['id']}", headers=VIEWER)).json()
        assert "legal review" in detail["versions"][0]["note"]
        # every seed renders with its variables filled in
        for item in page["items"]:
            version = (await client.get(f"/templates/{item['id']}", headers=VIEWER)).json()
            names = version["versions"][0]["variables"]
            variables = {n: f"<{n}>" for n in names if n not in ("brand", "incident")}
            r = await client.post(
                f"/templates/{item['id']}/preview", headers=VIEWER, json={"variables": variables}
            )
            assert r.status_code == 200, (item["name"], r.text)


def test_cli_seeds_the_starter_templates(tmp_path: Path) -> None:
    env = {**os.environ, "CRISISWATCH_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db"}
    for args, says in ((["db", "upgrade"], "upgraded"), (["templates", "seed"], "10 starter")):
        out = subprocess.run(
            [sys.executable, "-m", "api.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert says in out.stdout
    again = subprocess.run(
        [sys.executable, "-m", "api.cli", "templates", "seed"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "0 starter template(s)" in again.stdout
    with closing(sqlite3.connect(tmp_path / "cli.db")) as db:
        rows = db.execute("SELECT actor, role, action, after FROM audit_log").fetchall()
    # who ran it: the operating-system user, not only the command
    assert [row[:3] for row in rows] == [(f"cli:{getpass.getuser()}", "cli", "template.seed")]
    assert '"command": "crisiswatch templates seed"' in rows[0][3]


async def test_an_editor_of_a_version_may_not_approve_it(
    tmp_path: Path, clock: ManualClock
) -> None:
    # four eyes: legal rewrote the draft, pr touched it last (updated_by is pr); the legal
    # key that wrote the words still may not approve them, another legal key may
    async with role_api(tmp_path, clock) as (client, _):
        tid = (await client.post("/templates", headers=PR, json=NEW)).json()["id"]
        base = f"/templates/{tid}/versions/1"
        r = await client.patch(
            base, headers=LEGAL, json={"body": "{{ brand }} regrets {{ issue }}."}
        )
        assert r.status_code == 200, r.text
        r = await client.patch(base, headers=PR, json={"body": "{{ brand }} regrets {{ issue }}!"})
        assert r.status_code == 200 and r.json()["updated_by"] == "pr"
        assert (await client.post(f"{base}/submit", headers=PR)).status_code == 200
        r = await client.post(f"{base}/approve", headers=LEGAL)
        assert r.status_code == 403 and "another legal reviewer" in r.json()["detail"], r.text
        r = await client.post(f"{base}/approve", headers=LEGAL_2)
        assert r.status_code == 200 and r.json()["reviewed_by"] == "legal-2"


async def test_chinese_variable_names_can_be_used(tmp_path: Path, clock: ManualClock) -> None:
    # a body may name its variables in Chinese ({{ 产品 }}): the template is saved with that
    # variable, so a use must accept it (it answered 422 "invalid variable names" before)
    async with role_api(tmp_path, clock) as (client, runtime):
        body = "{{ brand }}已关注到关于{{ 产品 }}的反馈，将于{{ 时间 }}前更新。"
        tid = await make_template(runtime, clock, until="approved", body=body, lang="zh")
        r = await client.get(f"/templates/{tid}/versions/1", headers=PR)
        assert r.json()["variables"] == ["brand", "产品", "时间"]
        incident = await open_incident(runtime, clock)
        use = {"template_id": tid, "variables": {"产品": "X2<b>手机", "时间": "18:00"}}
        r = await client.post(f"/incidents/{incident}/responses", headers=PR, json=use)
        assert r.status_code == 201, r.text
        assert r.json()["text"] == "Acme已关注到关于X2＜b＞手机的反馈，将于18:00前更新。"
        r = await client.post(
            f"/incidents/{incident}/responses",
            headers=PR,
            json={"template_id": tid, "variables": {"产 品": "x", "时间": "y"}},
        )
        assert r.status_code == 422 and "invalid variable names" in r.json()["detail"]


async def test_a_too_deeply_nested_body_is_422(tmp_path: Path, clock: ManualClock) -> None:
    async with role_api(tmp_path, clock) as (client, _):
        nested = {**NEW, "body": "{{ " + "(" * 300 + "1" + ")" * 300 + " }}"}
        r = await client.post("/templates", headers=PR, json=nested)
        assert r.status_code == 422 and "nested too deeply" in r.json()["detail"]


async def test_a_variable_name_too_long_to_supply_is_422(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with role_api(tmp_path, clock) as (client, _):
        fits = {**NEW, "name": "fits", "body": "{{ " + "a" * 64 + " }}"}
        r = await client.post("/templates", headers=PR, json=fits)
        assert r.status_code == 201, r.text
        assert r.json()["versions"][0]["variables"] == ["a" * 64]
        too_long = {**NEW, "name": "too-long", "body": "Hello {{ " + "b" * 65 + " }}"}
        r = await client.post("/templates", headers=PR, json=too_long)
        assert r.status_code == 422 and "65 characters long" in r.json()["detail"]
        tid = (await client.get("/templates", headers=PR)).json()["items"][0]["id"]
        r = await client.patch(
            f"/templates/{tid}/versions/1", headers=PR, json={"body": too_long["body"]}
        )
        assert r.status_code == 422 and "at most 64" in r.json()["detail"]


@pytest.mark.postgres
async def test_the_workflow_on_postgres(pg_sessions: async_sessionmaker[AsyncSession]) -> None:
    clock = ManualClock()
    async with unit_of_work(pg_sessions) as session:
        added = await seed_templates(session, clock.now())
    async with unit_of_work(pg_sessions) as session:
        items, total = await service.list_templates(session, kind="apology", status="draft")
        assert total == 2 and {t.lang for t in items} == {"zh", "en"}
        tid = items[0].id
        for action, actor in (("submit", "pr"), ("approve", "legal")):
            await service.transition(session, tid, 1, action, actor=actor, now=clock.now())
    async with unit_of_work(pg_sessions) as session:
        found = await service.suggest(session, 2, kind="apology")
        assert [(t.id, v.number) for t, v in found] == [(tid, 1)]
        _, approved = await service.list_templates(session, status="approved", tier=3)
        assert approved == 1
        _, none = await service.list_templates(session, status="approved", tier=1)
        assert none == 0 and len(added) == 10


@pytest.mark.postgres
async def test_a_use_racing_a_retirement_waits_for_it(
    pg_sessions: async_sessionmaker[AsyncSession],
) -> None:
    # legal retires version 1 while a responder uses it: the use must not record a statement
    # from a version retired before the use committed (it read "approved" without a lock)
    clock = ManualClock()
    async with unit_of_work(pg_sessions) as session:
        template = await service.create_template(
            session, name=f"race-{uuid.uuid4().hex}", kind="apology",
            lang="en", min_tier=0, max_tier=3, fmt="text", body="{{ brand }} is sorry.",
            actor="pr", now=clock.now(),
        )  # fmt: skip
        for action in ("submit", "approve"):
            await service.transition(
                session, template.id, 1, action, actor="legal", now=clock.now()
            )
    signal = make_signal(clock, tier=2, watch=f"race-{uuid.uuid4().hex[:12]}")
    incident_id = await add_incident(pg_sessions, signal, AlertsConfig(), clock)

    retiring = pg_sessions()
    await service.transition(retiring, template.id, 1, "retire", actor="legal", now=clock.now())

    async def use() -> object:
        async with unit_of_work(pg_sessions) as session:
            incident = await service.load_incident(session, incident_id)
            return await service.use_template(
                session, incident, template.id, None, {}, actor="pr", now=clock.now()
            )

    task = asyncio.create_task(use())
    await asyncio.sleep(0.5)  # the use reads the template now, the retirement not committed
    await retiring.commit()
    await retiring.close()
    with pytest.raises(service.TemplateConflict, match="no approved version"):
        await task
