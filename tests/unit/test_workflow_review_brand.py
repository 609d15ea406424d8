"""Workflow review: the incident's brand (the watch's configured name) reads as written in
its own statement, in every format, while every other value is still defanged."""

from __future__ import annotations

from typing import Any

import pytest

from alerts.templates import pool
from alerts.templates.models import TemplateVersion
from alerts.templates.render import Trusted, render
from alerts.templates.service import SAMPLE_INCIDENT, _values

BODY = "{{ brand }} ({{ incident.brand }}) on {{ product }}: see {{ link }}"


def _version(body: str) -> TemplateVersion:
    return TemplateVersion(body=body, variables=["brand", "incident", "link", "product"])


def _rendered(fmt: str, brand: str, **variables: str) -> str:
    values = _values(_version(BODY), {**SAMPLE_INCIDENT, "brand": brand}, variables)
    return render(BODY, fmt, pool._snapshot(values))  # as the render pool passes them


@pytest.mark.parametrize("fmt", ["text", "markdown", "html"])
def test_a_dotted_brand_is_not_defanged_in_its_own_statement(fmt: str) -> None:
    out = _rendered(fmt, "Booking.com", product="rooms", link="https://evil.example/x")
    assert out.startswith("Booking.com (Booking.com) on rooms")  # was Booking[.]com
    assert "evil[.]example" in out.replace("［", "[").replace("］", "]")  # still defanged


def test_the_trusted_brand_is_still_escaped_for_its_format() -> None:
    brand = "A&B <Co>\u202e"
    out: dict[str, Any] = {
        fmt: _rendered(fmt, brand, product="p", link="l") for fmt in ("text", "markdown", "html")
    }
    assert out["text"].startswith("A&B ＜Co＞ (")  # no tag, no bidi override
    assert out["markdown"].startswith("A＆B ＜Co＞ (")
    assert out["html"].startswith("A&amp;B &lt;Co&gt; (")


def test_what_a_template_makes_of_the_brand_is_escaped_in_full() -> None:
    values = {"brand": Trusted("acme.com"), "x": "evil.com"}
    assert render("{{ brand|upper }} {{ brand ~ x }}", "text", values) == (
        "ACME[.]COM acme[.]comevil[.]com"
    )
