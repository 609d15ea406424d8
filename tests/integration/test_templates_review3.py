"""Response templates review (3): a template body cannot freeze the service.

Rendering runs in the service's event loop (a preview, a use; in the embedded process the
whole pipeline shares that loop), so a body that loops over long values, multiplies big
numbers or doubles text must be refused within a bounded time, not hang every request.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from alerts.templates import render as renderer
from alerts.templates.render import RenderError, TemplateProblem, check, render
from core.clock import ManualClock
from tests.access_support import (
    SECOND_LEGAL_KEY,
    api_on,
    key_headers,
    make_template,
    open_incident,
    role_api,
)

PR = key_headers("pr")
CS = key_headers("customer_service")
LEGAL = key_headers("legal")
LEGAL_2 = {"Authorization": f"Bearer {SECOND_LEGAL_KEY}"}
ADMIN = key_headers("admin")
VIEWER = key_headers("viewer")
VALUES = {"brand": "Acme", "product": "p" * 3000, "incident": {"title": "t", "tier": 2}}
LONG = '{% set s = "x" * 50000 %}'


@pytest.mark.parametrize(
    ("body", "says"),
    [
        # 9 million silent loop steps (0.4 s; with "x" * 50000: 2.5 billion, minutes)
        ("{% for a in product %}{% for b in product %}{% endfor %}{% endfor %}done", "loops"),
        # the same steps captured in a block, beside the output cap
        ("{% set t %}{% for a in product %}{% for b in product %}yy{% endfor %}{% endfor %}"
         "{% endset %}{{ t|length }}", "loops"),
        # one more ** 64 and this took 27 s
        ("{{ ((9 ** 64) ** 64) ** 64 > 1 }}", "power"),
        ("{% set n = 9 ** 64 %}{{ n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n * n"
         " * n * n * n * n > 1 }}", "product"),
        # text doubled past the output cap without '*'
        (LONG + "{{ (s ~ s ~ s ~ s)|length }}", "'~'"),
        (LONG + "{{ (s + s + s + s)|length }}", "'+'"),
        (LONG + '{{ s|list|join("y" * 1000)|length }}', "join"),
        # round builds 10 ** precision
        ("{{ 5|round(-10000) }}", "precision"),
    ],
)  # fmt: skip
def test_bodies_that_would_run_away_are_refused_at_once(body: str, says: str) -> None:
    check(body, "text")  # they save: what they do depends on the values
    started = time.monotonic()
    with pytest.raises(RenderError) as caught:
        render(body, "text", VALUES)
    assert says in str(caught.value)
    assert time.monotonic() - started < 0.5


def test_a_render_stops_at_its_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Few loop steps, but each one heavy: the render stops at RENDER_SECONDS (it took
    about 40 s)."""
    monkeypatch.setattr(renderer, "RENDER_SECONDS", 0.2)
    heavy = " + ".join(["(l|unique|list|length)"] * 10)
    body = '{% set l = ("x" * 50000)|list %}{% for a in l[:1900] %}{{ "" if (' + heavy
    body += ") < 0 }}{% endfor %}done"
    started = time.monotonic()
    with pytest.raises(RenderError, match=r"took longer than 0\.2 s"):
        render(body, "text", VALUES)
    assert time.monotonic() - started < 2


def test_recursive_loops_are_refused_when_saved() -> None:
    with pytest.raises(TemplateProblem, match="recursive loops are not allowed"):
        check("{% for a in incident recursive %}{{ loop(a) }}{% endfor %}", "text")


def test_ordinary_bodies_still_render() -> None:
    body = (
        "{% for k, v in incident|dictsort %}{{ k }}={{ v }};{% endfor %} "
        '{{ ["a", "b"]|join(", ") }} {{ brand ~ "!" ~ 1 }} {{ 2 ** 10 + 1 }} '
        "{{ product[:2] + '.' }} {{ 3.14159|round(2) }} "
        '{% for c in "abc" if c != "b" %}{{ loop.index }}{{ c }}{% else %}none{% endfor %} '
        "{% set t %}{{ brand|upper }}{% endset %}{{ t }}"
    )
    assert render(body, "text", VALUES) == "tier=2;title=t; a, b Acme!1 1025 pp. 3.14 1a2c ACME"


