"""``api.jsonkeys.duplicate_key``: which JSON documents give a key twice."""

from __future__ import annotations

import pytest

from api.jsonkeys import duplicate_key


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('{"into": 99999, "into": 2}', "into"),
        ('{"a": {"b": 1, "b": 1}}', "b"),  # nested, even with the same value
        ('[{"x": 1}, {"y": 1, "y": 2}]', "y"),  # in a list
        ('{"\\u0061": 1, "a": 2}', "a"),  # spelled differently, the same key once decoded
        ('{"a": 1, "b": {"a": 2}}', None),  # one key in each object
        ('{"a": [1, 1]}', None),
        ("not json", None),
        ("[" * 100_000, None),  # nested beyond the reader: not JSON either
        (b'{"k": 1, "k": 2}', "k"),
    ],
)
def test_duplicate_key(body: str | bytes, key: str | None) -> None:
    assert duplicate_key(body) == key
