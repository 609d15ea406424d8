"""The README's "Fuzzing the API" names how many operations the fuzz test covers: the
API role's OpenAPI operations (it said 45 once there were 47)."""

from __future__ import annotations

import re
from pathlib import Path

from core.clock import ManualClock
from tests.access_support import role_app

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_counts_the_operations_the_fuzz_test_covers(tmp_path: Path) -> None:
    section = README.read_text(encoding="utf-8").split("### Fuzzing the API (Schemathesis)")[1]
    said = re.search(r"every\s+operation\s+\((\d+)\)", section)
    assert said is not None
    _, app = role_app(tmp_path, ManualClock())  # what test_api_fuzz loads, not started
    operations = sum(len(methods) for methods in app.openapi()["paths"].values())
    assert int(said.group(1)) == operations