async def test_a_preview_of_a_runaway_body_is_a_quick_422(
    tmp_path: Path, clock: ManualClock
) -> None:
    """A draft an author saved that loops over a long value: a reviewer's preview (and a
    use) froze the API and every stage in the process; now 422 saying why."""
    async with role_api(tmp_path, clock) as (client, runtime):
        incident = await open_incident(runtime, clock)
        body = {
            "name": "runaway",
            "kind": "apology",
            "lang": "en",
            "min_tier": 1,
            "max_tier": 3,
            "body": LONG + "{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}{{ brand }}",
        }
        r = await client.post("/templates", headers=PR, json=body)
        assert r.status_code == 201, r.text
        started = time.monotonic()
        r = await client.post(
            f"/templates/{r.json()['id']}/preview", headers=VIEWER, json={"incident_id": incident}
        )
        assert r.status_code == 422, r.text
        assert "loops would run more than" in r.json()["detail"]
        assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    "body",
    [
        "{{ brand }} apologises. ({{ ｂrand }})",  # fullwidth b
        "{{ incident.title }}: {{ ⅰncident }}",  # small roman numeral one
        "{% for ｘ in incident %}{{ ｘ }}{% endfor %}{{ x }}",
    ],
)
def test_a_look_alike_name_cannot_stand_in_for_the_incidents_data(body: str) -> None:
    """Jinja's compiled Python reads names NFKC-normalised, so ``ｂrand`` and ``brand`` were
    one variable: the caller's ``ｂrand`` replaced the incident's brand in the approved text
    ("Evil / Evil"), under a name a reviewer reads as the brand. Refused when saved, and
    when a body saved before is rendered."""
    with pytest.raises(TemplateProblem, match="look-alike"):
        check(body, "text")
    values = {**VALUES, "ｂrand": "Evil", "ⅰncident": "Evil", "x": "y"}
    with pytest.raises(TemplateProblem, match="look-alike"):
        render(body, "text", values)
    assert check("{{ 产品 }} {{ brand }}", "text") == ["brand", "产品"]


async def test_a_look_alike_name_is_a_422_when_saved(tmp_path: Path, clock: ManualClock) -> None:
    async with role_api(tmp_path, clock) as (client, _):
        body = {
            "name": "look-alike",
            "kind": "apology",
            "lang": "en",
            "min_tier": 1,
            "max_tier": 3,
            "body": "{{ brand }} apologises ({{ ｂrand }}).",
        }
        r = await client.post("/templates", headers=PR, json=body)
        assert r.status_code == 422, r.text
        assert "'ｂrand' is a look-alike of 'brand'" in r.json()["detail"]


async def test_an_edit_from_a_stale_read_is_refused_not_lost(
    db_url: str, clock: ManualClock
) -> None:
    """Two people edit one draft: the second PATCH silently replaced the first one's words.
    With the version's etag as If-Match, the second is a 409 and nothing is lost; without
    If-Match an edit works as before."""
    async with api_on(db_url, clock) as (client, runtime):
        template = await make_template(runtime, clock, until="draft")
        url = f"/templates/{template}/versions/1"
        read = await client.get(url, headers=PR)
        etag = read.json()["etag"]
        assert read.headers["ETag"] == etag
        first = await client.patch(
            url, headers={**CS, "If-Match": etag}, json={"body": "{{ brand }} first"}
        )
        assert first.status_code == 200, first.text
        assert first.headers["ETag"] == first.json()["etag"] != etag
        second = await client.patch(
            url, headers={**PR, "If-Match": etag}, json={"body": "{{ brand }} second"}
        )
        assert second.status_code == 409, second.text
        assert "changed since you read it" in second.json()["detail"]
        assert "customer_service" in second.json()["detail"]
        assert (await client.get(url, headers=PR)).json()["body"] == "{{ brand }} first"
        audit = await client.get("/audit?action=template.edit&outcome=conflict", headers=ADMIN)
        assert [e["actor"] for e in audit.json()["items"]] == ["pr"]
        stale = {**PR, "If-Match": f'"x", W/{etag}'}  # a list: none of them is current
        assert (await client.patch(url, headers=stale, json={"body": "x"})).status_code == 409
        for headers in (PR, {**PR, "If-Match": "*"}):
            r = await client.patch(url, headers=headers, json={"body": "{{ brand }} third"})
            assert r.status_code == 200, r.text
        current = {**PR, "If-Match": f'"x", W/{r.json()["etag"]}'}
        assert (await client.patch(url, headers=current, json={"body": "y"})).status_code == 200


async def test_legal_approves_only_the_text_it_read(tmp_path: Path, clock: ManualClock) -> None:
    """Legal reads a version in review; meanwhile another reviewer rejects it, the author
    changes it and submits it again. Approving by number approved the new words unread;
    with If-Match it is a 409 until the reviewer has read them."""
    async with role_api(tmp_path, clock) as (client, runtime):
        template = await make_template(runtime, clock, until="in_review")
        url = f"/templates/{template}/versions/1"
        read = (await client.get(url, headers=LEGAL)).json()
        assert read["status"] == "in_review"
        r = await client.post(f"{url}/reject", headers=LEGAL_2, json={"note": "tone"})
        assert r.status_code == 200, r.text
        r = await client.patch(url, headers=CS, json={"body": "{{ brand }} admits nothing."})
        assert r.status_code == 200, r.text
        assert (await client.post(f"{url}/submit", headers=CS)).status_code == 200
        approve = await client.post(
            f"{url}/approve", headers={**LEGAL, "If-Match": read["etag"]}, json={"note": "ok"}
        )
        assert approve.status_code == 409, approve.text
        assert (await client.get(url, headers=LEGAL)).json()["status"] == "in_review"
        fresh = (await client.get(url, headers=LEGAL)).json()
        approve = await client.post(f"{url}/approve", headers={**LEGAL, "If-Match": fresh["etag"]})
        assert approve.status_code == 200, approve.text
        assert approve.json()["body"] == "{{ brand }} admits nothing."
