"""``tests.support.MODEL_MODULES`` names every module that declares a table, so the schema
tests compare the migrations with the whole metadata whatever order tests run in."""

from __future__ import annotations

from pathlib import Path

from tests.support import MODEL_MODULES

ROOT = Path(__file__).resolve().parents[2]


def test_every_module_declaring_a_table_is_listed() -> None:
    found = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for package in ("core", "listener", "sentiment", "alerts", "api")
        for path in (ROOT / package).rglob("*.py")
        if "__tablename__ = " in path.read_text(encoding="utf-8")
    }
    assert found == set(MODEL_MODULES)
