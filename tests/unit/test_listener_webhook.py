"""Webhook signature verification and batch parsing (pure logic)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr, ValidationError

from listener.config import WebhookConfig
from listener.report import IngestReport, ItemOutcome
from listener.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookAuthError,
    WebhookPayloadError,
    parse_batch,
    response_body,
    sign,
    signed_headers,
    verify_signature,
)

SECRET = SecretStr("s3cret-s3cret-s3cret")
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
BODY = b'{"mentions": []}'


def headers(
    body: bytes = BODY, at: datetime = NOW, secret: str = "s3cret-s3cret-s3cret"
) -> dict[str, str]:
    return signed_headers(secret, body, at)


def verify(h: dict[str, str | None], body: bytes = BODY, now: datetime = NOW) -> None:
    verify_signature(SECRET, h.get(TIMESTAMP_HEADER), h.get(SIGNATURE_HEADER), body, now)


def test_good_signature_passes() -> None:
    verify(dict(headers()))
    # within the allowed skew, in both directions
    verify(dict(headers(at=NOW - timedelta(seconds=299))))
    verify(dict(headers(at=NOW + timedelta(seconds=299))))


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    ts = int(NOW.timestamp())
    expected = hmac.new(b"k" * 16, f"{ts}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign("k" * 16, ts, BODY) == f"sha256={expected}"
    assert headers()[TIMESTAMP_HEADER] == str(ts)


def test_wrong_secret_or_tampered_body_fails_without_leaking_the_expected_value() -> None:
    good = headers()
    with pytest.raises(WebhookAuthError, match="does not match") as info:
        verify(dict(headers(secret="another-secret-entirely")))
    expected = sign(SECRET, good[TIMESTAMP_HEADER], BODY)
    assert expected.split("=")[1] not in str(info.value)
    assert SECRET.get_secret_value() not in str(info.value)
    with pytest.raises(WebhookAuthError, match="does not match"):
        verify(dict(good), body=b'{"mentions": [1]}')


def test_stale_or_future_timestamp_fails() -> None:
    with pytest.raises(WebhookAuthError, match=r"601 s away .*at most 300 s"):
        verify(dict(headers(at=NOW - timedelta(seconds=601))))
    with pytest.raises(WebhookAuthError, match="away from the server clock"):
        verify(dict(headers(at=NOW + timedelta(hours=1))))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({TIMESTAMP_HEADER: None}, "missing X-Crisiswatch-Timestamp"),
        ({SIGNATURE_HEADER: None}, "missing X-Crisiswatch-Signature"),
        ({SIGNATURE_HEADER: ""}, "missing X-Crisiswatch-Signature"),
        ({TIMESTAMP_HEADER: "yesterday"}, "unix seconds"),
        ({TIMESTAMP_HEADER: "1" * 5000}, "unix seconds"),
        ({SIGNATURE_HEADER: "deadbeef"}, "must look like sha256="),
        ({SIGNATURE_HEADER: "md5=deadbeef"}, "must look like sha256="),
        ({SIGNATURE_HEADER: "sha256=zzzz"}, "64 hex digits"),
        ({SIGNATURE_HEADER: "sha256=é"}, "64 hex digits"),
    ],
)
def test_missing_or_malformed_headers_fail_clearly(
    change: dict[str, str | None], message: str
) -> None:
    h: dict[str, str | None] = {**headers(), **change}
    with pytest.raises(WebhookAuthError, match=message):
        verify(h)


def item(i: int, **extra: object) -> dict[str, object]:
    return {
        "id": f"custom:{i}",
        "source": "custom",
        "text": f"acme {i}",
        "created_at": "2026-01-05T08:59:00Z",
        **extra,
    }


def test_parse_batch_keeps_good_items_and_reports_bad_ones() -> None:
    body = json.dumps(
        {
            "mentions": [
                item(0),
                {"id": "custom:1", "source": "custom", "text": "no time"},
                "not an object",
                item(3, author={"id": None, "followers": 12}),
                {"id": "no-colon", "source": "x", "created_at": "2026-01-05T08:59:00Z"},
                item(5, created_at="2026-01-05T08:59:00"),  # naive timestamp
            ]
        }
    ).encode()
    mentions, errors = parse_batch(body, 10)
    assert [m.id for m in mentions] == ["custom:0", "custom:3"]
    assert mentions[1].author.followers == 12
    assert [(e.index, e.id) for e in errors] == [
        (1, "custom:1"),
        (2, None),
        (4, "no-colon"),
        (5, "custom:5"),
    ]
    assert "created_at: Field required" in errors[0].message
    assert "JSON object" in errors[1].message
    assert errors[2].message.startswith('id: must be a string "<source>:<native id>"')
    assert "timezone" in errors[3].message


def test_parse_batch_reports_times_out_of_range_and_lone_surrogates_per_item() -> None:
    """Both crashed the whole request (a 500) before: an OverflowError converting to UTC,
    and a lone surrogate that no JSON encoder can publish."""
    body = (
        "["
        + ",".join(
            [
                json.dumps(item(0, created_at="0001-01-01T00:00:00+01:00")),
                json.dumps(item(1, edited_at="9999-12-31T23:30:00-01:00", change="edited")),
                json.dumps(item(2)).replace("acme 2", "acme \\ud800"),
                json.dumps(item(3)).replace('"custom:3"', '"custom:3\\udc00"'),
                json.dumps(item(4)),
            ]
        )
        + "]"
    ).encode()
    mentions, errors = parse_batch(body, 10)
    assert [m.id for m in mentions] == ["custom:2", "custom:4"]
    assert mentions[0].text == "acme \ufffd"
    assert [e.index for e in errors] == [0, 1, 3]
    assert "out of range" in errors[0].message and "out of range" in errors[1].message
    assert "lone surrogate" in errors[2].message


def test_parse_batch_accepts_a_bare_list_and_ignores_listener_fields() -> None:
    body = json.dumps([item(0, received_at="2020-01-01T00:00:00Z", watch={"id": "evil"})])
    (mention,), errors = parse_batch(body.encode(), 10)
    assert errors == []
    assert mention.received_at is None
    assert mention.watch is None


def test_a_sender_cannot_mark_a_mention_as_a_drill() -> None:
    """A drill mention opens a drill incident (muted, its statements marked not for
    publication): a sender's "drill": true turned a real complaint into one. Refused, the
    sender told why; "drill": false changes nothing and is taken."""
    body = json.dumps([item(0, drill=True), item(1, drill=False), item(2, drill="yes")])
    mentions, errors = parse_batch(body.encode(), 10)
    assert [m.id for m in mentions] == ["custom:1"]
    assert not mentions[0].drill
    assert [(e.index, e.id, e.reason) for e in errors] == [
        (0, "custom:0", "invalid"),
        (2, "custom:2", "invalid"),
    ]
    assert all(e.message.startswith("drill: crisiswatch marks its own drills") for e in errors)


def test_parse_batch_refuses_items_from_the_future_when_given_now() -> None:
    body = json.dumps([item(0), item(1, created_at="2030-01-01T00:00:00Z")]).encode()
    mentions, errors = parse_batch(body, 10, now=NOW)
    assert [m.id for m in mentions] == ["custom:0"]
    assert errors[0].index == 1
    assert "future" in errors[0].message


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"\xff\xfe\x00garbage", 400, "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "not valid JSON"),
        (b'{"items": []}', 422, '{"mentions": \\[...\\]}'),
        (b'"a string"', 422, "JSON array"),
        (json.dumps([item(i) for i in range(4)]).encode(), 413, "4 mentions in one request"),
    ],
)
def test_unusable_bodies_are_refused_as_a_whole(body: bytes, status: int, message: str) -> None:
    with pytest.raises(WebhookPayloadError, match=message) as info:
        parse_batch(body, 3)
    assert info.value.status == status


def test_body_size_limit() -> None:
    with pytest.raises(WebhookPayloadError, match="at most 1024") as info:
        parse_batch(b" " * 2000, 3, max_body_bytes=1024)
    assert info.value.status == 413


def test_response_body_lists_outcomes_and_errors() -> None:
    from listener.webhook import ItemError

    report = IngestReport(
        accepted=1,
        duplicates=1,
        published=2,
        items=[
            ItemOutcome(0, "custom:0", "published", ("a", "b")),
            ItemOutcome(1, "custom:0", "duplicate"),
        ],
    )
    body = response_body(report, [ItemError(2, None, "bad")])
    assert body["published"] == 2
    assert body["rejected"] == 1
    assert body["results"][0] == {"id": "custom:0", "outcome": "published", "watches": ["a", "b"]}
    assert body["errors"] == [{"index": 2, "id": None, "message": "bad"}]
    json.dumps(body)


def test_webhook_config_needs_a_long_secret_when_enabled() -> None:
    with pytest.raises(ValidationError, match=r"needs webhook\.secret"):
        WebhookConfig(enabled=True)
    with pytest.raises(ValidationError, match="at least 16 characters"):
        WebhookConfig(enabled=True, secret=SecretStr("short"))
    cfg = WebhookConfig(enabled=True, secret=SECRET)
    assert "s3cret" not in repr(cfg)


@pytest.mark.parametrize("header", [None, "", "identity", " Identity "])
def test_an_uncompressed_body_passes_the_encoding_check(header: str | None) -> None:
    from listener.webhook import check_encoding

    check_encoding(header)


@pytest.mark.parametrize("header", ["gzip", "deflate", "br", "identity, gzip"])
def test_a_declared_content_encoding_is_refused_with_415(header: str) -> None:
    from listener.webhook import check_encoding

    with pytest.raises(WebhookPayloadError, match="not supported: send the JSON") as info:
        check_encoding(header)
    assert info.value.status == 415 and info.value.reason == "encoding"


def test_parse_batch_refuses_items_dated_before_2000() -> None:
    body = json.dumps([item(0, created_at="1970-01-01T00:00:00Z"), item(1)]).encode()
    mentions, errors = parse_batch(body, 10)
    assert [m.id for m in mentions] == ["custom:1"]
    assert [(e.index, e.reason) for e in errors] == [(0, "too_old")]
    assert "before 2000" in errors[0].message


@pytest.mark.parametrize(
    "body",
    [
        # the second "mentions" (empty) replaced the first: the batch was answered 200
        # with nothing taken in, its mentions silently dropped
        b'{"mentions": [{"id": "custom:0", "source": "custom", '
        b'"created_at": "2026-01-05T08:59:00Z"}], "mentions": []}',
        # which text is the mention's? the last one was kept without a word
        b'[{"id": "custom:0", "source": "custom", "text": "acme", "text": "",'
        b' "created_at": "2026-01-05T08:59:00Z"}]',
    ],
)
def test_a_key_given_twice_refuses_the_body_naming_the_key(body: bytes) -> None:
    with pytest.raises(WebhookPayloadError, match=r'key "(mentions|text)" given twice') as info:
        parse_batch(body, 10)
    assert info.value.status == 400 and info.value.reason == "not_json"


def test_an_undeclared_gzip_body_is_refused_as_compressed_not_as_bad_json() -> None:
    import gzip

    body = gzip.compress(json.dumps([item(0)]).encode())
    with pytest.raises(WebhookPayloadError, match="gzip-compressed") as info:
        parse_batch(body, 10)
    assert info.value.status == 415 and info.value.reason == "encoding"


@pytest.mark.parametrize(
    "given",
    [
        "sha256=" + "a" * 63,
        # a base64 digest (openssl dgst -binary | base64): the right HMAC, the wrong form
        "sha256=" + "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=",
    ],
)
def test_a_signature_that_is_not_a_hex_digest_says_so(given: str) -> None:
    with pytest.raises(WebhookAuthError, match="64 hex digits"):
        verify({**headers(), SIGNATURE_HEADER: given})


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"id": 12345}, 'id: must be a string "<source>:<native id>"'),
        ({"id": "custom:has space"}, 'id: must be a string "<source>:<native id>"'),
        ({"id": "nocolon"}, 'id: must be a string "<source>:<native id>"'),
        ({"text": "x" * 40_001}, "text: at most 40000 characters (not 40001)"),
        ({"created_at": "Mon, 05 Jan 2026 08:59:00 +0000"}, "ISO 8601"),
        ({"created_at": "2026-01-05T08:59:00"}, "must carry a timezone (UTC); send ISO 8601"),
    ],
)
def test_item_errors_tell_the_sender_what_to_send(extra: dict[str, object], expected: str) -> None:
    _, (error,) = parse_batch(json.dumps([item(0, **extra)]).encode(), 10)
    assert expected in error.message
    assert "pattern" not in error.message and "items" not in error.message
