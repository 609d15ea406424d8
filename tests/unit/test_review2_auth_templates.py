"""Review of e6141d0 (IPv6 /64 lockout buckets) and 0ab7ebd (long variable names)."""

from __future__ import annotations

from api.auth import client_bucket


def test_link_local_clients_are_not_one_bucket() -> None:
    """fe80::/64 is every host on a link (and on every link: the zone was dropped), so one
    host's wrong keys locked out every link-local client."""
    assert client_bucket("fe80::1%eth0") != client_bucket("fe80::2%eth0")
    assert client_bucket("fe80::1%eth0") != client_bucket("fe80::1%eth1")
    assert client_bucket("fe80::1") != client_bucket("fe80::2")


def test_loopback_is_not_the_ipv4_compatible_range() -> None:
    assert client_bucket("::1") != client_bucket("::2")
    assert client_bucket("::1") != client_bucket("::ffff:0:1.2.3.4")


def test_global_ipv6_still_counts_by_its_64() -> None:
    assert client_bucket("2001:db8::1") == client_bucket("2001:db8::ffff:1") == "2001:db8::/64"
    assert client_bucket("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_bucket("unknown") == "unknown"


def test_a_saved_body_with_a_long_defaulted_variable_still_renders() -> None:
    """A body saved before the 64-character rule, whose long variable has a default, was
    usable; render re-checks the body, and the new rule made every use a 422."""
    from alerts.templates.render import render

    name = "x" * 70
    assert render("Hi {{ " + name + '|default("there") }}', "text", {}) == "Hi there"
